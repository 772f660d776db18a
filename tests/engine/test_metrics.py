"""Metrics against values worked out by hand."""

import numpy as np
import pytest

from ikd_gui.engine.metrics import classification_metrics, roc_auc, roc_curve


def test_binary_metrics_by_hand():
    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    p1 = np.array([0.1, 0.6, 0.2, 0.9, 0.8, 0.4, 0.7, 0.95])
    m = classification_metrics(labels, np.stack([1 - p1, p1], 1), ["NORMAL", "PNEUMONIA"])
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["per_class"]["PNEUMONIA"]["precision"] == pytest.approx(4 / 5)
    assert m["per_class"]["NORMAL"]["recall"] == pytest.approx(2 / 3)
    # Positive/negative pairs ranked correctly: 14 of 15.
    assert m["auc"] == pytest.approx(14 / 15)


def test_auc_ties_and_single_class():
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    fpr, tpr = roc_curve(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8]))
    assert fpr[-1] == 1 and tpr[-1] == 1 and tpr[2] == 1 and fpr[2] == 0


def test_three_class_has_no_auc():
    probs = np.eye(3)[[0, 1, 2, 2]]
    m = classification_metrics([0, 1, 2, 1], probs, ["A", "B", "C"])
    assert m["auc"] is None and m["confusion_matrix"][1] == [0, 1, 1]
