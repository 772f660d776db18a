"""Classify a whole folder: a sortable table of predictions with CSV export and, when the folder has class
sub-folders, accuracy, per-class metrics and a confusion matrix whose cells list their images.

Predictions come from `Predictor.predict_files`, the code path of `ikd predict`, in a worker thread.

Run on its own: python -m ikd_gui.gui.widgets.folder_view [FOLDER] --checkpoint CKPT
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import (QAbstractTableModel, QCoreApplication, QModelIndex, QObject, QSortFilterProxyModel,
                            Qt, QThread, Signal, Slot)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QSplitter, QTableView, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from ...engine.errors import IKDError
from ...engine.inference import FolderRow, FolderSummary, Predictor, run_folder_classification
from ...engine.training import CancelToken

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Threading


class WorkerThread:
    """One worker QObject running in its own QThread, stopped as GUIDE.md asks: quit, then wait."""

    def __init__(self, worker: QObject, name: str):
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.finished.connect(worker.deleteLater)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()


class CheckpointCache:
    """The Predictor of the last checkpoint used, reloaded only when the path or the file changes."""

    def __init__(self):
        self._key: tuple[str, int] | None = None
        self._predictor: Predictor | None = None

    def get(self, path: str) -> Predictor:
        try:
            key = (str(Path(path).resolve()), os.stat(path).st_mtime_ns)
        except OSError as exc:
            raise IKDError(f"checkpoint not found: {path}") from exc
        if key != self._key:
            self._predictor, self._key = Predictor(path), key
        return self._predictor


def describe_failure(exc: Exception) -> str:
    """One line for the user; unexpected errors also go to the log with their traceback."""
    if isinstance(exc, IKDError):
        return str(exc)
    log.exception("unexpected error in a worker thread")
    return f"unexpected error: {type(exc).__name__}: {exc}"


class FolderWorker(QObject):
    """Lives in the folder thread; every signal carries the request number it answers."""

    sig_classes = Signal(int, object)  # request, tuple of class names
    sig_rows = Signal(int, object, int, int)  # request, list[FolderRow], done, total
    sig_finished = Signal(int, object)  # request, FolderSummary
    sig_failed = Signal(int, str)

    def __init__(self):
        super().__init__()
        self._checkpoints = CheckpointCache()

    @Slot(int, str, str, object)
    def classify(self, request: int, folder: str, checkpoint: str, cancel: CancelToken) -> None:
        try:
            predictor = self._checkpoints.get(checkpoint)
            self.sig_classes.emit(request, tuple(predictor.classes))
            # Rows are built fresh for each chunk and never touched again here, so they can be handed over.
            summary = run_folder_classification(
                predictor, folder, cancel, lambda rows, done, total: self.sig_rows.emit(request, rows, done, total))
            self.sig_finished.emit(request, summary)
        except Exception as exc:  # noqa: BLE001 - an exception escaping a worker slot would be lost
            self.sig_failed.emit(request, describe_failure(exc))


class FolderController(QObject):
    """GUI-thread owner of the folder thread; re-emits the current job's signals in the GUI thread."""

    classes_known = Signal(object)
    rows_classified = Signal(object, int, int)
    finished = Signal(object)
    failed = Signal(str)
    _classify_requested = Signal(int, str, str, object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._request = 0
        self._cancel = CancelToken()
        self._worker = FolderWorker()
        self._worker.sig_classes.connect(self._on_classes)
        self._worker.sig_rows.connect(self._on_rows)
        self._worker.sig_finished.connect(self._on_finished)
        self._worker.sig_failed.connect(self._on_failed)
        self._classify_requested.connect(self._worker.classify)
        self._thread = WorkerThread(self._worker, "ikd-folder-classifier")
        QCoreApplication.instance().aboutToQuit.connect(self.stop)

    def start(self, folder: str, checkpoint: str) -> None:
        self._cancel.cancel()
        self._request += 1
        self._cancel = CancelToken()
        self._classify_requested.emit(self._request, folder, checkpoint, self._cancel)

    def cancel(self) -> None:
        self._cancel.cancel()

    @Slot()
    def stop(self) -> None:
        self._cancel.cancel()
        self._thread.stop()

    @Slot(int, object)
    def _on_classes(self, request: int, classes: tuple[str, ...]) -> None:
        if request == self._request:
            self.classes_known.emit(classes)

    @Slot(int, object, int, int)
    def _on_rows(self, request: int, rows: list[FolderRow], done: int, total: int) -> None:
        if request == self._request:
            self.rows_classified.emit(rows, done, total)

    @Slot(int, object)
    def _on_finished(self, request: int, summary: FolderSummary) -> None:
        if request == self._request:
            self.finished.emit(summary)

    @Slot(int, str)
    def _on_failed(self, request: int, message: str) -> None:
        if request == self._request:
            self.failed.emit(message)


# ---------------------------------------------------------------------------------------------------------
# Table

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
CELL_ROLE = Qt.ItemDataRole.UserRole + 2  # "true:predicted" of a row, what the confusion-cell filter matches
FIXED_COLUMNS = ("File", "Folder class", "Prediction", "Confidence")
CONFIDENCE_COLUMN = FIXED_COLUMNS.index("Confidence")
MISCLASSIFIED = QColor(190, 30, 30)


class FolderTableModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.classes: tuple[str, ...] = ()
        self.rows: list[FolderRow] = []

    def reset(self, classes: tuple[str, ...]) -> None:
        self.beginResetModel()
        self.classes, self.rows = tuple(classes), []
        self.endResetModel()

    def append(self, rows: list[FolderRow]) -> None:
        if rows:
            self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(rows) - 1)
            self.rows.extend(rows)
            self.endInsertRows()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(FIXED_COLUMNS) + len(self.classes)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            if section < len(FIXED_COLUMNS):
                return FIXED_COLUMNS[section]
            return f"P({self.classes[section - len(FIXED_COLUMNS)]})"
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, column)
        if role == SORT_ROLE:
            return self._sort_key(row, column)
        if role == CELL_ROLE:
            return f"{row.true_class}:{row.predicted}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.error or row.path
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= CONFIDENCE_COLUMN:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if (role == Qt.ItemDataRole.ForegroundRole and column == 2 and row.true_class is not None
                and row.predicted is not None and row.predicted != row.true_class):
            return QBrush(MISCLASSIFIED)
        return None

    def _text(self, row: FolderRow, column: int) -> str:
        if column == 0:
            return Path(row.path).name
        if column == 1:
            return "" if row.true_class is None else self.classes[row.true_class]
        if row.probabilities is None:
            return "unreadable" if column == 2 else ""
        if column == 2:
            return self.classes[row.predicted]
        if column == CONFIDENCE_COLUMN:
            return f"{row.confidence:.3f}"
        return f"{row.probabilities[column - len(FIXED_COLUMNS)]:.3f}"

    def _sort_key(self, row: FolderRow, column: int):
        if column >= CONFIDENCE_COLUMN:
            if row.probabilities is None:
                return -1.0  # unreadable files sort below every probability
            if column == CONFIDENCE_COLUMN:
                return row.confidence
            return float(row.probabilities[column - len(FIXED_COLUMNS)])
        return self._text(row, column).lower()


def _matrix_colour(fraction: float, correct: bool) -> QColor:
    """White to green on the diagonal and white to red off it, by the cell's share of its row."""
    base = QColor(46, 160, 67) if correct else QColor(207, 34, 46)
    t = 0.15 + 0.75 * fraction if fraction > 0 else 0.0
    return QColor(*(round(255 + (channel - 255) * t) for channel in (base.red(), base.green(), base.blue())))


def _fit_height(table: QTableWidget) -> None:
    """As tall as its rows, so that small tables do not leave an empty grid below them."""
    table.resizeRowsToContents()
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(table.horizontalHeader().height() + rows + 2 * table.frameWidth())


# ---------------------------------------------------------------------------------------------------------
# Widget


class FolderClassifierWidget(QWidget):
    """Classify a folder with a checkpoint; clicking a row emits `image_activated(path)`."""

    image_activated = Signal(str)
    classification_finished = Signal(object)  # FolderSummary
    classification_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.checkpoint: str | None = None
        self.summary: FolderSummary | None = None
        self._controller = FolderController(self)
        self._controller.classes_known.connect(self._on_classes)
        self._controller.rows_classified.connect(self._on_rows)
        self._controller.finished.connect(self._on_finished)
        self._controller.failed.connect(self._on_failed)
        self._build()

    # -- public API -------------------------------------------------------------------------------------

    @property
    def rows(self) -> list[FolderRow]:
        return list(self.model.rows)

    @property
    def confusion_matrix(self) -> list[list[int]] | None:
        return self.summary.metrics["confusion_matrix"] if self.summary and self.summary.metrics else None

    def set_checkpoint(self, path: str) -> None:
        self.checkpoint = str(path)

    def classify_folder(self, path: str) -> None:
        if not self.checkpoint:
            self._on_failed("choose a checkpoint before classifying a folder")
            return
        self.summary = None
        self.folder_label.setText(str(path))
        self.status_label.setText("Reading the checkpoint and listing images…")
        self.progress.setRange(0, 0)  # busy until the first chunk tells the total
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.export_button.setEnabled(False)
        self.show_all()
        self.model.reset(())
        self.metrics_panel.hide()
        self._controller.start(str(path), self.checkpoint)

    def cancel(self) -> None:
        self._controller.cancel()

    def shutdown(self) -> None:
        """Stop the worker thread; call before the application quits (the main window's closeEvent)."""
        self._controller.stop()

    def export_csv(self, path: str) -> None:
        """All rows in table order: file, folder class, prediction, confidence, one probability per class."""
        classes = self.model.classes
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "folder_class", "prediction", "confidence", *(f"p_{c}" for c in classes), "error"])
            for row in self.model.rows:
                probabilities = [] if row.probabilities is None else [f"{p:.6f}" for p in row.probabilities]
                writer.writerow([row.path, "" if row.true_class is None else classes[row.true_class],
                                 "" if row.predicted is None else classes[row.predicted],
                                 "" if row.confidence is None else f"{row.confidence:.6f}",
                                 *(probabilities or [""] * len(classes)), row.error or ""])

    def show_confusion_cell(self, true_class: int, predicted: int) -> None:
        """List the images of one confusion-matrix cell, most confident first."""
        self.proxy.setFilterRegularExpression(f"^{true_class}:{predicted}$")
        self.table.sortByColumn(CONFIDENCE_COLUMN, Qt.SortOrder.DescendingOrder)
        classes = self.model.classes
        self.filter_label.setText(f"Folder class {classes[true_class]}, predicted {classes[predicted]}: "
                                  f"{self.proxy.rowCount()} images, most confident first")
        self.filter_bar.show()

    def show_all(self) -> None:
        self.proxy.setFilterRegularExpression("")
        self.filter_bar.hide()

    def visible_paths(self) -> list[str]:
        """Paths of the rows the table shows, in its order."""
        return [self.model.rows[self.proxy.mapToSource(self.proxy.index(r, 0)).row()].path
                for r in range(self.proxy.rowCount())]

    # -- construction -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.open_button = QPushButton("Classify folder…")
        self.open_button.setToolTip("Classify every image below a folder; class sub-folders give metrics")
        self.open_button.clicked.connect(self._choose_folder)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._choose_export_file)
        self.folder_label = QLabel("No folder classified yet.")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        for button in (self.open_button, self.cancel_button, self.export_button):
            top.addWidget(button)
        top.addWidget(self.folder_label, 1)

        self.progress = QProgressBar()
        self.progress.hide()
        self.status_label = QLabel()

        self.model = FolderTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterRole(CELL_ROLE)
        self.proxy.setFilterKeyColumn(0)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setToolTip("Click a row to open the image in the viewer")
        self.table.clicked.connect(self._activate)

        self.filter_label = QLabel()
        show_all = QPushButton("Show all")
        show_all.clicked.connect(self.show_all)
        self.filter_bar = QWidget()
        filter_layout = QHBoxLayout(self.filter_bar)
        filter_layout.setContentsMargins(0, 0, 0, 0)
        filter_layout.addWidget(self.filter_label, 1)
        filter_layout.addWidget(show_all)
        self.filter_bar.hide()

        table_side = QWidget()
        table_layout = QVBoxLayout(table_side)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.filter_bar)
        table_layout.addWidget(self.table)

        self.metrics_label = QLabel()
        self.metrics_label.setWordWrap(True)
        self.per_class_table = QTableWidget()
        self.per_class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix_table = QTableWidget()
        self.matrix_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix_table.setToolTip("Click a cell to list its images, most confident first")
        self.matrix_table.cellClicked.connect(self.show_confusion_cell)
        for table in (self.per_class_table, self.matrix_table):
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.metrics_panel = QWidget()
        metrics_layout = QVBoxLayout(self.metrics_panel)
        metrics_layout.setContentsMargins(0, 0, 0, 0)
        metrics_layout.addWidget(self.metrics_label)
        metrics_layout.addWidget(QLabel("Per class"))
        metrics_layout.addWidget(self.per_class_table)
        metrics_layout.addWidget(QLabel("Confusion matrix: rows are folder classes, columns predictions"))
        metrics_layout.addWidget(self.matrix_table)
        metrics_layout.addStretch(1)
        self.metrics_panel.hide()

        splitter = QSplitter()
        splitter.addWidget(table_side)
        splitter.addWidget(self.metrics_panel)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(splitter, 1)

    # -- slots ------------------------------------------------------------------------------------------

    @Slot()
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Classify a folder")
        if folder:
            self.classify_folder(folder)

    @Slot()
    def _choose_export_file(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export predictions", "predictions.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    @Slot(QModelIndex)
    def _activate(self, index: QModelIndex) -> None:
        self.image_activated.emit(self.model.rows[self.proxy.mapToSource(index).row()].path)

    @Slot(object)
    def _on_classes(self, classes: tuple[str, ...]) -> None:
        self.model.reset(classes)

    @Slot(object, int, int)
    def _on_rows(self, rows: list[FolderRow], done: int, total: int) -> None:
        self.model.append(rows)
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.status_label.setText(f"{done} of {total} images classified")

    @Slot(object)
    def _on_finished(self, summary: FolderSummary) -> None:
        self.summary = summary
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self.export_button.setEnabled(bool(self.model.rows))
        notes = [f"{summary.count} images in {summary.seconds:.1f} s"]
        if summary.unreadable:
            notes.append(f"{summary.unreadable} unreadable")
        if summary.cancelled:
            notes.append("cancelled: the rest were not classified")
        if summary.count == 0:
            notes = ["no image files in this folder"]
        self.status_label.setText("; ".join(notes))
        self.table.resizeColumnsToContents()
        self._show_metrics(summary)
        self.classification_finished.emit(summary)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self.status_label.setText(f"<span style='color:#b00020'>Cannot classify: {message}</span>")
        self.classification_failed.emit(message)

    def _show_metrics(self, summary: FolderSummary) -> None:
        metrics = summary.metrics
        if metrics is None:
            self.metrics_panel.hide()
            return
        classes = summary.classes
        text = (f"<b>Accuracy {metrics['accuracy']:.3f}</b>, balanced accuracy {metrics['balanced_accuracy']:.3f}"
                + (f", ROC AUC {metrics['auc']:.3f}" if metrics["auc"] is not None else "")
                + f" on {metrics['count']} labelled images")
        if summary.unlabelled:
            text += f" ({summary.unlabelled} in folders that name no class are left out)"
        self.metrics_label.setText(text)

        self.per_class_table.setRowCount(len(classes))
        self.per_class_table.setColumnCount(4)
        self.per_class_table.setHorizontalHeaderLabels(["precision", "recall", "F1", "support"])
        self.per_class_table.setVerticalHeaderLabels(list(classes))
        for r, name in enumerate(classes):
            values = metrics["per_class"][name]
            for c, key in enumerate(("precision", "recall", "f1", "support")):
                text = str(values[key]) if key == "support" else f"{values[key]:.3f}"
                self.per_class_table.setItem(r, c, QTableWidgetItem(text))

        matrix = np.asarray(metrics["confusion_matrix"])
        self.matrix_table.setRowCount(len(classes))
        self.matrix_table.setColumnCount(len(classes))
        self.matrix_table.setHorizontalHeaderLabels(list(classes))
        self.matrix_table.setVerticalHeaderLabels(list(classes))
        row_totals = matrix.sum(axis=1)
        for r in range(len(classes)):
            for c in range(len(classes)):
                item = QTableWidgetItem(str(matrix[r, c]))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setBackground(_matrix_colour(matrix[r, c] / row_totals[r] if row_totals[r] else 0.0, r == c))
                item.setForeground(QBrush(QColor(20, 20, 20)))
                self.matrix_table.setItem(r, c, item)
        for table in (self.per_class_table, self.matrix_table):
            _fit_height(table)
        self.metrics_panel.show()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify a folder of images with a checkpoint.")
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    widget = FolderClassifierWidget()
    widget.set_checkpoint(args.checkpoint)
    widget.resize(1100, 700)
    widget.show()
    if args.folder:
        widget.classify_folder(args.folder)
    code = app.exec()
    widget.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
