"""The routing heatmap: one column per step, or bounded bins of student fractions for long runs; hover text."""

from __future__ import annotations

import numpy as np
import pytest

from ikd_gui.engine.hybrid import check_architectures
from ikd_gui.gui.widgets.routing_heatmap import RoutingHeatmap

LABELS = [p.label for p in check_architectures("resnet34", "resnet18")]


@pytest.fixture
def heatmap(qtbot):
    widget = RoutingHeatmap(max_columns=100)
    qtbot.addWidget(widget)
    return widget


def random_masks(steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, len(LABELS))) < np.linspace(0.2, 1.0, steps)[:, None]).astype(np.uint8)


def test_one_column_per_step_while_the_run_fits(heatmap, qtbot):
    masks = random_masks(60)
    heatmap.start(LABELS, total_steps=60)
    heatmap.add_steps(range(0, 25), masks[:25])
    heatmap.add_steps(range(25, 60), masks[25:])
    qtbot.waitUntil(lambda: heatmap.image().shape == (8, 60))  # drawn by the redraw timer
    assert np.array_equal(heatmap.image(), masks.T)
    assert heatmap.student_share() == pytest.approx(masks.mean(axis=0))
    assert heatmap.describe_at(12.5, 5.5) == f"step 12 · {LABELS[5]}: {'student' if masks[12, 5] else 'teacher'}"
    assert heatmap.describe_at(70, 5.5) == "" and heatmap.describe_at(3, 9) == ""


def test_long_runs_are_binned_into_student_fractions(heatmap):
    total = 1000
    masks = random_masks(total, seed=1)
    heatmap.start(LABELS, total_steps=total)
    for first in range(0, 990, 30):  # the last 10 steps never arrive: a run stopped early
        heatmap.add_steps(range(first, min(first + 30, 990)), masks[first:min(first + 30, 990)])
    heatmap.refresh()
    assert heatmap.steps_per_column == 10
    image = heatmap.image()
    assert image.shape == (8, 99) and image.dtype == np.float32 and image.flags["C_CONTIGUOUS"]
    expected = masks[:990].reshape(99, 10, 8).mean(axis=1).T
    assert np.allclose(image, expected)
    assert heatmap.describe_at(255, 0.5) == (f"steps 250-259 · {LABELS[0]}: student in "
                                             f"{expected[0, 25]:.0%} of 10 steps")

    heatmap.start(LABELS, total_steps=100_000)  # memory stays bounded by max_columns whatever the length
    heatmap.add_steps(range(100_000), np.ones((100_000, 8), np.uint8))
    heatmap.refresh()
    assert heatmap.image().shape == (8, 100) and np.all(heatmap.image() == 1.0)


def test_a_run_of_unknown_length_halves_the_resolution_as_it_fills(heatmap):
    masks = random_masks(250, seed=2)
    heatmap.start(LABELS, total_steps=None)  # a run followed from its logs: its length is not known
    heatmap.add_steps(range(0, 100), masks[:100])
    heatmap.refresh()
    assert heatmap.steps_per_column == 1 and np.array_equal(heatmap.image(), masks[:100].T)
    heatmap.add_steps(range(100, 250), masks[100:])  # past 100 columns: 2, then 4 steps per column
    heatmap.refresh()
    assert heatmap.steps_per_column == 4 and heatmap.image().shape == (8, 63)
    padded = np.concatenate([masks, np.full((2, 8), np.nan)]).reshape(63, 4, 8)
    assert np.allclose(heatmap.image(), np.nanmean(padded, axis=1).T)
    assert heatmap.student_share() == pytest.approx(masks.mean(axis=0))


def test_runs_without_routing_show_a_note(heatmap):
    heatmap.start([], total_steps=50)
    heatmap.add_steps(range(5), np.zeros((5, 0)))
    heatmap.refresh()
    assert heatmap.image().shape == (0, 0)
    assert not heatmap._placeholder.isHidden() and heatmap._area.isHidden()
