"""Measuring the app under load, for the stress tests and benchmarks: how long the GUI thread is kept from its
event loop (the user feels it as a frozen window), and the process's resident memory while training runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Slot

from ..engine.training import RunFinished, TrainConfig
from ..resources import demo_dataset
from .controller import TrainingController


def enlarged_demo_dataset(folder: Path, copies: int) -> Path:
    """The demo's images `copies` times over (hard links, so no disk space), as a class-per-folder dataset: a
    long run then spends its time in training steps rather than in per-epoch validation and checkpoints."""
    for image in sorted(demo_dataset().rglob("*.jpeg")):
        target = folder / image.parent.name
        target.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            os.link(image, target / f"{copy}-{image.name}")
    return folder


def resident_memory_mb() -> float:
    """The process's resident set size now (Linux: /proc/self/statm), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class StallMeter(QObject):
    """A timer meant to fire every `interval_ms` in the GUI thread; the gaps between its ticks show how long the
    thread was busy elsewhere (drawing, slots, waiting for the GIL). An idle app gives gaps near the interval."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self._timer = QTimer(self, interval=interval_ms, timerType=Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self._gaps_ms: list[float] = []

    def start(self) -> None:
        self._gaps_ms = []
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> np.ndarray:
        """Stop measuring; the gaps between ticks, in ms."""
        self._timer.stop()
        return np.array(self._gaps_ms)

    @Slot()
    def _tick(self) -> None:
        now = time.perf_counter()
        self._gaps_ms.append((now - self._last) * 1e3)
        self._last = now


@dataclass
class WatchedRun:
    """What `watch_training` saw of one run."""

    result: RunFinished
    steps: int  # steps whose batch events reached the GUI thread
    seconds: float
    memory_mb: list[float]  # resident memory after each epoch past the warm-up
    gaps_ms: np.ndarray = field(repr=False)  # gaps between the stall meter's ticks during the run

    @property
    def memory_growth_mb(self) -> float:
        return self.memory_mb[-1] - self.memory_mb[0] if self.memory_mb else 0.0

    @property
    def worst_stall_ms(self) -> float:
        return float(self.gaps_ms.max())

    @property
    def p99_stall_ms(self) -> float:
        return float(np.percentile(self.gaps_ms, 99))


def watch_training(controller: TrainingController, config: TrainConfig, warm_up_epochs: int = 2,
                   timeout_s: float = 3600.0) -> WatchedRun:
    """Train `config` through the controller (whatever it is connected to keeps drawing) and wait for the end in a
    local event loop, measuring GUI-thread stalls throughout and resident memory after each epoch past
    `warm_up_epochs` (the first epochs allocate the caches and optimizer state that later epochs reuse)."""
    meter = StallMeter()
    memory_mb: list[float] = []
    steps = [0]
    finished: list[RunFinished] = []
    loop = QEventLoop()

    def count_steps(batches) -> None:
        steps[0] += len(batches)

    def sample_memory(event) -> None:
        if event.epoch > warm_up_epochs:
            memory_mb.append(resident_memory_mb())

    def end(result: RunFinished) -> None:
        finished.append(result)
        loop.quit()

    connections = ((controller.batches_ended, count_steps), (controller.epoch_ended, sample_memory),
                   (controller.run_finished, end))
    for signal, slot in connections:
        signal.connect(slot)
    deadline = QTimer(singleShot=True, interval=round(timeout_s * 1000))
    deadline.timeout.connect(loop.quit)
    started = time.perf_counter()
    meter.start()
    deadline.start()
    controller.start(config)
    loop.exec()
    gaps_ms = meter.stop()
    seconds = time.perf_counter() - started
    deadline.stop()
    for signal, slot in connections:
        signal.disconnect(slot)
    if not finished:
        controller.shutdown()
        raise TimeoutError(f"the run did not end within {timeout_s:.0f} s ({steps[0]} steps)")
    return WatchedRun(finished[0], steps[0], seconds, memory_mb, gaps_ms)
