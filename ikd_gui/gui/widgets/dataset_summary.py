"""What a dataset folder holds: layout, classes, images per split and class (a small bar chart), skipped files
with the reason, and a strip of thumbnails.

Thumbnails load one per event-loop turn, so a folder of large radiographs never freezes the window.
Run on its own: `python -m ikd_gui.gui.widgets.dataset_summary [FOLDER]`.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from ...engine.data import DatasetScan, ImageDecodeError, read_grey, resize_grey
from .theme import SERIES_COLOURS, ThemedPlotArea

THUMBNAIL_SIZE = 72
THUMBNAILS_PER_CLASS = 4


def load_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> QImage:
    """A small preview of an image file; raises ImageDecodeError when it cannot be read.

    Qt's readers scale while decoding (fast for large JPEGs); DICOM and anything Qt cannot read go through the
    engine's decoder.
    """
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    if reader.canRead():
        full_size = reader.size()
        if full_size.isValid():
            reader.setScaledSize(full_size.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if not image.isNull():
            return image
    grey = resize_grey(read_grey(path), size)
    return QImage(grey.data, size, size, size, QImage.Format.Format_Grayscale8).copy()


class DatasetSummary(QWidget):
    """Shows a `DatasetScan`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._pending_thumbnails: list[tuple[Path, str]] = []
        self._thumbnail_timer = QTimer(self, interval=0)
        self._thumbnail_timer.timeout.connect(self._load_next_thumbnail)

        self._description = QLabel(self)
        self._description.setWordWrap(True)
        self._description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._area = ThemedPlotArea(self)
        self._area.setToolTip("Images per split and class")
        self._plot = self._area.addPlot()
        self._plot.setMouseEnabled(x=False, y=False)
        self._plot.hideButtons()
        self._plot.invertY(True)
        self._plot.setLabel("bottom", "images")
        self._skipped_label = QLabel(self)
        self._skipped = QListWidget(self)
        self._skipped.setMaximumHeight(90)
        self._skipped.setToolTip("Files that will not be used, and why")
        self._thumbnails = QListWidget(self)
        self._thumbnails.setViewMode(QListView.ViewMode.IconMode)
        self._thumbnails.setFlow(QListView.Flow.LeftToRight)
        self._thumbnails.setWrapping(False)
        self._thumbnails.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self._thumbnails.setFixedHeight(THUMBNAIL_SIZE + 2 * self.fontMetrics().height() + 16)
        self._thumbnails.setToolTip("A few training images of each class")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self._description, self._area, self._thumbnails, self._skipped_label, self._skipped):
            layout.addWidget(widget)
        self.clear()

    def clear(self) -> None:
        self._thumbnail_timer.stop()
        self._pending_thumbnails = []
        self._description.setText("No dataset chosen.")
        self._plot.clear()
        self._thumbnails.clear()
        self._skipped.clear()
        for widget in (self._area, self._thumbnails, self._skipped_label, self._skipped):
            widget.hide()

    def show_scan(self, scan: DatasetScan) -> None:
        self.clear()
        counts = scan.counts()
        lines = [f"{scan.layout} layout · {scan.label_scheme} labels · classes: {', '.join(scan.classes)}"]
        for split, per_class in counts.items():
            detail = ", ".join(f"{name} {n}" for name, n in per_class.items())
            lines.append(f"{split}: {sum(per_class.values())} images ({detail})")
        self._description.setText("\n".join(lines))
        self._draw_counts(scan.classes, counts)
        self._area.show()

        if scan.skipped:
            self._skipped_label.setText(f"{len(scan.skipped)} files skipped:")
            for path, reason in scan.skipped:
                item = QListWidgetItem(f"{path.name}: {reason}")
                item.setToolTip(str(path))
                self._skipped.addItem(item)
            self._skipped_label.show()
            self._skipped.show()

        for label, name in enumerate(scan.classes):
            samples = [s for s in scan.splits["train"] if s.label == label][:THUMBNAILS_PER_CLASS]
            self._pending_thumbnails.extend((s.path, name) for s in samples)
        if self._pending_thumbnails:
            self._thumbnails.show()
            self._thumbnail_timer.start()

    def description(self) -> str:
        return self._description.text()

    def thumbnail_count(self) -> int:
        return self._thumbnails.count()

    def _draw_counts(self, classes: list[str], counts: dict[str, dict[str, int]]) -> None:
        """Horizontal bars, one row per split and class, coloured by class."""
        rows = [(split, index, name) for split in counts for index, name in enumerate(classes)]
        for index in range(len(classes)):
            ys = [row for row, (_, class_index, _) in enumerate(rows) if class_index == index]
            widths = [counts[rows[row][0]][rows[row][2]] for row in ys]
            self._plot.addItem(pg.BarGraphItem(x0=0, y=ys, height=0.75, width=widths,
                                               brush=pg.mkBrush(*SERIES_COLOURS[index % len(SERIES_COLOURS)])))
        axis = self._plot.getAxis("left")
        labels = [f"{split} · {name} ({counts[split][name]})" for split, _, name in rows]
        axis.setTicks([list(enumerate(labels))])
        axis.setWidth(max(self.fontMetrics().horizontalAdvance(label) for label in labels) + 15)
        self._area.setFixedHeight(len(rows) * 2 * self.fontMetrics().height() + 50)
        self._area.apply_palette()

    def _load_next_thumbnail(self) -> None:
        if not self._pending_thumbnails:
            self._thumbnail_timer.stop()
            return
        path, class_name = self._pending_thumbnails.pop(0)
        item = QListWidgetItem(class_name)
        item.setToolTip(str(path))
        try:
            item.setIcon(QIcon(QPixmap.fromImage(load_thumbnail(path))))
        except ImageDecodeError as exc:
            item.setText(f"{class_name} (unreadable)")
            item.setToolTip(str(exc))
        self._thumbnails.addItem(item)


def _demo() -> None:  # pragma: no cover - a manual preview
    import sys

    from PySide6.QtWidgets import QApplication

    from ...engine.data import scan_dataset
    from ...resources import demo_dataset

    app = QApplication(sys.argv)
    summary = DatasetSummary()
    summary.show_scan(scan_dataset(sys.argv[1] if len(sys.argv) > 1 else demo_dataset()))
    summary.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
