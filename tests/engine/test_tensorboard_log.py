"""TensorBoard event files of a real IKD run hold every step's routing, the same as routing.csv."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from helpers import tiny_config

from ikd_gui.engine import training
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.hybrid import partition
from ikd_gui.engine.models import ARCHITECTURES
from ikd_gui.engine.runs import read_routing
from ikd_gui.engine.tensorboard_log import TensorBoardObserver, routing_tag


def scalars(accumulator, name: str) -> tuple[np.ndarray, np.ndarray]:
    events = accumulator.Scalars(name)
    return np.array([e.step for e in events]), np.array([e.value for e in events])


# A skip mark rather than importorskip in the test: it skips before the costly `trained` fixture is set up.
@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_ikd_run_writes_batch_epoch_and_routing_scalars(trained, demo_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = training.train(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(trained["teacher"]),
                                        image_size=32, name="tb"), TensorBoardObserver())

    log = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    log.Reload()
    steps, _, p_csv, masks_csv = read_routing(result.run_dir)
    assert len(steps) > 0

    logged_steps, losses = scalars(log, "batch/loss")
    np.testing.assert_array_equal(logged_steps, steps)
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(scalars(log, "routing/p")[1], p_csv, rtol=1e-5)

    positions = partition(ARCHITECTURES["resnet34"][2], ARCHITECTURES["resnet18"][2])
    logged_masks = np.stack([scalars(log, routing_tag(p.label))[1] for p in positions], axis=1)
    np.testing.assert_array_equal(logged_masks, masks_csv)  # 1 = student block, 0 = teacher group

    epoch_end = int(steps[-1]) + 1
    for name in ("epoch/train_loss", "epoch/val_loss", "val/balanced_accuracy", "epoch/student_share",
                 "val_recall/NORMAL", "val_recall/PNEUMONIA"):
        assert list(scalars(log, name)[0]) == [epoch_end]
    assert {"config/text_summary", "result/text_summary"} <= set(log.Tags()["tensors"])


def test_without_tensorboard_the_observer_explains_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(IKDError, match=r"pip install 'ikd-gui\[tensorboard\]'"):
        TensorBoardObserver()
