"""Swap-in schedule editor: type and parameters, a live preview of p(t) over the planned epochs, and for the
`fixed` schedule one toggle per swap position.

Run on its own: `python -m ikd_gui.gui.widgets.schedule_editor`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from ...engine.errors import IKDError
from ...engine.hybrid import SwapPosition
from ...engine.schedules import SCHEDULES, Schedule, progress
from ...engine.training import TrainConfig
from .theme import STUDENT_COLOUR, InlineMessage, ThemedPlotArea

# Before a dataset is chosen the number of steps per epoch is unknown; the curve's shape hardly depends on it.
NOMINAL_STEPS_PER_EPOCH = 100
MAX_PREVIEW_POINTS = 400
GRANULARITY_LABELS = {"step": "every step", "epoch": "every epoch"}
SCHEDULE_FIELDS = ("schedule", "p0", "cycles", "mask", "granularity")  # the TrainConfig fields edited here


def preview_points(schedule: Schedule, epochs: int, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """p along the run, x in epochs, exactly as the training loop evaluates it.

    With epoch granularity p changes only at epoch starts, so the result is a step function: x holds the
    epoch edges (one more value than p) for pyqtgraph's `stepMode="center"`.
    """
    total_steps = max(epochs * steps_per_epoch, 1)
    if schedule.granularity == "epoch":
        values = [schedule.p(progress(epoch * steps_per_epoch, total_steps)) for epoch in range(epochs)]
        return np.arange(epochs + 1, dtype=np.float64), np.asarray(values, np.float64)
    steps = np.unique(np.linspace(0, total_steps - 1, min(total_steps, MAX_PREVIEW_POINTS)).round().astype(int))
    values = [schedule.p(progress(int(step), total_steps)) for step in steps]
    return steps / steps_per_epoch, np.asarray(values, np.float64)


class ScheduleEditor(QWidget):
    """Edits the schedule fields of a `TrainConfig` (schedule, p0, cycles, mask, granularity)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._positions: list[SwapPosition] = []
        self.mask_buttons: list[QToolButton] = []
        self._wanted_mask: list[int] = []  # kept while no teacher is known, applied when the positions arrive
        self._epochs = 15
        self._steps_per_epoch: int | None = None

        self.type_box = QComboBox(self)
        for name, function in SCHEDULES.items():
            self.type_box.addItem(name, name)
            self.type_box.setItemData(self.type_box.count() - 1, (function.__doc__ or "").strip(),
                                      Qt.ItemDataRole.ToolTipRole)
        self.type_box.setToolTip("How the probability p(t) of running each student block changes during training")
        self.p0_box = QDoubleSpinBox(self, decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.p0_box.setToolTip("p0: the probability of running a student block at the start (uniform: throughout)")
        self.cycles_box = QSpinBox(self, minimum=1, maximum=100)
        self.cycles_box.setToolTip("How many times the review schedule repeats its ramp from p0 to 1")
        self.granularity_box = QComboBox(self)
        for value, label in GRANULARITY_LABELS.items():
            self.granularity_box.addItem(label, value)
        self.granularity_box.setToolTip("Draw a new routing mask every training step, or once per epoch")

        self._mask_row = QWidget(self)
        self._mask_layout = QHBoxLayout(self._mask_row)
        self._mask_layout.setContentsMargins(0, 0, 0, 0)
        self._mask_layout.setSpacing(2)
        self._mask_hint = QLabel("Choose a teacher checkpoint to see its swap positions.", self._mask_row)
        self._mask_hint.setWordWrap(True)
        self._mask_layout.addWidget(self._mask_hint)
        self._mask_row.setToolTip("One toggle per swap position: pressed runs the student block, released runs "
                                  "the teacher blocks in its place, for the whole run")

        self._area = ThemedPlotArea(self)
        self._area.setMinimumHeight(140)
        self._area.setToolTip("Preview: p(t) over the planned epochs, as the training loop will evaluate it")
        self._plot = self._area.addPlot()
        self._plot.setLabel("bottom", "epoch")
        self._plot.setLabel("left", "p(student)")
        self._plot.setYRange(0.0, 1.0, padding=0.05)
        self._plot.setMouseEnabled(x=False, y=False)
        self._plot.hideButtons()
        self._curve = self._plot.plot(pen=pg.mkPen(*STUDENT_COLOUR, width=2))
        self._area.apply_palette()
        self._error = InlineMessage(self)

        self._form = QFormLayout()
        self._form.addRow("Schedule", self.type_box)
        self._form.addRow("p0", self.p0_box)
        self._form.addRow("Cycles", self.cycles_box)
        self._form.addRow("New mask", self.granularity_box)
        self._form.addRow("Mask", self._mask_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._form)
        layout.addWidget(self._error)
        layout.addWidget(self._area)

        defaults = TrainConfig()
        self.set_values(**{name: getattr(defaults, name) for name in SCHEDULE_FIELDS})
        for signal in (self.type_box.currentIndexChanged, self.p0_box.valueChanged, self.cycles_box.valueChanged,
                       self.granularity_box.currentIndexChanged):
            signal.connect(self._edited)

    # -- values -------------------------------------------------------------------------------------------

    def values(self) -> dict:
        """The TrainConfig fields this editor controls."""
        return {"schedule": self.type_box.currentData(), "p0": round(self.p0_box.value(), 4),
                "cycles": self.cycles_box.value(), "mask": self.mask(),
                "granularity": self.granularity_box.currentData()}

    def set_values(self, schedule: str, p0: float, cycles: int, mask: Sequence[int], granularity: str) -> None:
        """Show the given TrainConfig fields (the same keys as `values`); does not emit `changed`."""
        for widget in (self.type_box, self.p0_box, self.cycles_box, self.granularity_box):
            widget.blockSignals(True)
        self.type_box.setCurrentIndex(max(self.type_box.findData(schedule), 0))
        self.p0_box.setValue(p0)
        self.cycles_box.setValue(cycles)
        self.granularity_box.setCurrentIndex(max(self.granularity_box.findData(granularity), 0))
        for widget in (self.type_box, self.p0_box, self.cycles_box, self.granularity_box):
            widget.blockSignals(False)
        self._wanted_mask = [int(m) for m in mask]
        self._apply_mask(self._wanted_mask)
        self._update()

    def mask(self) -> list[int]:
        return [int(button.isChecked()) for button in self.mask_buttons]

    def schedule(self) -> Schedule | None:
        """The edited schedule, or None (and an inline message) when it cannot be built."""
        values = self.values()
        try:
            return Schedule(values["schedule"], values["p0"], values["cycles"], tuple(values["mask"]),
                            values["granularity"])
        except IKDError as exc:
            if values["schedule"] == "fixed" and not self._positions:
                self._error.show_message("The fixed schedule needs the swap positions of a teacher/student pair: "
                                         "choose a teacher checkpoint first.")
            else:
                self._error.show_message(str(exc))
            return None

    def problem(self) -> str | None:
        return None if self.schedule() is not None else self._error.text()

    # -- context ------------------------------------------------------------------------------------------

    def set_positions(self, positions: Sequence[SwapPosition] | None) -> None:
        """The swap positions of the chosen teacher/student pair (None or empty when not known)."""
        self._positions = list(positions or [])
        for button in self.mask_buttons:
            self._mask_layout.removeWidget(button)
            button.deleteLater()
        self.mask_buttons = []
        for position in self._positions:
            button = QToolButton(self._mask_row)
            button.setText(position.student_name)
            button.setCheckable(True)
            button.setToolTip(f"{position.label}\npressed: student block {position.student_name}; "
                              f"released: the teacher's blocks in its place")
            button.toggled.connect(self._mask_toggled)
            self._mask_layout.addWidget(button)
            self.mask_buttons.append(button)
        self._mask_hint.setVisible(not self._positions)
        self._apply_mask(self._wanted_mask)
        self._update()

    def set_plan(self, epochs: int, steps_per_epoch: int | None) -> None:
        """The planned run length, for the preview's x axis."""
        self._epochs, self._steps_per_epoch = max(epochs, 1), steps_per_epoch
        self._update_preview()

    def preview(self) -> tuple[np.ndarray, np.ndarray]:
        """The (x, p) currently drawn."""
        x, y = self._curve.getData()
        return (np.zeros(0), np.zeros(0)) if x is None else (x, y)

    # -- internals ----------------------------------------------------------------------------------------

    def _apply_mask(self, mask: list[int]) -> None:
        """Set the toggles from `mask`; a mask of another length (another pair) starts all-student."""
        mask = mask if len(mask) == len(self.mask_buttons) else [1] * len(self.mask_buttons)
        for button, value in zip(self.mask_buttons, mask):
            button.blockSignals(True)
            button.setChecked(bool(value))
            button.blockSignals(False)

    def _mask_toggled(self) -> None:
        self._wanted_mask = self.mask()
        self._edited()

    def _edited(self) -> None:
        self._update()
        self.changed.emit()

    def _update(self) -> None:
        name = self.type_box.currentData()
        self._form.setRowVisible(self.p0_box, name in ("uniform", "linear", "review"))
        self._form.setRowVisible(self.cycles_box, name == "review")
        self._form.setRowVisible(self.granularity_box, name != "fixed")
        self._form.setRowVisible(self._mask_row, name == "fixed")
        self._update_preview()

    def _update_preview(self) -> None:
        schedule = self.schedule()
        if schedule is None:
            self._curve.setData([], [])
            return
        self._error.clear_message()
        x, y = preview_points(schedule, self._epochs, self._steps_per_epoch or NOMINAL_STEPS_PER_EPOCH)
        self._curve.setData(x, y, stepMode="center" if len(x) == len(y) + 1 else None)
        self._plot.setXRange(0, self._epochs, padding=0.02)


def _demo() -> None:  # pragma: no cover - a manual preview
    import sys

    from PySide6.QtWidgets import QApplication

    from ...engine.hybrid import check_architectures

    app = QApplication(sys.argv)
    editor = ScheduleEditor()
    editor.set_positions(check_architectures("resnet34", "resnet18"))
    editor.set_plan(15, 160)
    editor.changed.connect(lambda: print(editor.values()))
    editor.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
