"""Run history: the runs of an output folder and recently opened ones. Select one to see its curves, routing
and summary redrawn from its logs (followed live while another process still writes them); select several to
overlay their per-epoch curves.

Run on its own: `python -m ikd_gui.gui.widgets.run_history [RUNS_FOLDER]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSplitter, QStackedWidget, QVBoxLayout, QWidget)

from ...engine.errors import IKDError
from ...engine.runs import is_run_folder, list_runs, read_config, read_metrics, read_summary
from .path_field import PathField
from .run_view import RunView
from .theme import SERIES_COLOURS, InlineMessage, ThemedPlotArea

MAX_RECENT_RUNS = 20
PATH_ROLE = Qt.ItemDataRole.UserRole
# Per-epoch metrics overlaid when comparing runs: metrics.csv column -> plot title.
COMPARED_METRICS = {"val_loss": "Validation loss", "val_balanced_acc": "Validation balanced accuracy",
                    "train_loss": "Training loss"}


def describe_run(run_dir: Path) -> str:
    """One line about a run for the list: mode, networks, status and best validation score."""
    try:
        config = read_config(run_dir)
    except IKDError:
        return f"{run_dir.name}\n(config unreadable)"
    summary = read_summary(run_dir)
    parts = [config.get("mode", "?"), config.get("arch", "?"), summary.get("status", "no summary")]
    best = summary.get("best_val") or {}
    if best.get("balanced_accuracy") is not None:
        parts.append(f"val bal. acc {best['balanced_accuracy']:.3f}")
    return f"{run_dir.name}\n{' · '.join(parts)}"


class RunComparison(QWidget):
    """Per-epoch curves of several runs on shared axes, one colour per run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._area = ThemedPlotArea(self)
        self._plots = {}
        for column, (key, title) in enumerate(COMPARED_METRICS.items()):
            plot = self._area.addPlot(row=0, col=column, title=title)
            plot.setLabel("bottom", "epoch")
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
            self._plots[key] = plot
        self._area.apply_palette()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._area)

    def show_runs(self, run_dirs: Sequence[Path]) -> None:
        for plot in self._plots.values():
            plot.clear()
            plot.legend.clear()
        for index, run_dir in enumerate(run_dirs):
            rows = read_metrics(run_dir)
            colour = pg.mkColor(*SERIES_COLOURS[index % len(SERIES_COLOURS)])
            epochs = [row["epoch"] for row in rows]
            for key, plot in self._plots.items():
                values = [float("nan") if row.get(key) is None else row[key] for row in rows]
                plot.plot(epochs, values, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                          symbolBrush=colour, name=run_dir.name)
        self._area.apply_palette()

    def curve_count(self) -> int:
        return len(self._plots["val_loss"].listDataItems())


class RunHistory(QWidget):
    open_in_viewer_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._recent: list[str] = []
        self.folder_field = PathField(self, folder=True, dialog_title="Choose a runs folder")
        self.folder_field.setToolTip("The output folder whose runs are listed")
        self.folder_field.path_chosen.connect(self.set_folder)
        open_button = QPushButton("Open run…", self)
        open_button.setToolTip("Open a run folder from anywhere (Ctrl+Shift+O)")
        open_button.clicked.connect(self.choose_run)
        refresh_button = QPushButton("Refresh", self)
        refresh_button.setToolTip("List the folder's runs again")
        refresh_button.clicked.connect(self.refresh)
        self.run_list = QListWidget(self)
        self.run_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.run_list.setToolTip("Select one run to see it; select several (Ctrl or Shift) to compare them")
        self.run_list.itemSelectionChanged.connect(self._selection_changed)
        self.error = InlineMessage(self)

        self.run_view = RunView(self)
        self.run_view.open_in_viewer_requested.connect(self.open_in_viewer_requested)
        self.run_view.followed_run_ended.connect(self.refresh)  # its line in the list shows the final status
        self.comparison = RunComparison(self)
        placeholder = QLabel("Select a run to see its curves, routing and summary, or several to compare them.", self)
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setWordWrap(True)
        self._stack = QStackedWidget(self)
        for widget in (placeholder, self.run_view, self.comparison):
            self._stack.addWidget(widget)

        buttons = QHBoxLayout()
        buttons.addWidget(open_button)
        buttons.addWidget(refresh_button)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Runs folder", self))
        left_layout.addWidget(self.folder_field)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.error)
        left_layout.addWidget(self.run_list, 1)
        splitter = QSplitter(self)
        splitter.addWidget(left)
        splitter.addWidget(self._stack)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([300, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # -- listing ------------------------------------------------------------------------------------------

    def set_folder(self, folder: str) -> None:
        self.folder_field.set_path(folder, notify=False)
        self.refresh()

    def set_recent(self, paths: Sequence[str]) -> None:
        self._recent = list(paths)[:MAX_RECENT_RUNS]
        self.refresh()

    def recent(self) -> list[str]:
        return list(self._recent)

    def refresh(self) -> None:
        """List the folder's runs and the recent ones (newest first), keeping the selection."""
        selected = set(map(str, self.selected_runs()))
        runs = list_runs(self.folder_field.path()) if self.folder_field.path() else []
        runs += [Path(p) for p in self._recent if is_run_folder(p) and Path(p) not in runs]
        runs.sort(key=lambda p: p.name, reverse=True)
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run_dir in runs:
            item = QListWidgetItem(describe_run(run_dir))
            item.setData(PATH_ROLE, str(run_dir))
            item.setToolTip(str(run_dir))
            self.run_list.addItem(item)
            item.setSelected(str(run_dir) in selected)
        self.run_list.blockSignals(False)
        if set(map(str, self.selected_runs())) != selected:  # a selected run is gone
            self._selection_changed()

    def selected_runs(self) -> list[Path]:
        return [Path(item.data(PATH_ROLE)) for item in self.run_list.selectedItems()]

    def select_runs(self, paths: Sequence[str | Path]) -> None:
        wanted = {str(Path(p)) for p in paths}
        self.run_list.blockSignals(True)
        for row in range(self.run_list.count()):
            item = self.run_list.item(row)
            item.setSelected(item.data(PATH_ROLE) in wanted)
        self.run_list.blockSignals(False)
        self._selection_changed()

    # -- opening ------------------------------------------------------------------------------------------

    def choose_run(self) -> None:
        start = self.folder_field.path() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a run folder", start)
        if folder:
            self.open_run(folder)

    def open_run(self, path: str | Path) -> bool:
        """Add a run folder to the recent runs and show it; False (and a message) when it is not a run."""
        path = Path(path)
        if not is_run_folder(path):
            self.error.show_message(f"{path} is not a run folder (it has no config.json).")
            return False
        self.error.clear_message()
        self.add_recent(path)
        self.select_runs([path])
        return True

    def add_recent(self, path: str | Path) -> None:
        path = str(path)
        self._recent = [path] + [p for p in self._recent if p != path][:MAX_RECENT_RUNS - 1]
        self.refresh()

    def _selection_changed(self) -> None:
        runs = self.selected_runs()
        if len(runs) != 1:
            self.run_view.stop_following()
        if len(runs) == 1:
            try:
                self.run_view.load_run(runs[0])
                self.error.clear_message()
                self._stack.setCurrentWidget(self.run_view)
            except IKDError as exc:
                self.error.show_message(str(exc))
                self._stack.setCurrentIndex(0)
        elif len(runs) > 1:
            self.comparison.show_runs(runs)
            self._stack.setCurrentWidget(self.comparison)
        else:
            self._stack.setCurrentIndex(0)


def _demo() -> None:  # pragma: no cover - a manual preview
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    history = RunHistory()
    history.set_folder(sys.argv[1] if len(sys.argv) > 1 else "runs")
    history.resize(1200, 800)
    history.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
