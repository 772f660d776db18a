"""Swap-in schedules: values as pure functions of progress, and seeded Bernoulli masks."""

from __future__ import annotations

import pytest
import torch

from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.schedules import SCHEDULES, Schedule, parse_mask, progress


def test_schedule_values():
    assert Schedule("uniform", p0=0.3).p(0.7) == pytest.approx(0.3)
    linear = Schedule("linear", p0=0.2)
    assert [linear.p(t) for t in (0, 0.5, 1)] == pytest.approx([0.2, 0.6, 1.0])
    review = Schedule("review", p0=0.2, cycles=2)
    assert [review.p(t) for t in (0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx([0.2, 0.6, 0.2, 0.6, 1.0])
    fixed = Schedule("fixed", mask=(1, 0, 1, 1))
    assert fixed.p(0.4) == pytest.approx(0.75)
    assert set(SCHEDULES) >= {"uniform", "linear", "review", "fixed"}


def test_curve_is_plottable():
    ts, ps = Schedule("review", p0=0.1, cycles=3).curve(61)
    assert len(ts) == len(ps) == 61 and ts[0] == 0 and ts[-1] == 1
    assert sum(1 for a, b in zip(ps, ps[1:]) if b < a) == 2  # the ramp restarts twice


def test_sampling_is_seeded_and_matches_p():
    schedule = Schedule("uniform", p0=0.3)
    def draws(seed):
        g = torch.Generator().manual_seed(seed)
        return [schedule.sample(0.5, 8, g) for _ in range(500)]
    first, again, other = draws(1), draws(1), draws(2)
    assert first == again and first != other
    share = sum(map(sum, first)) / (500 * 8)
    assert share == pytest.approx(0.3, abs=0.03)
    assert Schedule("fixed", mask=(1, 0)).sample(0.1, 2, torch.Generator()) == (1, 0)


def test_progress_and_validation():
    assert progress(0, 10) == 0 and progress(9, 10) == 1
    assert parse_mask("1,0,1,1") == parse_mask("1011") == (1, 0, 1, 1)
    with pytest.raises(IKDError):
        parse_mask("1,2")
    with pytest.raises(IKDError):
        Schedule("cosine")
    with pytest.raises(IKDError):
        Schedule("fixed")
    with pytest.raises(IKDError, match="8 swap positions"):
        Schedule("fixed", mask=(1, 0)).check_positions(8)
