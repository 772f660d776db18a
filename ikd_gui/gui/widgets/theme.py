"""Palette-aware pieces shared by the widgets: plots that follow light and dark themes, and inline messages.

pyqtgraph draws with its own fixed colours (black background, grey axes) unless told otherwise; these helpers
take them from the Qt palette and follow palette changes at run time.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QWidget

pg.setConfigOptions(antialias=True)

# Data colours chosen to read on both light and dark backgrounds and to stay distinct for colour-blind
# viewers (blue/orange); the routing heatmap uses the same pair for student/teacher.
STUDENT_COLOUR = (52, 120, 200)
TEACHER_COLOUR = (230, 126, 34)
TRAIN_COLOUR = (52, 120, 200)
VAL_COLOUR = (230, 126, 34)
SCHEDULE_COLOUR = (120, 120, 120)
# Classes of a dataset, runs in a comparison: distinct colours in a fixed order.
SERIES_COLOURS = [(52, 120, 200), (230, 126, 34), (67, 160, 71), (142, 68, 173), (192, 57, 43), (22, 160, 133)]


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def error_colour(palette: QPalette) -> QColor:
    return QColor("#ef5350") if is_dark(palette) else QColor("#c62828")


def warning_colour(palette: QPalette) -> QColor:
    return QColor("#ffb74d") if is_dark(palette) else QColor("#a15c00")


class ThemedPlotArea(pg.GraphicsLayoutWidget):
    """A pyqtgraph layout whose background, axes and labels use the palette's base and text colours."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.apply_palette()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and self.scene() is not None:  # None during construction
            self.apply_palette()
        super().changeEvent(event)

    def apply_palette(self) -> None:
        """Recolour everything; call again after adding plots so new axes match."""
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        self.setBackground(base)
        legend_background = QColor(base)
        legend_background.setAlpha(210)  # legends sit over data: keep the curves under them faintly visible
        text = palette.color(QPalette.ColorRole.Text)
        for item in self.scene().items():
            if isinstance(item, pg.AxisItem):
                item.setPen(text)
                item.setTextPen(text)
            elif isinstance(item, pg.LabelItem):
                item.setText(item.text, color=text)
            elif isinstance(item, pg.LegendItem):
                item.setLabelTextColor(text)
                item.setBrush(legend_background)


class InlineMessage(QLabel):
    """A one-line error or warning shown next to the control it is about; hidden while empty."""

    def __init__(self, parent: QWidget | None = None, level: str = "error"):
        super().__init__(parent)
        self._level = level
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()
        self._apply_colour()

    def show_message(self, text: str) -> None:
        self.setText(text)
        self.setToolTip(text)
        self.setVisible(bool(text))

    def clear_message(self) -> None:
        self.show_message("")

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_colour()
        super().changeEvent(event)

    def _apply_colour(self) -> None:
        palette = self.palette()
        colour = error_colour(palette) if self._level == "error" else warning_colour(palette)
        if palette.color(QPalette.ColorRole.WindowText) != colour:  # setPalette itself sends a PaletteChange
            palette.setColor(QPalette.ColorRole.WindowText, colour)
            self.setPalette(palette)
