"""One run seen three ways: curves, routing heatmap (on the Curves tab), and the summary.

The Train tab feeds it live events; the History tab loads saved run folders into another instance, through the
same widgets, so a finished run looks the same in both places. A run folder that another process is still
writing (`ikd train` in a terminal, a torchrun job, a machine sharing the folder) is followed: its logs are
polled, and only what was added since the previous poll is read and drawn.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget

from ...engine.errors import IKDError
from ...engine.runs import Routing, RunTail, read_config
from .curves import TrainingCurves, epoch_row
from .routing_heatmap import RoutingHeatmap
from .summary import RunSummary
from .theme import STUDENT_COLOUR

FOLLOW_INTERVAL_MS = 1000  # the logs grow by a row per step and per epoch; once a second reads them cheaply


def saved_position_labels(config: dict, mask_width: int | None) -> list[str]:
    """Heatmap row labels of a saved run, as its config recorded them; numbered when they do not fit the routing
    log's masks (`mask_width` None: no step logged yet, nothing to check against)."""
    labels = config.get("position_labels") or []
    if mask_width is None or len(labels) == mask_width:
        return labels
    return [f"swap position {k}" for k in range(mask_width)]


def is_ongoing(summary: dict) -> bool:
    """A run folder without a summary has not finished its first epoch; "running" is rewritten every epoch."""
    return summary.get("status", "running") == "running"


class RunView(QWidget):
    open_in_viewer_requested = Signal(str)
    followed_run_ended = Signal()  # the summary of the run being followed says it ended

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.curves = TrainingCurves(self)
        self.heatmap = RoutingHeatmap(self)
        self.summary = RunSummary(self)
        self.summary.open_in_viewer_requested.connect(self.open_in_viewer_requested)
        self.follow_label = QLabel(self)
        self.follow_label.setToolTip("This run has not ended: its curves and routing are read from its folder as "
                                     "the training process writes them")
        self.follow_label.hide()
        self._follow_timer = QTimer(self, interval=FOLLOW_INTERVAL_MS)
        self._follow_timer.timeout.connect(self.poll)
        self._tail: RunTail | None = None
        self._planned_epochs = 0
        self._steps_read = 0
        self._epoch_in_log = 0
        self._last_growth = 0.0  # time.monotonic() when the followed logs last grew

        live = QSplitter(Qt.Orientation.Vertical, self)
        live.addWidget(self.curves)
        live.addWidget(self.heatmap)
        live.setStretchFactor(0, 3)
        live.setStretchFactor(1, 2)
        summary_scroll = QScrollArea(self)
        summary_scroll.setWidget(self.summary)
        summary_scroll.setWidgetResizable(True)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(live, "Curves and routing")
        self.tabs.addTab(summary_scroll, "Summary")
        self.tabs.setTabToolTip(0, "Loss, accuracy and swap-in curves, and which blocks ran at each step")
        self.tabs.setTabToolTip(1, "Best checkpoint and metrics of the finished run")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.follow_label)
        layout.addWidget(self.tabs)

    # -- live ---------------------------------------------------------------------------------------------

    def begin(self, event) -> None:
        """A run started (engine `RunStarted`)."""
        self.curves.start(event.total_steps, routed=bool(event.position_labels))
        self.heatmap.start(event.position_labels, event.total_steps, first_step=event.start_step)
        self.summary.clear()
        self.tabs.setCurrentIndex(0)

    def add_batches(self, batches: Sequence) -> None:
        self.curves.add_batches(batches)
        if batches and batches[0].mask:
            self.heatmap.add_steps([b.step for b in batches], [b.mask for b in batches])

    def add_epoch(self, event) -> None:
        self.curves.add_epoch(epoch_row(event))

    def show_result(self, run_dir: Path) -> None:
        self.summary.show_run(run_dir)
        self.tabs.setCurrentIndex(1)

    # -- saved, and followed while another process writes them ----------------------------------------------

    def load_run(self, run_dir: str | Path) -> None:
        """Redraw a run folder from its logs (raises IKDError when it is not one). A run that has not ended is then
        followed until its summary says it ended."""
        self.stop_following()
        config = read_config(run_dir)
        tail = RunTail(run_dir)
        # The summary is read before the logs: once it says the run ended, the logs it follows are complete.
        summary = tail.changed_summary() or {}
        rows, routing = tail.new_metrics(), tail.new_routing()  # a new tail's first read: everything so far
        steps, _, _, masks = routing
        ongoing = is_ongoing(summary)
        labels = saved_position_labels(config, masks.shape[1] if len(steps) else None)
        self.curves.start(len(steps), routed=bool(labels), step_loss_available=False)
        # A followed run's length is left open: the map bins more coarsely as it grows.
        self.heatmap.start(labels, None if ongoing else int(steps.max(initial=-1)) + 1)
        self._planned_epochs = config.get("epochs", 0)
        self._steps_read = self._epoch_in_log = 0
        self._add_logs(rows, routing)
        self.curves.refresh()  # drawn now rather than at the views' next redraw tick
        self.heatmap.refresh()
        if summary:
            self.summary.show_summary(summary, Path(run_dir))
        else:
            self.summary.clear()  # written when the first epoch ends
        if ongoing:
            self._tail = tail
            self._last_growth = time.monotonic()
            self._follow_timer.start()
            self._show_follow_state()

    @property
    def is_following(self) -> bool:
        return self._tail is not None

    @property
    def steps_read(self) -> int:
        """Steps of the shown run read from its routing log (saved or followed runs)."""
        return self._steps_read

    def stop_following(self) -> None:
        if self._tail is None:
            return
        self._follow_timer.stop()
        self._tail = None
        self.follow_label.hide()

    @Slot()
    def poll(self) -> None:
        """Draw what the followed run's process wrote since the previous poll (the follow timer calls this)."""
        tail = self._tail
        if tail is None:
            return
        summary = tail.changed_summary()
        rows, routing = tail.new_metrics(), tail.new_routing()
        if rows is None or routing is None:  # a resume rewrote the logs without the rows after its checkpoint
            with contextlib.suppress(IKDError):  # the folder went away meanwhile: load_run stopped following
                self.load_run(tail.path)
            return
        if rows or len(routing[0]):
            self._add_logs(rows, routing)
            self._last_growth = time.monotonic()
        if summary is not None:
            self.summary.show_summary(summary, tail.path)
            if not is_ongoing(summary):
                self.stop_following()
                self.followed_run_ended.emit()
                return
        self._show_follow_state()

    def _add_logs(self, rows: list[dict], routing: Routing) -> None:
        steps, epochs, scheduled, masks = routing
        if len(steps):
            if masks.shape[1]:
                self.curves.add_routing(steps.astype(np.float64), scheduled, masks.astype(np.float64))
                self.heatmap.add_steps(steps, masks)
            self._steps_read += len(steps)
            self._epoch_in_log = int(epochs[-1])
        for row in rows:
            self.curves.add_epoch(row)

    def _show_follow_state(self) -> None:
        quiet = time.monotonic() - self._last_growth
        progress = (f"step {self._steps_read}, epoch {self._epoch_in_log} of {self._planned_epochs}"
                    if self._steps_read else "waiting for the first step")
        silence = f" · nothing new for {quiet:.0f} s" if quiet >= 10 else ""  # e.g. validating, or interrupted
        dot = "#{:02x}{:02x}{:02x}".format(*STUDENT_COLOUR)
        self.follow_label.setText(f'<span style="color:{dot}">●</span> Following live: {progress}{silence}')
        self.follow_label.show()
