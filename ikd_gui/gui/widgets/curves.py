"""Training curves: loss per step (raw and smoothed), loss and accuracy per epoch, and the swap-in schedule
p(t) against the fraction of student blocks that actually ran.

Data arrives in batches (`add_batches`, `add_epoch`) into preallocated buffers and is drawn at most ~30 times a
second by a timer, so a fast run never floods the GUI thread. Run on its own with fake data:
`python -m ikd_gui.gui.widgets.curves`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from .theme import SCHEDULE_COLOUR, STUDENT_COLOUR, TRAIN_COLOUR, VAL_COLOUR, ThemedPlotArea

REDRAW_INTERVAL_MS = 33
DEFAULT_SMOOTHING = 0.6
# Per-epoch series drawn from metrics rows (the keys of metrics.csv and of `epoch_row`), with their plot.
EPOCH_SERIES = {
    "train_loss": ("loss", "train", TRAIN_COLOUR, Qt.PenStyle.SolidLine),
    "val_loss": ("loss", "validation", VAL_COLOUR, Qt.PenStyle.SolidLine),
    "train_acc": ("accuracy", "train", TRAIN_COLOUR, Qt.PenStyle.SolidLine),
    "val_acc": ("accuracy", "validation", VAL_COLOUR, Qt.PenStyle.SolidLine),
    "val_balanced_acc": ("accuracy", "validation, balanced", VAL_COLOUR, Qt.PenStyle.DashLine),
}


class GrowingSeries:
    """(x, y) float64 buffers filled from the front; capacity doubles when needed.

    float64 x keeps pyqtgraph's view clipping fast; `x`/`y` are views of the filled part, for `setData`.
    """

    def __init__(self, capacity: int = 256):
        self.reset(capacity)

    def reset(self, capacity: int = 256) -> None:
        self._x = np.empty(max(capacity, 1), np.float64)
        self._y = np.empty(max(capacity, 1), np.float64)
        self._size = 0

    def extend(self, xs: Sequence[float] | np.ndarray, ys: Sequence[float] | np.ndarray) -> None:
        count = len(xs)
        needed = self._size + count
        if needed > len(self._x):
            capacity = max(needed, 2 * len(self._x))
            self._x = np.concatenate([self._x[:self._size], np.empty(capacity - self._size)])
            self._y = np.concatenate([self._y[:self._size], np.empty(capacity - self._size)])
        self._x[self._size:needed] = xs
        self._y[self._size:needed] = ys
        self._size = needed

    def __len__(self) -> int:
        return self._size

    @property
    def x(self) -> np.ndarray:
        return self._x[:self._size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self._size]


class DebiasedEma:
    """TensorBoard's smoothing: an exponential moving average corrected for its zero start.

    `weight` 0 returns the values unchanged; 0.99 is very smooth. NaN values (no data) stay NaN and do not
    disturb the average.
    """

    def __init__(self, weight: float):
        self.weight = weight
        self._average = 0.0
        self._count = 0

    def extend(self, values: np.ndarray) -> np.ndarray:
        smoothed = np.empty(len(values), np.float64)
        for index, value in enumerate(values):
            if np.isnan(value):
                smoothed[index] = np.nan
                continue
            self._average = self.weight * self._average + (1.0 - self.weight) * value
            self._count += 1
            smoothed[index] = self._average / (1.0 - self.weight ** self._count)
        return smoothed


def epoch_row(event) -> dict[str, float | None]:
    """An engine `EpochEnded` as a metrics.csv row, so live runs and saved runs are drawn by the same code."""
    return {"epoch": event.epoch, "step": event.step, "train_loss": event.train_loss, "val_loss": event.val_loss,
            "train_acc": event.train_accuracy, "val_acc": event.val["accuracy"],
            "val_balanced_acc": event.val["balanced_accuracy"], "student_share": event.student_share}


def _nearest(xs: np.ndarray, x: float) -> int | None:
    """Index of the value in the sorted array `xs` closest to x."""
    index = int(np.searchsorted(xs, x))
    candidates = [i for i in (index - 1, index) if 0 <= i < len(xs)]
    return min(candidates, key=lambda i: abs(xs[i] - x)) if candidates else None


class TrainingCurves(QWidget):
    """Four live plots of one run, with smoothing, log scale and a reset of the view."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._loss = GrowingSeries()
        self._loss_smoothed = GrowingSeries()
        self._scheduled = GrowingSeries()
        self._observed = GrowingSeries()  # per step: fraction of swap positions that ran the student
        self._observed_smoothed = GrowingSeries()
        self._epoch_series = {key: GrowingSeries(64) for key in EPOCH_SERIES}
        self._epoch_shares = GrowingSeries(64)  # x = step at the epoch's end
        self._loss_smoother = DebiasedEma(DEFAULT_SMOOTHING)
        self._observed_smoother = DebiasedEma(DEFAULT_SMOOTHING)

        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self.refresh)

        self._area = ThemedPlotArea(self)
        # Legends go where the curves usually are not: top right for falling losses, bottom right for rising
        # accuracies and student shares.
        top_right, bottom_right = (-5, 5), (-5, -5)
        self._step_plot = self._make_plot(0, 0, "Loss per step", "step", "loss", top_right)
        self._routing_plot = self._make_plot(0, 1, "Swap-in schedule", "step", "student share", bottom_right)
        self._epoch_loss_plot = self._make_plot(1, 0, "Loss per epoch", "epoch", "loss", top_right)
        self._accuracy_plot = self._make_plot(1, 1, "Accuracy per epoch", "epoch", "accuracy", bottom_right)
        self._routing_plot.setYRange(0.0, 1.0)

        faint = pg.mkColor(*TRAIN_COLOUR)
        faint.setAlpha(70)
        self._loss_curve = self._step_plot.plot(pen=pg.mkPen(faint, width=1), name="raw")
        self._loss_smoothed_curve = self._step_plot.plot(pen=pg.mkPen(*TRAIN_COLOUR, width=2), name="smoothed")
        self._scheduled_curve = self._routing_plot.plot(
            pen=pg.mkPen(*SCHEDULE_COLOUR, width=2, style=Qt.PenStyle.DashLine), name="scheduled p(t)")
        observed_faint = pg.mkColor(*STUDENT_COLOUR)
        observed_faint.setAlpha(60)
        self._observed_curve = self._routing_plot.plot(pen=pg.mkPen(observed_faint, width=1))
        self._observed_smoothed_curve = self._routing_plot.plot(
            pen=pg.mkPen(*STUDENT_COLOUR, width=2), name="observed (smoothed)")
        # The raw curves keep each pixel column's extremes, so spikes stay visible; the smoothed ones show the
        # trend, and averaging the column keeps their thick antialiased line from becoming a costly zigzag.
        for smoothed in (self._loss_smoothed_curve, self._observed_smoothed_curve):
            smoothed.setDownsampling(auto=True, method="mean")
        self._epoch_share_points = self._routing_plot.plot(
            pen=None, symbol="o", symbolSize=7, symbolBrush=pg.mkBrush(*STUDENT_COLOUR), name="observed per epoch")
        self._epoch_curves = {}
        for key, (plot_name, label, colour, style) in EPOCH_SERIES.items():
            plot = self._epoch_loss_plot if plot_name == "loss" else self._accuracy_plot
            self._epoch_curves[key] = plot.plot(pen=pg.mkPen(*colour, width=2, style=style), symbol="o",
                                                symbolSize=6, symbolBrush=pg.mkBrush(*colour), name=label)
        self._area.apply_palette()

        self._hover = {
            self._step_plot: self._describe_step,
            self._routing_plot: self._describe_routing,
            self._epoch_loss_plot: lambda x: self._describe_epoch(x, ("train_loss", "val_loss")),
            self._accuracy_plot: lambda x: self._describe_epoch(x, ("train_acc", "val_acc", "val_balanced_acc")),
        }
        self._area.scene().sigMouseMoved.connect(self._mouse_moved)

        self._smoothing = QSlider(Qt.Orientation.Horizontal, self)
        self._smoothing.setRange(0, 99)
        self._smoothing.setValue(round(DEFAULT_SMOOTHING * 100))
        self._smoothing.setMaximumWidth(160)
        self._smoothing.setTracking(False)  # re-smooth once on release, not on every pixel of a drag
        self._smoothing.setToolTip("Exponential smoothing of the per-step curves (0 = raw); the raw values stay "
                                   "visible, faint, so spikes are not hidden")
        self._smoothing_label = QLabel(self)
        self._smoothing.valueChanged.connect(self._smoothing_changed)
        self._smoothing.sliderMoved.connect(lambda value: self._smoothing_label.setText(f"{value / 100:.2f}"))
        self._log_scale = QCheckBox("Log scale", self)
        self._log_scale.setToolTip("Logarithmic loss axes")
        self._log_scale.toggled.connect(self._set_log_scale)
        self._reset_button = QPushButton("Reset view", self)
        self._reset_button.setToolTip("Fit all data again and follow new data (zooming or panning stops following)")
        self._reset_button.clicked.connect(self.reset_view)
        self._readout = QLabel(self)
        self._readout.setToolTip("Values under the mouse pointer")

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Smoothing", self))
        controls.addWidget(self._smoothing)
        controls.addWidget(self._smoothing_label)
        controls.addWidget(self._log_scale)
        controls.addWidget(self._readout, 1)
        controls.addWidget(self._reset_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._area, 1)
        layout.addLayout(controls)
        self._smoothing_changed(self._smoothing.value())

    def _make_plot(self, row: int, col: int, title: str, x_label: str, y_label: str,
                   legend_offset: tuple[int, int]) -> pg.PlotItem:
        plot = self._area.addPlot(row=row, col=col, title=title)
        plot.setLabel("bottom", x_label)
        plot.setLabel("left", y_label)
        plot.getAxis("left").enableAutoSIPrefix(False)  # "accuracy (x0.001)" reads worse than plain numbers
        # Long curves are drawn at about a point per pixel column, keeping each column's extremes ("peak"), and only
        # where in view. Set on the plot, not the curves: PlotItem.addItem overwrites a curve's own downsampling
        # and clipping options with the plot's, which are off by default.
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        # No grid: pyqtgraph draws grid lines as part of the axes, over the whole plot, on every repaint;
        # on a live plot they were most of the GUI thread's drawing time.
        plot.addLegend(offset=legend_offset, labelTextSize="8pt")
        return plot

    # -- data ---------------------------------------------------------------------------------------------

    def start(self, total_steps: int, routed: bool, step_loss_available: bool = True) -> None:
        """Clear and prepare for a run of `total_steps` steps; `routed` runs (IKD) have a swap-in schedule."""
        capacity = max(total_steps, 1)
        for series in (self._loss, self._loss_smoothed, self._scheduled, self._observed, self._observed_smoothed):
            series.reset(capacity)
        for series in (*self._epoch_series.values(), self._epoch_shares):
            series.reset(64)
        self._loss_smoother = DebiasedEma(self.smoothing)
        self._observed_smoother = DebiasedEma(self.smoothing)
        self._step_plot.setTitle("Loss per step" if step_loss_available
                                 else "Loss per step (not saved in run folders; shown for live runs)")
        self._routing_plot.setTitle("Swap-in schedule" if routed else "Swap-in schedule (IKD runs only)")
        self._area.apply_palette()  # new titles get pyqtgraph's default colour
        self.refresh()
        self.reset_view()

    def add_batches(self, batches: Sequence) -> None:
        """Append engine `BatchEnded` events (in step order)."""
        if not batches:
            return
        steps = np.fromiter((b.step for b in batches), np.float64, len(batches))
        losses = np.fromiter((b.loss for b in batches), np.float64, len(batches))
        self._loss.extend(steps, losses)
        self._loss_smoothed.extend(steps, self._loss_smoother.extend(losses))
        if batches[0].mask:
            self.add_routing(steps, np.fromiter((b.p for b in batches), np.float64, len(batches)),
                             np.array([b.mask for b in batches], np.float64))
        self._schedule_redraw()

    def add_routing(self, steps: np.ndarray, scheduled: np.ndarray, masks: np.ndarray) -> None:
        """Scheduled p and routing masks [steps x positions] of some steps."""
        observed = masks.mean(axis=1)
        self._scheduled.extend(steps, scheduled)
        self._observed.extend(steps, observed)
        self._observed_smoothed.extend(steps, self._observed_smoother.extend(observed))
        self._schedule_redraw()

    def add_epoch(self, row: dict) -> None:
        """One metrics row (metrics.csv keys; see `epoch_row`)."""
        for key, series in self._epoch_series.items():
            value = row.get(key)
            series.extend([row["epoch"]], [np.nan if value is None else value])
        if row.get("student_share") is not None:
            self._epoch_shares.extend([row["step"]], [row["student_share"]])
        self._schedule_redraw()

    def step_losses(self) -> tuple[np.ndarray, np.ndarray]:
        return self._loss.x, self._loss.y

    def smoothed_losses(self) -> np.ndarray:
        return self._loss_smoothed.y

    def epoch_values(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        series = self._epoch_series[key]
        return series.x, series.y

    def routing_values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps, scheduled p, observed student fraction) per step."""
        return self._scheduled.x, self._scheduled.y, self._observed.y

    # -- drawing ------------------------------------------------------------------------------------------

    @property
    def smoothing(self) -> float:
        return self._smoothing.value() / 100.0

    def set_smoothing(self, weight: float) -> None:
        self._smoothing.setValue(round(weight * 100))

    def _smoothing_changed(self, value: int) -> None:
        self._smoothing_label.setText(f"{value / 100:.2f}")
        self._loss_smoother = DebiasedEma(self.smoothing)
        self._observed_smoother = DebiasedEma(self.smoothing)
        for source, target, smoother in ((self._loss, self._loss_smoothed, self._loss_smoother),
                                         (self._observed, self._observed_smoothed, self._observed_smoother)):
            x, y = source.x.copy(), source.y.copy()
            target.reset(len(source))
            target.extend(x, smoother.extend(y))
        self._schedule_redraw()

    def _set_log_scale(self, enabled: bool) -> None:
        self._step_plot.setLogMode(y=enabled)
        self._epoch_loss_plot.setLogMode(y=enabled)

    def _schedule_redraw(self) -> None:
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def refresh(self) -> None:
        """Redraw from the buffers (called by the redraw timer)."""
        self._loss_curve.setData(self._loss.x, self._loss.y)
        self._loss_smoothed_curve.setData(self._loss_smoothed.x, self._loss_smoothed.y)
        self._scheduled_curve.setData(self._scheduled.x, self._scheduled.y)
        self._observed_curve.setData(self._observed.x, self._observed.y)
        self._observed_smoothed_curve.setData(self._observed_smoothed.x, self._observed_smoothed.y)
        self._epoch_share_points.setData(self._epoch_shares.x, self._epoch_shares.y)
        for key, curve in self._epoch_curves.items():
            curve.setData(self._epoch_series[key].x, self._epoch_series[key].y)

    def reset_view(self) -> None:
        for plot in self._hover:
            plot.enableAutoRange()

    # -- hover --------------------------------------------------------------------------------------------

    def _mouse_moved(self, scene_position: QPointF) -> None:
        for plot, describe in self._hover.items():
            if plot.vb.sceneBoundingRect().contains(scene_position):
                self._readout.setText(describe(plot.vb.mapSceneToView(scene_position).x()))
                return
        self._readout.clear()

    def _describe_step(self, x: float) -> str:
        index = _nearest(self._loss.x, x)
        if index is None:
            return ""
        return (f"step {self._loss.x[index]:.0f}: loss {self._loss.y[index]:.4g} "
                f"(smoothed {self._loss_smoothed.y[index]:.4g})")

    def _describe_routing(self, x: float) -> str:
        index = _nearest(self._scheduled.x, x)
        if index is None:
            return ""
        return (f"step {self._scheduled.x[index]:.0f}: scheduled p {self._scheduled.y[index]:.2f}, "
                f"student share {self._observed.y[index]:.2f} (smoothed {self._observed_smoothed.y[index]:.2f})")

    def _describe_epoch(self, x: float, keys: tuple[str, ...]) -> str:
        index = _nearest(self._epoch_series[keys[0]].x, x)
        if index is None:
            return ""
        values = ", ".join(f"{EPOCH_SERIES[k][1]} {self._epoch_series[k].y[index]:.4g}" for k in keys)
        return f"epoch {self._epoch_series[keys[0]].x[index]:.0f}: {values}"

    def describe_at(self, plot_name: str, x: float) -> str:
        """The hover text of a plot ("step", "routing", "epoch_loss", "accuracy") at x; for tests and tools."""
        plots = {"step": self._step_plot, "routing": self._routing_plot, "epoch_loss": self._epoch_loss_plot,
                 "accuracy": self._accuracy_plot}
        return self._hover[plots[plot_name]](x)


def _demo() -> None:  # pragma: no cover - a manual preview with fake data
    import sys
    from types import SimpleNamespace

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    curves = TrainingCurves()
    total, per_epoch = 3000, 300
    curves.start(total, routed=True)
    rng = np.random.default_rng(0)
    state = {"step": 0}

    def tick() -> None:
        batches = []
        for _ in range(10):
            step = state["step"]
            if step >= total:
                return
            p = 0.3 + 0.7 * step / total
            batches.append(SimpleNamespace(step=step, loss=float(np.exp(-step / 800) + 0.1 * rng.random()), p=p,
                                           mask=tuple(int(v) for v in rng.random(8) < p)))
            state["step"] = step + 1
            if (step + 1) % per_epoch == 0:
                epoch = (step + 1) // per_epoch
                curves.add_batches(batches)
                batches = []
                loss = float(np.exp(-step / 800))
                curves.add_epoch({"epoch": epoch, "step": step + 1, "train_loss": loss, "val_loss": loss * 1.2,
                                  "train_acc": 1 - loss / 2, "val_acc": 1 - loss / 1.8,
                                  "val_balanced_acc": 1 - loss / 1.7, "student_share": p})
        curves.add_batches(batches)

    timer = QTimer(interval=20, timeout=tick)
    timer.start()
    curves.resize(1000, 600)
    curves.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
