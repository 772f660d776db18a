"""Training curves: buffered per-step and per-epoch data, debiased EMA smoothing, hover text, saved runs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ikd_gui.gui.widgets.curves import DebiasedEma, GrowingSeries, TrainingCurves



@pytest.fixture
def curves(qtbot):
    widget = TrainingCurves()
    qtbot.addWidget(widget)
    return widget


def batches(first: int, count: int, rng) -> list:
    return [SimpleNamespace(step=s, loss=float(1.0 / (1 + s) + rng.random()), p=0.3 + 0.7 * s / 99,
                            mask=tuple(int(v) for v in rng.random(8) < 0.5)) for s in range(first, first + count)]


def test_growing_series_keeps_float64_views_of_what_was_added():
    series = GrowingSeries(capacity=2)
    series.extend([0, 1, 2], [5, 6, 7])
    series.extend([3], [8])
    assert series.x.dtype == np.float64 and list(series.x) == [0, 1, 2, 3] and list(series.y) == [5, 6, 7, 8]


def test_debiased_ema_starts_at_the_first_value_and_smooths():
    values = np.array([1.0, 3.0, np.nan, 2.0])
    smoothed = DebiasedEma(0.5).extend(values)
    assert smoothed[0] == pytest.approx(1.0)  # no pull towards zero at the start
    assert smoothed[1] == pytest.approx((0.25 + 1.5) / 0.75)
    assert np.isnan(smoothed[2]) and smoothed[3] == pytest.approx((0.875 + 1.0) / 0.875)
    assert np.array_equal(DebiasedEma(0.0).extend(values[[0, 1, 3]]), values[[0, 1, 3]])


def test_live_data_smoothing_and_hover(curves, qtbot):
    rng = np.random.default_rng(0)
    curves.start(total_steps=100, routed=True)
    sent = batches(0, 40, rng) + batches(40, 60, rng)
    curves.add_batches(sent[:40])
    curves.add_batches(sent[40:])
    curves.add_epoch({"epoch": 1, "step": 100, "train_loss": 0.7, "val_loss": 0.6, "train_acc": 0.5,
                      "val_acc": 0.55, "val_balanced_acc": 0.52, "student_share": 0.61})
    x, y = curves.step_losses()
    assert list(x) == list(range(100)) and y == pytest.approx([b.loss for b in sent])
    steps, scheduled, observed = curves.routing_values()
    assert scheduled == pytest.approx([b.p for b in sent])
    assert observed == pytest.approx([np.mean(b.mask) for b in sent])
    assert curves.epoch_values("val_balanced_acc") == (pytest.approx([1.0]), pytest.approx([0.52]))

    curves.set_smoothing(0.0)
    assert curves.smoothed_losses() == pytest.approx(y)
    curves.set_smoothing(0.9)
    assert np.std(np.diff(curves.smoothed_losses())) < 0.5 * np.std(np.diff(y))

    qtbot.waitUntil(lambda: curves._loss_curve.xData is not None and len(curves._loss_curve.xData) == 100)
    assert curves.describe_at("step", 41.8).startswith(f"step 42: loss {y[42]:.4g}")
    assert curves.describe_at("routing", 10).startswith(f"step 10: scheduled p {sent[10].p:.2f}")
    assert curves.describe_at("accuracy", 1.2) == ("epoch 1: train 0.5, validation 0.55, "
                                                   "validation, balanced 0.52")


def test_long_curves_are_drawn_at_about_a_point_per_pixel_keeping_spikes(curves):
    """Downsampling must reach the curves: pyqtgraph's PlotItem overwrites a curve's own downsampling options."""
    rng = np.random.default_rng(1)
    total = 50_000
    curves.resize(1000, 600)
    curves.show()
    curves.start(total_steps=total, routed=True)
    sent = batches(0, total, rng)
    sent[12_345].loss = 50.0  # one spike
    curves.add_batches(sent)
    curves.refresh()
    curves.grab()  # paints: the curves pick their downsampling for the plots' width in pixels
    for curve in (curves._loss_curve, curves._loss_smoothed_curve, curves._observed_curve):
        assert len(curve.getData()[0]) < total / 10
    assert curves._loss_curve.getData()[1].max() == 50.0  # the raw curve keeps each column's extremes
