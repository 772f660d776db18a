"""The built-in demo: a small real dataset, a quickly trained teacher, and settings that run on a laptop CPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..resources import demo_dataset
from .data import default_cache_dir
from .training import CancelToken, TrainConfig, TrainingObserver, train

DEMO_IMAGE_SIZE = 64


def demo_teacher_path() -> Path:
    return default_cache_dir().parent / "demo-teacher" / f"resnet34-{DEMO_IMAGE_SIZE}px.pt"


def demo_config(out: str | Path, teacher: str | Path | None = None) -> TrainConfig:
    """IKD of a resnet18 student from a resnet34 teacher on the demo images: about a minute on two cores."""
    return TrainConfig(data=str(demo_dataset()), mode="ikd", arch="resnet18",
                       teacher=str(teacher) if teacher else None, schedule="linear", p0=0.3,
                       epochs=4, batch_size=16, image_size=DEMO_IMAGE_SIZE, out=str(out), name="demo-ikd")


def ensure_demo_teacher(out: str | Path, observer: TrainingObserver | None = None,
                        cancel: CancelToken | None = None) -> Path | None:
    """The demo's teacher checkpoint, trained once (a few epochs) and kept in the user's cache.

    Returns None when the user cancelled the teacher's training.
    """
    target = demo_teacher_path()
    if target.exists():
        return target
    config = TrainConfig(data=str(demo_dataset()), mode="teacher", arch="resnet34", epochs=3, batch_size=16,
                         image_size=DEMO_IMAGE_SIZE, out=str(out), name="demo-teacher")
    result = train(config, observer, cancel)
    if result.status == "cancelled" or result.best_checkpoint is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    shutil.copyfile(result.best_checkpoint, partial)
    os.replace(partial, target)
    return target
