"""Shared fixtures: the bundled demo images, the optional shared data folder, and small trained checkpoints.

Everything runs on real chest X-rays: the demo subset shipped in resources/ (always present) and, where it
exists, ../shared/data (tests that need it skip cleanly when it is absent).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

from ikd_gui.resources import demo_dataset

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("IKD_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Decoded-pixel cache and demo teacher go to a temporary folder, never the user's cache."""
    cache = tmp_path_factory.mktemp("ikd-cache")
    previous = os.environ.get("IKD_CACHE_DIR")
    os.environ["IKD_CACHE_DIR"] = str(cache / "pixels")
    yield cache
    if previous is None:
        os.environ.pop("IKD_CACHE_DIR", None)
    else:
        os.environ["IKD_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def demo_data() -> Path:
    return demo_dataset()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "chest_xray_224").is_dir():
        pytest.skip(f"shared data folder not present ({SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained(tmp_path_factory, demo_data):
    """A resnet34 teacher and an IKD resnet18 student trained from it, one epoch each at 64 px.

    Returns a dict with `teacher` and `student` checkpoint paths and the student's `run` folder.
    """
    from helpers import tiny_config
    from ikd_gui.engine.training import train

    out = tmp_path_factory.mktemp("trained-runs")
    teacher = train(tiny_config(demo_data, out, mode="teacher", arch="resnet34", name="teacher"))
    student = train(tiny_config(demo_data, out, mode="ikd", teacher=str(teacher.best_checkpoint), name="student"))
    return {"teacher": teacher.best_checkpoint, "student": student.best_checkpoint, "run": student.run_dir}
