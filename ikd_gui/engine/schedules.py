"""Swap-in schedules: p(t), the probability that a swap position uses the student block.

Each schedule is a pure function of training progress t in [0, 1] (0 at the first step, 1 at the last), so
the app can plot it before a run starts. Adding a schedule is one decorated function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .errors import IKDError

SCHEDULES: dict[str, Callable[..., float]] = {}
GRANULARITIES = ("step", "epoch")


def register_schedule(name: str):
    def decorate(function: Callable[..., float]) -> Callable[..., float]:
        SCHEDULES[name] = function
        return function
    return decorate


@register_schedule("uniform")
def uniform(t: float, p0: float, **_) -> float:
    """Constant p0."""
    return p0


@register_schedule("linear")
def linear(t: float, p0: float, **_) -> float:
    """From p0 at the start to 1 at the end."""
    return p0 + (1.0 - p0) * t


@register_schedule("review")
def review(t: float, p0: float, cycles: int = 2, **_) -> float:
    """The linear ramp p0 -> 1 repeated `cycles` times."""
    if t >= 1.0:
        return 1.0
    local = t * cycles
    return p0 + (1.0 - p0) * (local - math.floor(local))


@register_schedule("fixed")
def fixed(t: float, mask: Sequence[int] = (), **_) -> float:
    """A constant user mask (the reference notebook's fixed teacher influence); p is its share of ones."""
    return sum(mask) / len(mask) if mask else 1.0


def parse_mask(text: str) -> tuple[int, ...]:
    """'1,0,1,1' or '1011' -> (1, 0, 1, 1)."""
    digits = [c for c in text if c != "," and not c.isspace()]
    if not digits or any(d not in ("0", "1") for d in digits):
        raise IKDError(f"a mask is a list of 0 and 1 such as 1,0,1,1,1,1,1,1 (got {text!r})")
    return tuple(int(d) for d in digits)


@dataclass
class Schedule:
    """A named schedule with its parameters, and seeded Bernoulli sampling of routing masks."""

    name: str = "linear"
    p0: float = 0.5
    cycles: int = 2
    mask: tuple[int, ...] = field(default_factory=tuple)
    granularity: str = "step"

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise IKDError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.p0 <= 1.0:
            raise IKDError(f"p0 must be between 0 and 1, got {self.p0}")
        if self.cycles < 1:
            raise IKDError(f"cycles must be at least 1, got {self.cycles}")
        if self.granularity not in GRANULARITIES:
            raise IKDError(f"granularity must be one of {', '.join(GRANULARITIES)}")
        if self.name == "fixed" and not self.mask:
            raise IKDError("the fixed schedule needs a mask such as 1,0,1,1,1,1,1,1")
        self.mask = tuple(int(m) for m in self.mask)

    def p(self, t: float) -> float:
        t = min(max(t, 0.0), 1.0)
        return float(SCHEDULES[self.name](t, p0=self.p0, cycles=self.cycles, mask=self.mask))

    def curve(self, points: int = 200) -> tuple[list[float], list[float]]:
        """(t, p) samples for plotting."""
        ts = [i / (points - 1) for i in range(points)]
        return ts, [self.p(t) for t in ts]

    def check_positions(self, num_positions: int) -> None:
        if self.name == "fixed" and len(self.mask) != num_positions:
            raise IKDError(f"the mask has {len(self.mask)} entries but this teacher/student pair has "
                           f"{num_positions} swap positions")

    def sample(self, t: float, num_positions: int, generator: torch.Generator) -> tuple[int, ...]:
        """One routing mask: 1 keeps the student block at that position, 0 swaps in the teacher group."""
        if self.name == "fixed":
            return self.mask
        draws = torch.rand(num_positions, generator=generator).tolist()
        p = self.p(t)
        return tuple(int(d < p) for d in draws)

    def to_dict(self) -> dict:
        return {"name": self.name, "p0": self.p0, "cycles": self.cycles, "mask": list(self.mask),
                "granularity": self.granularity}


def progress(step: int, total_steps: int) -> float:
    """t for a 0-based step of a run of `total_steps` steps: 0 at the first, 1 at the last."""
    return step / (total_steps - 1) if total_steps > 1 else 1.0
