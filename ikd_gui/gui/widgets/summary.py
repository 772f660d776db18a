"""After a run: status, best checkpoint, and the validation and test metrics (per-class precision and recall,
confusion matrix, ROC curve for binary tasks when the per-image scores are available).

Everything is read from the run folder's summary.json, so a live run and a run opened from history show the
same thing. Run on its own: `python -m ikd_gui.gui.widgets.summary [RUN_FOLDER]`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QUrl, Qt, Signal
from PySide6.QtGui import QColor, QDesktopServices, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QFileDialog, QGroupBox, QHBoxLayout, QLabel,
                               QMessageBox, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ...engine.errors import IKDError
from ...engine.export import export_checkpoint
from ...engine.metrics import roc_curve
from ...engine.runs import read_summary
from .theme import SCHEDULE_COLOUR, STUDENT_COLOUR, ThemedPlotArea

STATUS_TEXT = {"completed": "Completed", "early_stopped": "Stopped early", "cancelled": "Stopped by you",
               "failed": "Failed", "running": "Running, or interrupted"}


def _blend(low: QColor, high: QColor, fraction: float) -> QColor:
    return QColor(*(round(a + (b - a) * fraction) for a, b in
                    zip(low.getRgb()[:3], high.getRgb()[:3])))


def _read_only_table(parent: QWidget) -> QTableWidget:
    table = QTableWidget(parent)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    return table


def _fit_to_contents(table: QTableWidget) -> None:
    """A small table as large as its cells, no larger: no scroll bars, no stretched empty space."""
    table.resizeColumnsToContents()
    table.resizeRowsToContents()
    frame = 2 * table.frameWidth() + 2
    width = table.verticalHeader().sizeHint().width() + sum(table.columnWidth(c) for c in range(table.columnCount()))
    height = table.horizontalHeader().sizeHint().height() + sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedSize(width + frame, height + frame)


class MetricsView(QGroupBox):
    """One split's `classification_metrics`: headline numbers, per-class table, confusion grid, ROC curve."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(title, parent)
        self._headline = QLabel(self)
        self._headline.setWordWrap(True)
        self._headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.per_class = _read_only_table(self)
        self.per_class.setToolTip("Precision: of the images predicted as the class, the share that are. "
                                  "Recall: of the images of the class, the share found.")
        self.confusion = _read_only_table(self)
        self.confusion.setToolTip("Rows: true class; columns: predicted class. Shade: share of the row.")
        self._roc_area = ThemedPlotArea(self)
        self._roc_area.setFixedSize(260, 240)
        self._roc_area.setToolTip("ROC curve of the positive class (the second class) on these images")
        self._roc_plot = self._roc_area.addPlot(title="ROC")
        self._roc_plot.setLabel("bottom", "false positive rate")
        self._roc_plot.setLabel("left", "true positive rate")
        self._roc_plot.setRange(xRange=(0, 1), yRange=(0, 1))
        self._roc_plot.setMouseEnabled(x=False, y=False)
        self._roc_plot.hideButtons()
        self._roc_plot.plot([0, 1], [0, 1], pen=pg.mkPen(*SCHEDULE_COLOUR, style=Qt.PenStyle.DashLine))
        self._roc_curve = self._roc_plot.plot(pen=pg.mkPen(*STUDENT_COLOUR, width=2))
        self._roc_area.apply_palette()

        tables = QVBoxLayout()
        tables.addWidget(QLabel("Per class", self))
        tables.addWidget(self.per_class, 0, Qt.AlignmentFlag.AlignLeft)
        tables.addWidget(QLabel("Confusion matrix (rows: true, columns: predicted)", self))
        tables.addWidget(self.confusion, 0, Qt.AlignmentFlag.AlignLeft)
        tables.addStretch(1)
        body = QHBoxLayout()
        body.addLayout(tables, 1)
        body.addWidget(self._roc_area, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addWidget(self._headline)
        layout.addLayout(body)

    def show_metrics(self, metrics: dict, classes: list[str]) -> None:
        parts = [f"accuracy {metrics['accuracy']:.3f}", f"balanced accuracy {metrics['balanced_accuracy']:.3f}"]
        if metrics.get("auc") is not None:
            parts.append(f"ROC AUC {metrics['auc']:.3f}")
        if "loss" in metrics:
            parts.append(f"loss {metrics['loss']:.4f}")
        parts.append(f"{metrics['count']} images")
        self._headline.setText(" · ".join(parts))

        columns = ("precision", "recall", "f1", "support")
        self.per_class.setRowCount(len(classes))
        self.per_class.setColumnCount(len(columns))
        self.per_class.setHorizontalHeaderLabels([c if c != "f1" else "F1" for c in columns])
        self.per_class.setVerticalHeaderLabels(classes)
        for row, name in enumerate(classes):
            values = metrics["per_class"][name]
            for col, key in enumerate(columns):
                text = str(values[key]) if key == "support" else f"{values[key]:.3f}"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.per_class.setItem(row, col, item)
        _fit_to_contents(self.per_class)

        self._show_confusion(np.asarray(metrics["confusion_matrix"], np.int64), classes)
        self._show_roc(metrics, len(classes))

    def _show_confusion(self, matrix: np.ndarray, classes: list[str]) -> None:
        palette = self.palette()
        low, high = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Highlight)
        self.confusion.setRowCount(len(classes))
        self.confusion.setColumnCount(len(classes))
        self.confusion.setVerticalHeaderLabels([f"true {c}" for c in classes])
        self.confusion.setHorizontalHeaderLabels([f"predicted {c}" for c in classes])
        row_totals = matrix.sum(axis=1)
        for row in range(len(classes)):
            for col in range(len(classes)):
                share = matrix[row, col] / row_totals[row] if row_totals[row] else 0.0
                item = QTableWidgetItem(f"{matrix[row, col]}  ({share:.0%})")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setBackground(_blend(low, high, share))
                item.setForeground(palette.color(QPalette.ColorRole.HighlightedText if share > 0.5
                                                 else QPalette.ColorRole.Text))
                self.confusion.setItem(row, col, item)
        _fit_to_contents(self.confusion)

    def _show_roc(self, metrics: dict, num_classes: int) -> None:
        # The ROC needs each image's label and score; summaries that hold only the metrics show no curve.
        labels, scores = metrics.get("labels"), metrics.get("scores")
        available = num_classes == 2 and labels is not None and scores is not None and len(labels) > 0
        self._roc_area.setVisible(available)
        if available:
            fpr, tpr = roc_curve(np.asarray(labels) == 1, np.asarray(scores, np.float64))
            self._roc_curve.setData(fpr, tpr)
            self._roc_plot.setTitle(f"ROC (AUC {metrics['auc']:.3f})" if metrics.get("auc") is not None else "ROC")

    def roc_visible(self) -> bool:
        return not self._roc_area.isHidden()

    def confusion_values(self) -> list[list[int]]:
        return [[int(self.confusion.item(r, c).text().split()[0]) for c in range(self.confusion.columnCount())]
                for r in range(self.confusion.rowCount())]


class RunSummary(QWidget):
    """The outcome of one run; `open_in_viewer_requested(checkpoint)` when the user asks to try the model."""

    open_in_viewer_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._run_dir: Path | None = None
        self._checkpoint: str | None = None
        self._status = QLabel(self)
        font = self._status.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self._status.setFont(font)
        self._details = QLabel(self)
        self._details.setWordWrap(True)
        self._details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_viewer_button = QPushButton("Open in viewer", self)
        self.open_viewer_button.setToolTip("Classify images with the best checkpoint in the Viewer tab")
        self.open_viewer_button.clicked.connect(lambda: self.open_in_viewer_requested.emit(self._checkpoint))
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip("Write the best checkpoint as ONNX or TorchScript, with its preprocessing built "
                                      "in, for use outside IKD Studio")
        self.export_button.clicked.connect(self._choose_export_file)
        self._open_folder_button = QPushButton("Open run folder", self)
        self._open_folder_button.setToolTip("Show the run's logs and checkpoints in the file manager")
        self._open_folder_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._run_dir))))
        self.validation = MetricsView("Validation, best epoch", self)
        self.test = MetricsView("Test (held out; never used to choose the model)", self)

        buttons = QHBoxLayout()
        buttons.addWidget(self.open_viewer_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self._open_folder_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self._status)
        layout.addWidget(self._details)
        layout.addLayout(buttons)
        layout.addWidget(self.validation)
        layout.addWidget(self.test)
        layout.addStretch(1)
        self.clear()

    def clear(self) -> None:
        self._run_dir = self._checkpoint = None
        self._status.setText("No finished run yet.")
        self._details.setText("When a run ends, its results appear here. Earlier runs are in the History tab.")
        for widget in (self.open_viewer_button, self.export_button, self._open_folder_button, self.validation,
                       self.test):
            widget.hide()

    def show_run(self, run_dir: str | Path) -> None:
        """Show the run folder's summary.json."""
        self.show_summary(read_summary(run_dir), Path(run_dir))

    def show_summary(self, summary: dict, run_dir: Path | None) -> None:
        self.clear()
        self._run_dir = run_dir
        status = summary.get("status", "")
        self._status.setText(STATUS_TEXT.get(status, status or "No summary written (the run did not start)"))
        checkpoint = summary.get("best_checkpoint")
        self._checkpoint = checkpoint if checkpoint and Path(checkpoint).is_file() else None
        lines = [summary["message"]] if summary.get("message") else []
        if summary.get("best_epoch"):
            lines.append(f"Best epoch {summary['best_epoch']} of {summary.get('epochs_completed', '?')} completed.")
        lines.append(f"Best checkpoint: {self._checkpoint}" if self._checkpoint
                     else "No checkpoint: no epoch completed.")
        if summary.get("val_origin"):
            lines.append(f"Validation images: {summary['val_origin']}.")
        if run_dir is not None:
            lines.append(f"Run folder: {run_dir}")
        self._details.setText("\n".join(lines))
        self.open_viewer_button.setVisible(self._checkpoint is not None)
        self.export_button.setVisible(self._checkpoint is not None)
        self._open_folder_button.setVisible(run_dir is not None)
        classes = summary.get("classes") or []
        for view, key in ((self.validation, "best_val"), (self.test, "test")):
            if summary.get(key):
                view.show_metrics(summary[key], classes)
                view.show()

    def checkpoint(self) -> str | None:
        return self._checkpoint

    def export_to(self, path: str, format: str) -> dict:
        """Export the best checkpoint (engine: export_checkpoint); raises IKDError with a one-line reason."""
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)  # a few seconds for a large network
        try:
            return export_checkpoint(self._checkpoint, format, path)
        finally:
            QApplication.restoreOverrideCursor()

    def _choose_export_file(self) -> None:
        filters = {"ONNX model (*.onnx)": "onnx", "TorchScript model (*.pt)": "torchscript"}
        suggested = str(Path(self._checkpoint).with_suffix(".onnx"))
        path, chosen = QFileDialog.getSaveFileName(self, "Export the best checkpoint", suggested, ";;".join(filters))
        if not path:
            return
        try:
            self.export_to(path, filters[chosen])
        except IKDError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))


def _demo() -> None:  # pragma: no cover - a manual preview with fake data
    import sys

    from PySide6.QtWidgets import QApplication, QScrollArea

    from ...engine.metrics import classification_metrics

    app = QApplication(sys.argv)
    summary = RunSummary()
    if len(sys.argv) > 1:
        summary.show_run(sys.argv[1])
    else:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, 200)
        scores = np.clip(labels * 0.6 + rng.random(200) * 0.5, 0, 1)
        metrics = classification_metrics(labels, np.stack([1 - scores, scores], 1), ["NORMAL", "PNEUMONIA"])
        summary.show_summary({"status": "completed", "message": "trained 15 epochs", "best_epoch": 12,
                              "epochs_completed": 15, "classes": ["NORMAL", "PNEUMONIA"], "best_val": metrics,
                              "test": {**metrics, "labels": labels.tolist(), "scores": scores.tolist()}}, None)
    scroll = QScrollArea()
    scroll.setWidget(summary)
    scroll.setWidgetResizable(True)
    scroll.resize(800, 900)
    scroll.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
