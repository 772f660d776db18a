"""The run summary: headline metrics, per-class table, confusion grid, ROC only when scores exist."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from ikd_gui.engine.metrics import classification_metrics
from ikd_gui.gui.widgets.summary import RunSummary

CLASSES = ["NORMAL", "PNEUMONIA"]


@pytest.fixture
def summary(qtbot):
    widget = RunSummary()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.clip(0.55 * labels + 0.5 * rng.random(60), 0, 1)
    return labels, scores, classification_metrics(labels, np.stack([1 - scores, scores], axis=1), CLASSES)


def test_validation_and_test_metrics_with_confusion_grid_and_roc(summary, metrics, tmp_path, qtbot):
    labels, scores, values = metrics
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"")
    summary.show_summary({"status": "completed", "message": "trained 3 epochs", "best_epoch": 2,
                          "epochs_completed": 3, "best_checkpoint": str(checkpoint), "classes": CLASSES,
                          "best_val": values, "test": {**values, "labels": labels.tolist(),
                                                       "scores": scores.tolist()}}, tmp_path)
    assert summary._status.text() == "Completed"
    assert summary.checkpoint() == str(checkpoint) and not summary.open_viewer_button.isHidden()
    assert summary.test.confusion_values() == values["confusion_matrix"]
    assert summary.test.per_class.item(1, 1).text() == f"{values['per_class']['PNEUMONIA']['recall']:.3f}"
    assert f"ROC AUC {values['auc']:.3f}" in summary.test._headline.text()
    assert summary.test.roc_visible() and not summary.validation.roc_visible()  # validation has no scores

    with qtbot.waitSignal(summary.open_in_viewer_requested) as request:
        summary.open_viewer_button.click()
    assert request.args == [str(checkpoint)]


def test_a_run_stopped_before_any_epoch_has_no_checkpoint(summary, tmp_path):
    summary.show_summary({"status": "cancelled", "message": "stopped by the user during epoch 1",
                          "best_checkpoint": None, "classes": CLASSES, "best_val": None, "test": None}, tmp_path)
    assert summary._status.text() == "Stopped by you"
    assert "No checkpoint" in summary._details.text()
    assert summary.open_viewer_button.isHidden() and summary.validation.isHidden() and summary.test.isHidden()


def test_export_writes_a_model_that_matches_the_checkpoint(summary, trained, tmp_path, monkeypatch, qtbot):
    import torch

    from ikd_gui.engine.inference import Predictor

    summary.show_run(trained["run"])
    assert not summary.export_button.isHidden()
    target = tmp_path / "student.pt"
    monkeypatch.setattr("ikd_gui.gui.widgets.summary.QFileDialog.getSaveFileName",
                        lambda *args: (str(target), "TorchScript model (*.pt)"))
    qtbot.mouseClick(summary.export_button, Qt.MouseButton.LeftButton)
    exported = torch.jit.load(str(target))
    predictor = Predictor(summary.checkpoint())
    grey = torch.randint(0, 256, (2, predictor.image_size, predictor.image_size), dtype=torch.uint8)
    expected = predictor.probabilities(grey)
    with torch.inference_mode():
        logits = exported(grey.unsqueeze(1).float() / 255.0)
    torch.testing.assert_close(torch.softmax(logits, 1).numpy(), expected, atol=1e-4, rtol=0)
