"""A path entry: a line edit, a Browse button, and drag and drop of a file or folder from the file manager."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


def dropped_path(event: QDragEnterEvent | QDropEvent, want_folder: bool) -> str | None:
    """The first local file (or folder) the user is dragging, if there is one of that kind."""
    for url in event.mimeData().urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir() if want_folder else path.is_file():
                return str(path)
    return None


class PathField(QWidget):
    """Emits `path_chosen` when the user picks, drops, or types a path and presses Enter or leaves the field."""

    path_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, folder: bool = False, dialog_title: str = "Choose",
                 file_filter: str = "", placeholder: str = ""):
        super().__init__(parent)
        self._folder = folder
        self._dialog_title = dialog_title
        self._file_filter = file_filter
        self._last_emitted: str | None = None
        self.line_edit = QLineEdit(self)
        self.line_edit.setPlaceholderText(placeholder)
        self.line_edit.setClearButtonEnabled(True)
        self.line_edit.setAcceptDrops(False)  # drops go to this widget, which takes paths rather than URLs as text
        self.line_edit.editingFinished.connect(self._typed)
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self.browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line_edit, 1)
        layout.addWidget(self.browse_button)
        self.setAcceptDrops(True)

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt naming
        super().setToolTip(text)
        self.line_edit.setToolTip(text)
        self.browse_button.setToolTip(f"{text}\n(or drop a {'folder' if self._folder else 'file'} here)")

    def path(self) -> str:
        return self.line_edit.text().strip()

    def set_path(self, path: str, notify: bool = True) -> None:
        """Show `path`; with `notify`, report it (`path_chosen`) even if it is the same as before, so that
        choosing a folder again re-reads it."""
        self.line_edit.setText(path)
        self._last_emitted = path
        if notify:
            self.path_chosen.emit(path)

    def _typed(self) -> None:
        # editingFinished also fires when focus merely leaves the field: report only an actual change.
        path = self.line_edit.text().strip()
        if path != self._last_emitted:
            self.set_path(path)

    def browse(self) -> None:
        start = self.path() or str(Path.home())
        if self._folder:
            chosen = QFileDialog.getExistingDirectory(self, self._dialog_title, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self._dialog_title, start, self._file_filter)
        if chosen:
            self.set_path(chosen)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt naming
        if dropped_path(event, self._folder):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt naming
        path = dropped_path(event, self._folder)
        if path:
            self.set_path(path)
            event.acceptProposedAction()
