"""One run seen three ways: curves, routing heatmap (on the Curves tab), and the summary.

The Train tab feeds it live events; the History tab loads saved run folders into another instance, through the
same widgets, so a finished run looks the same in both places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget

from ...engine.runs import read_config, read_metrics, read_routing
from .curves import TrainingCurves, epoch_row
from .routing_heatmap import RoutingHeatmap
from .summary import RunSummary


def saved_position_labels(config: dict, count: int) -> list[str]:
    """Heatmap row labels of a saved IKD run, as its config recorded them (numbered if they do not fit)."""
    labels = config.get("position_labels") or []
    return labels if len(labels) == count else [f"swap position {k}" for k in range(count)]


class RunView(QWidget):
    open_in_viewer_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.curves = TrainingCurves(self)
        self.heatmap = RoutingHeatmap(self)
        self.summary = RunSummary(self)
        self.summary.open_in_viewer_requested.connect(self.open_in_viewer_requested)

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

    # -- saved --------------------------------------------------------------------------------------------

    def load_run(self, run_dir: str | Path) -> None:
        """Redraw a run folder from its logs (raises IKDError when it is not one)."""
        config = read_config(run_dir)
        steps, _, scheduled, masks = read_routing(run_dir)
        self.curves.load(read_metrics(run_dir), steps, scheduled, masks)
        labels = saved_position_labels(config, masks.shape[1]) if masks.shape[1] else []
        self.heatmap.load(labels, steps, masks)
        self.summary.show_run(run_dir)
