"""Routing heatmap: which block ran at each swap position, step by step (student or teacher).

One row per swap position, one column per step. Long runs are binned: a column then holds the fraction of its
steps that used the student, so memory and drawing cost stay bounded by `max_columns` whatever the run length.
When the length is not known in advance (a run followed from its log files), the map starts at one step per
column and halves its resolution each time it fills up.
Beside the map, each position's student share so far.

Run on its own with streaming fake data: `python -m ikd_gui.gui.widgets.routing_heatmap`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .theme import STUDENT_COLOUR, TEACHER_COLOUR, ThemedPlotArea

REDRAW_INTERVAL_MS = 33  # at most ~30 redraws per second, however fast steps arrive


def _merge_column_pairs(counts: np.ndarray) -> np.ndarray:
    """Counts per column (last axis) summed over pairs of columns, in an array of the same shape: the pairs fill
    its first half, the rest is zero."""
    merged = np.zeros_like(counts)
    even, odd = counts[..., 0::2], counts[..., 1::2]
    merged[..., :even.shape[-1]] = even
    merged[..., :odd.shape[-1]] += odd
    return merged


class RoutingHeatmap(QWidget):
    """Student/teacher routing per swap position and step, fed incrementally (`add_steps`) or all at once (`load`)."""

    def __init__(self, parent: QWidget | None = None, max_columns: int = 1000):
        super().__init__(parent)
        self._max_columns = max_columns
        self._labels: list[str] = []
        self._first_step = 0
        self._steps_per_column = 1
        self._student_counts = np.zeros((0, 0), np.float64)  # [positions, columns]: steps that used the student
        self._step_counts = np.zeros(0, np.int64)  # [columns]: steps seen in each column
        self._filled_columns = 0

        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self.refresh)

        self._area = ThemedPlotArea(self)
        colour_map = pg.ColorMap([0.0, 1.0], [TEACHER_COLOUR, STUDENT_COLOUR])
        self._plot = self._area.addPlot(row=0, col=0)
        self._plot.invertY(True)
        self._plot.setLabel("bottom", "step")
        self._plot.showGrid(x=False, y=False)
        self._image = pg.ImageItem(axisOrder="row-major")
        self._plot.addItem(self._image)

        self._share_plot = self._area.addPlot(row=0, col=1)
        self._share_plot.setYLink(self._plot)
        self._share_plot.invertY(True)
        self._share_plot.hideAxis("left")
        self._share_plot.setLabel("bottom", "student share")
        self._share_plot.setXRange(0.0, 1.0, padding=0.02)
        self._share_plot.setMouseEnabled(x=False, y=False)
        self._share_plot.setMaximumWidth(130)
        self._share_plot.getAxis("bottom").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")]])
        self._share_plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)
        self._share_bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=pg.mkBrush(*STUDENT_COLOUR))
        self._share_plot.addItem(self._share_bars)

        # Fixed levels 0..1: no auto-levels pass on each update, and colours mean the same in every run.
        self._colour_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colour_map, interactive=False,
                                           colorMapMenu=False, width=14, label="block used")
        self._colour_bar.setImageItem(self._image)
        colour_axis = self._colour_bar.axis
        colour_axis.setTicks([[(0.0, "teacher"), (0.5, "50%"), (1.0, "student")]])
        # Room for the end labels that name the colours: half a line past each end, and their full width.
        colour_axis.setStyle(hideOverlappingLabels=False)
        colour_axis.setWidth(self.fontMetrics().horizontalAdvance("student") + 20)
        self._area.addItem(self._colour_bar, row=0, col=2)
        self._area.apply_palette()
        self._plot.scene().sigMouseMoved.connect(self._mouse_moved)

        self._placeholder = QLabel("Routing is recorded in IKD runs: start one to see which blocks ran.", self)
        self._placeholder.setWordWrap(True)
        self._readout = QLabel(self)
        self._readout.setToolTip("What is under the mouse pointer in the heatmap")
        self._reset_button = QPushButton("Reset view", self)
        self._reset_button.setToolTip("Fit the whole run again and follow new steps")
        self._reset_button.clicked.connect(self.reset_view)

        bottom = QHBoxLayout()
        bottom.addWidget(self._readout, 1)
        bottom.addWidget(self._reset_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._placeholder)
        layout.addWidget(self._area, 1)
        layout.addLayout(bottom)
        self.setToolTip("Rows: swap positions; columns: training steps; colour: the block that ran "
                        "(binned columns show the fraction of steps that used the student)")
        self._show_area(False)

    # -- data ---------------------------------------------------------------------------------------------

    def start(self, position_labels: Sequence[str], total_steps: int | None, first_step: int = 0) -> None:
        """Prepare for a run of `total_steps` steps (shown from `first_step`, e.g. when resuming), or of a length
        not known yet (None)."""
        self._labels = list(position_labels)
        self._first_step = first_step
        if total_steps is None:
            self._steps_per_column, columns = 1, self._max_columns
        else:
            span = max(total_steps - first_step, 1)
            self._steps_per_column = max(1, math.ceil(span / self._max_columns))
            columns = math.ceil(span / self._steps_per_column)
        self._student_counts = np.zeros((len(self._labels), columns), np.float64)
        self._step_counts = np.zeros(columns, np.int64)
        self._filled_columns = 0
        left_axis = self._plot.getAxis("left")
        left_axis.setTicks([[(i + 0.5, label) for i, label in enumerate(self._labels)]])
        # The axis does not grow to fit long tick labels by itself; size it to the longest one.
        label_width = max((self.fontMetrics().horizontalAdvance(label) for label in self._labels), default=0)
        left_axis.setWidth(label_width + 15)
        self._image.clear()
        # Room for every row label; the splitter above may still make the map larger.
        self._area.setMinimumHeight(len(self._labels) * (self.fontMetrics().height() + 4) + 70)
        self._share_bars.setOpts(x0=np.zeros(len(self._labels)), y=np.arange(len(self._labels)) + 0.5,
                                 width=np.zeros(len(self._labels)))
        self._readout.clear()
        self._show_area(bool(self._labels))
        self.reset_view()

    def add_steps(self, steps: Sequence[int], masks: np.ndarray | Sequence[Sequence[int]]) -> None:
        """Record the routing of some steps: `masks[i][k]` is 1 where position k used the student at steps[i]."""
        if not self._labels or len(steps) == 0:
            return
        offsets = np.asarray(steps, np.int64) - self._first_step
        masks = np.asarray(masks, np.float64).reshape(len(offsets), len(self._labels))
        inside = offsets >= 0
        offsets, masks = offsets[inside], masks[inside]
        if len(offsets) == 0:
            return
        while offsets.max() // self._steps_per_column >= len(self._step_counts):
            self._halve_resolution()
        columns = offsets // self._steps_per_column
        np.add.at(self._student_counts.T, columns, masks)
        np.add.at(self._step_counts, columns, 1)
        self._filled_columns = max(self._filled_columns, int(columns.max()) + 1)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _halve_resolution(self) -> None:
        """Merge pairs of columns, so the same number of columns covers twice as many steps."""
        self._student_counts = _merge_column_pairs(self._student_counts)
        self._step_counts = _merge_column_pairs(self._step_counts)
        self._steps_per_column *= 2
        self._filled_columns = (self._filled_columns + 1) // 2

    def clear(self) -> None:
        self.start([], 0)

    @property
    def steps_per_column(self) -> int:
        return self._steps_per_column

    @property
    def position_labels(self) -> list[str]:
        return list(self._labels)

    def image(self) -> np.ndarray:
        """The drawn values [positions, columns]: student fraction per column (NaN where no step fell)."""
        return np.zeros((len(self._labels), 0), np.float32) if self._image.image is None else self._image.image

    def student_share(self) -> np.ndarray:
        """Per position, the fraction of steps so far that used the student block."""
        return self._student_counts.sum(axis=1) / max(int(self._step_counts.sum()), 1)

    # -- drawing ------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw from the buffers (called by the redraw timer; call directly to draw at once)."""
        filled = self._filled_columns
        if filled == 0:
            return
        counts = self._step_counts[:filled]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(counts > 0, self._student_counts[:, :filled] / counts, np.nan)
        self._image.setImage(np.ascontiguousarray(values, np.float32), autoLevels=False)
        self._image.setRect(QRectF(self._first_step, 0, filled * self._steps_per_column, len(self._labels)))
        self._share_bars.setOpts(width=self.student_share())

    def reset_view(self) -> None:
        self._plot.enableAutoRange()

    def _show_area(self, visible: bool) -> None:
        self._area.setVisible(visible)
        self._reset_button.setVisible(visible)
        self._placeholder.setVisible(not visible)

    # -- hover --------------------------------------------------------------------------------------------

    def describe_at(self, x: float, y: float) -> str:
        """Text for the point (step x, row y) of the map; empty outside the data."""
        row = math.floor(y)
        column = math.floor((x - self._first_step) / self._steps_per_column)
        if not (0 <= row < len(self._labels) and 0 <= column < self._filled_columns) or self._step_counts[column] == 0:
            return ""
        label = self._labels[row]
        used = self._student_counts[row, column]
        if self._steps_per_column == 1:
            return f"step {self._first_step + column} · {label}: {'student' if used else 'teacher'}"
        first = self._first_step + column * self._steps_per_column
        steps = int(self._step_counts[column])
        return (f"steps {first}-{first + self._steps_per_column - 1} · {label}: student in {used / steps:.0%} "
                f"of {steps} steps")

    def _mouse_moved(self, scene_position: QPointF) -> None:
        if not self._plot.vb.sceneBoundingRect().contains(scene_position):
            self._readout.clear()
            return
        point = self._plot.vb.mapSceneToView(scene_position)
        self._readout.setText(self.describe_at(point.x(), point.y()))


def _demo() -> None:  # pragma: no cover - a manual preview with fake data
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    heatmap = RoutingHeatmap()
    labels = [f"layer{s}.{b} <-> teacher layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    total = 5000
    heatmap.start(labels, total)
    rng = np.random.default_rng(0)
    state = {"step": 0}

    def tick() -> None:
        first = state["step"]
        steps = np.arange(first, min(first + 25, total))
        p = 0.3 + 0.7 * steps / total
        heatmap.add_steps(steps, (rng.random((len(steps), len(labels))) < p[:, None]).astype(np.uint8))
        state["step"] = first + len(steps)

    timer = QTimer(interval=20, timeout=tick)
    timer.start()
    heatmap.resize(900, 400)
    heatmap.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
