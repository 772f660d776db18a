"""The X-ray viewer: open an image, window it, and see what a checkpoint predicts and where it looked.

Decoding, prediction and Grad-CAM run in a worker thread through the engine (`imaging.read_display_image`,
`inference.Predictor`, `gradcam.grad_cam`), so the viewer gives exactly the probabilities of `ikd predict`.
A second tab classifies whole folders (`folder_view`).

Mouse: left-drag pans, the wheel zooms, right-drag sets window (horizontal) and level (vertical).

Run on its own: python -m ikd_gui.gui.widgets.viewer [IMAGE] [--checkpoint CKPT]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QObject, QPointF, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QSlider, QTabWidget,
                               QToolBar, QVBoxLayout, QWidget)

from ...engine.data import IMAGE_EXTENSIONS
from ...engine.gradcam import DEFAULT_LAYER, grad_cam
from ...engine.imaging import DisplayImage, read_display_image
from ...engine.inference import image_files
from ...resources import demo_dataset
from .folder_view import CheckpointCache, FolderClassifierWidget, WorkerThread, describe_failure

RESEARCH_NOTE = ("Research tool, not a medical device: not for diagnosis or treatment decisions. "
                 "Images are processed on this computer only.")
NAVIGATION_HINT = "Drag: pan   wheel: zoom   right-drag: window/level"
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
IMAGE_FILTER = f"Images ({' '.join('*' + e for e in sorted(IMAGE_EXTENSIONS))});;All files (*)"

# Right-drag window/level: a drag across 400 screen pixels moves the window by the image's whole value range.
WINDOW_DRAG_PIXELS = 400
INVERTED_GREY = np.arange(255, -1, -1, dtype=np.uint8)

# (name, shortcut, window of an image). Beyond the file's own window, presets are brightness percentiles,
# which suit any detector's units and either grey scale.
WINDOW_PRESETS: tuple[tuple[str, str, Callable[[DisplayImage], tuple[float, float]]], ...] = (
    ("File window", "Ctrl+1", lambda image: image.window),
    ("Full range", "Ctrl+2", lambda image: image.value_range),
    ("Auto contrast (1-99 %)", "Ctrl+3", lambda image: image.percentile_window(1.0, 99.0)),
    ("Lungs (darkest 60 %)", "Ctrl+4", lambda image: image.percentile_window(0.5, 60.0)),
    ("Bone (brightest 60 %)", "Ctrl+5", lambda image: image.percentile_window(40.0, 99.5)),
)


def cam_lookup_table() -> np.ndarray:
    """Turbo colours with alpha rising with the map, so weak evidence leaves the radiograph visible."""
    lut = pg.colormap.get("turbo").getLookupTable(0.0, 1.0, 256, alpha=True)
    lut[:, 3] = np.arange(256)
    return lut


# ---------------------------------------------------------------------------------------------------------
# Worker thread


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    arch: str
    role: str | None
    classes: tuple[str, ...]
    image_size: int

    def describe(self) -> str:
        role = f" {self.role}" if self.role else ""
        return (f"{Path(self.path).name}: {self.arch}{role}, {self.image_size} px grey input, "
                f"classes {', '.join(self.classes)}")


@dataclass(frozen=True)
class Classification:
    """What a checkpoint said about the open image, and a Grad-CAM map for one class."""

    path: str
    checkpoint: str
    classes: tuple[str, ...]
    probabilities: np.ndarray  # float32 [K], from Predictor.probabilities as in `ikd predict`
    cam: np.ndarray  # float32 [H, W] in [0, 1], the image's shape
    cam_class: int
    inference_seconds: float
    cam_seconds: float

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.classes[self.predicted]


class InferenceWorker(QObject):
    """Lives in the viewer's thread and owns the Predictor; results name the image request they answer."""

    sig_checkpoint_loaded = Signal(object)  # CheckpointInfo
    sig_checkpoint_failed = Signal(str)
    sig_image_loaded = Signal(int, object, float)  # request, DisplayImage, decode seconds
    sig_classified = Signal(int, object)  # request, Classification
    sig_failed = Signal(int, str)  # request, message

    def __init__(self):
        super().__init__()
        self._checkpoints = CheckpointCache()
        self._predictor = None
        self._request = 0
        self._path = ""
        self._grey: np.ndarray | None = None
        self._probabilities: np.ndarray | None = None

    @Slot(str)
    def load_checkpoint(self, path: str) -> None:
        try:
            self._predictor = self._checkpoints.get(path)
            meta = self._predictor.checkpoint.meta
            self.sig_checkpoint_loaded.emit(CheckpointInfo(path, self._predictor.checkpoint.arch, meta.get("role"),
                                                           tuple(self._predictor.classes),
                                                           self._predictor.image_size))
            if self._grey is not None:
                self._probabilities = None
                self._classify(target_class=None)
        except Exception as exc:  # noqa: BLE001 - an exception escaping a worker slot would be lost
            self._predictor = None
            self.sig_checkpoint_failed.emit(describe_failure(exc))

    @Slot(int, str)
    def open_image(self, request: int, path: str) -> None:
        self._request, self._path, self._grey, self._probabilities = request, path, None, None
        try:
            started = time.perf_counter()
            image = read_display_image(path)
            # The DisplayImage goes to the GUI thread; what stays here for Grad-CAM requests is a copy.
            self._grey = image.grey.copy()
            self.sig_image_loaded.emit(request, image, time.perf_counter() - started)
            if self._predictor is not None:
                self._classify(target_class=None)
        except Exception as exc:  # noqa: BLE001 - decoding errors and the unexpected alike become a message
            self.sig_failed.emit(request, describe_failure(exc))

    @Slot(int, int)
    def explain(self, request: int, target_class: int) -> None:
        """Grad-CAM of another class for the open image."""
        if request != self._request or self._grey is None or self._predictor is None:
            return
        try:
            self._classify(target_class)
        except Exception as exc:  # noqa: BLE001
            self.sig_failed.emit(request, describe_failure(exc))

    def _classify(self, target_class: int | None) -> None:
        predictor = self._predictor
        started = time.perf_counter()
        if self._probabilities is None:
            self._probabilities = predictor.probabilities(predictor.prepare(self._grey).unsqueeze(0))[0]
        inferred = time.perf_counter()
        if target_class is None:
            target_class = int(np.argmax(self._probabilities))
        cam = grad_cam(predictor, self._grey, target_class, DEFAULT_LAYER)
        self.sig_classified.emit(self._request, Classification(
            self._path, str(predictor.checkpoint.path), tuple(predictor.classes), self._probabilities.copy(), cam,
            target_class, inferred - started, time.perf_counter() - inferred))


class ViewerController(QObject):
    """GUI-thread owner of the viewer's thread; re-emits the current image's results in the GUI thread."""

    checkpoint_loaded = Signal(object)
    checkpoint_failed = Signal(str)
    image_loaded = Signal(object, float)
    classified = Signal(object)
    failed = Signal(str)
    _checkpoint_requested = Signal(str)
    _image_requested = Signal(int, str)
    _explain_requested = Signal(int, int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._request = 0
        self._worker = InferenceWorker()
        self._worker.sig_checkpoint_loaded.connect(self._on_checkpoint_loaded)
        self._worker.sig_checkpoint_failed.connect(self._on_checkpoint_failed)
        self._worker.sig_image_loaded.connect(self._on_image_loaded)
        self._worker.sig_classified.connect(self._on_classified)
        self._worker.sig_failed.connect(self._on_failed)
        self._checkpoint_requested.connect(self._worker.load_checkpoint)
        self._image_requested.connect(self._worker.open_image)
        self._explain_requested.connect(self._worker.explain)
        self._thread = WorkerThread(self._worker, "ikd-viewer-inference")
        QCoreApplication.instance().aboutToQuit.connect(self.stop)

    def set_checkpoint(self, path: str) -> None:
        self._checkpoint_requested.emit(path)

    def open_image(self, path: str) -> None:
        self._request += 1
        self._image_requested.emit(self._request, path)

    def explain(self, target_class: int) -> None:
        self._explain_requested.emit(self._request, target_class)

    @Slot()
    def stop(self) -> None:
        self._thread.stop()

    @Slot(object)
    def _on_checkpoint_loaded(self, info: CheckpointInfo) -> None:
        self.checkpoint_loaded.emit(info)

    @Slot(str)
    def _on_checkpoint_failed(self, message: str) -> None:
        self.checkpoint_failed.emit(message)

    @Slot(int, object, float)
    def _on_image_loaded(self, request: int, image: DisplayImage, seconds: float) -> None:
        if request == self._request:
            self.image_loaded.emit(image, seconds)

    @Slot(int, object)
    def _on_classified(self, request: int, classification: Classification) -> None:
        if request == self._request:
            self.classified.emit(classification)

    @Slot(int, str)
    def _on_failed(self, request: int, message: str) -> None:
        if request == self._request:
            self.failed.emit(message)


# ---------------------------------------------------------------------------------------------------------
# Image view


class WindowLevelViewBox(pg.ViewBox):
    """A ViewBox whose right-drag reports window/level moves instead of zooming (left-drag still pans)."""

    sig_window_dragged = Signal(float, float)  # screen pixels moved right, down

    def __init__(self):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() != Qt.MouseButton.RightButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        delta = ev.screenPos() - ev.lastScreenPos()
        self.sig_window_dragged.emit(delta.x(), delta.y())


class ViewerWidget(QWidget):
    """Image viewer with prediction, Grad-CAM overlay and a folder-classification tab."""

    image_opened = Signal(str)  # path, once the image is on screen
    image_failed = Signal(str)  # message shown instead of an image
    prediction_ready = Signal(object)  # Classification, once shown
    checkpoint_changed = Signal(str)
    checkpoint_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: DisplayImage | None = None
        self.classification: Classification | None = None
        self.checkpoint: CheckpointInfo | None = None
        self.window: tuple[float, float] = (0.0, 255.0)
        self.inverted = False  # the user's inversion, on top of MONOCHROME1's
        self._decode_seconds = 0.0
        self._controller = ViewerController(self)
        self._controller.checkpoint_loaded.connect(self._on_checkpoint_loaded)
        self._controller.checkpoint_failed.connect(self._on_checkpoint_failed)
        self._controller.image_loaded.connect(self._on_image_loaded)
        self._controller.classified.connect(self._on_classified)
        self._controller.failed.connect(self._on_image_failed)
        self._build()
        self.setAcceptDrops(True)

    # -- public API -------------------------------------------------------------------------------------

    def open_image(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.image_page)
        self.message.hide()
        self.info_label.setText(f"Opening {Path(path).name}…")
        self._controller.open_image(str(path))

    def set_checkpoint(self, path: str) -> None:
        self.checkpoint_label.setText(f"Loading {Path(path).name}…")
        self.folder_view.set_checkpoint(str(path))
        self._controller.set_checkpoint(str(path))

    def classify_folder(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.folder_view)
        self.folder_view.classify_folder(str(path))

    def shutdown(self) -> None:
        """Stop the worker threads; the main window calls this from its closeEvent."""
        self._controller.stop()
        self.folder_view.shutdown()

    def fit(self) -> None:
        if self.image is not None:
            self.view_box.setRange(xRange=(0, self.image.width), yRange=(0, self.image.height), padding=0.0)

    def actual_size(self) -> None:
        """One image pixel per device pixel, around the current centre."""
        centre = self.view_box.viewRect().center()
        ratio = self.graphics.devicePixelRatioF()
        half_width, half_height = self.view_box.width() * ratio / 2, self.view_box.height() * ratio / 2
        self.view_box.setRange(xRange=(centre.x() - half_width, centre.x() + half_width),
                               yRange=(centre.y() - half_height, centre.y() + half_height), padding=0.0)

    def zoom_by(self, factor: float) -> None:
        """factor > 1 zooms in."""
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor))

    def set_window(self, low: float, high: float) -> None:
        self.window = (float(low), float(max(high, low + 1e-6)))
        self.image_item.setLevels(self.window)
        self._show_window_text()

    def apply_preset(self, preset: int) -> None:
        if self.image is not None:
            self.preset_combo.setCurrentIndex(preset)
            self.set_window(*WINDOW_PRESETS[preset][2](self.image))

    def set_inverted(self, inverted: bool) -> None:
        self.inverted = bool(inverted)
        self.invert_action.setChecked(self.inverted)
        self.image_item.setLookupTable(INVERTED_GREY if self.display_inverted else None)

    @property
    def display_inverted(self) -> bool:
        """Whether low values are drawn bright: MONOCHROME1, flipped again by the user's inversion."""
        return (self.image is not None and self.image.inverted) != self.inverted

    def reset(self) -> None:
        """The file's window, no inversion, the whole image in view."""
        self.set_inverted(False)
        self.apply_preset(0)
        self.fit()

    def set_cam_visible(self, visible: bool) -> None:
        self.cam_check.setChecked(visible)

    def set_cam_opacity(self, opacity: float) -> None:
        self.opacity_slider.setValue(round(100 * min(max(opacity, 0.0), 1.0)))

    def set_cam_class(self, class_index: int) -> None:
        """Show Grad-CAM for another class (computed in the worker; `prediction_ready` follows)."""
        self.cam_class_combo.setCurrentIndex(class_index)
        self._controller.explain(class_index)

    # -- dialogs and drops ------------------------------------------------------------------------------

    @Slot()
    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an X-ray", "", IMAGE_FILTER)
        if path:
            self.open_image(path)

    @Slot()
    def choose_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.set_checkpoint(path)

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        if Path(paths[0]).is_dir():
            self.classify_folder(paths[0])
        else:
            self.open_image(paths[0])

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    # -- construction -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.image_page = QWidget()
        self.folder_view = FolderClassifierWidget()
        self.folder_view.image_activated.connect(self.open_image)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.image_page, "Image")
        self.tabs.addTab(self.folder_view, "Folder")

        self.pixel_label = QLabel("Open an image: Ctrl+O, or drop a file or a folder here")
        self.zoom_label = QLabel()
        self.window_label = QLabel()
        self.view_box = WindowLevelViewBox()
        self.view_box.sig_window_dragged.connect(self._drag_window)
        self.view_box.sigRangeChanged.connect(self._show_zoom_text)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.cam_item = pg.ImageItem(axisOrder="row-major", levels=(0.0, 1.0), lut=cam_lookup_table())
        self.cam_item.setZValue(1)
        self.cam_item.hide()
        self.view_box.addItem(self.image_item)
        self.view_box.addItem(self.cam_item)
        self.graphics = pg.GraphicsView()
        self.graphics.setCentralItem(self.view_box)
        self.graphics.setBackground("k")
        # Drops go to this widget, which knows files from folders.
        self.graphics.setAcceptDrops(False)
        self.graphics.scene().sigMouseMoved.connect(self._show_pixel)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("background:#fde7e9; color:#8a0010; padding:6px; border:1px solid #e0a0a8;")
        self.message.hide()
        status = QHBoxLayout()
        status.addWidget(self.pixel_label, 1)
        status.addWidget(self.window_label)
        status.addWidget(self.zoom_label)

        image_side = QVBoxLayout()
        image_side.setContentsMargins(0, 0, 0, 0)
        image_side.addWidget(self._build_toolbar())
        image_side.addWidget(self.message)
        image_side.addWidget(self.graphics, 1)
        image_side.addLayout(status)

        page = QHBoxLayout(self.image_page)
        page.addLayout(image_side, 1)
        page.addWidget(self._build_side_panel())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)

    def _action(self, text: str, shortcut: str | QKeySequence.StandardKey, slot, checkable: bool = False) -> QAction:
        action = QAction(text, self.image_page)
        action.setShortcut(QKeySequence(shortcut))
        # Shortcuts act while the image tab has focus, so they never fight other tabs of the main window.
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{text} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})")
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        self.image_page.addAction(action)
        return action

    def _build_toolbar(self) -> QToolBar:
        toolbar = QToolBar()
        toolbar.addAction(self._action("Open…", QKeySequence.StandardKey.Open, self.open_image_dialog))
        toolbar.addAction(self._action("Checkpoint…", "Ctrl+K", self.choose_checkpoint_dialog))
        toolbar.addSeparator()
        toolbar.addAction(self._action("Fit", "F", self.fit))
        toolbar.addAction(self._action("1:1", "1", self.actual_size))
        toolbar.addAction(self._action("Zoom in", "+", lambda: self.zoom_by(1.25)))
        toolbar.addAction(self._action("Zoom out", "-", lambda: self.zoom_by(0.8)))
        self._action("Zoom in", "=", lambda: self.zoom_by(1.25))  # "+" without Shift on most keyboards
        toolbar.addSeparator()
        self.invert_action = self._action("Invert", "I", self.set_inverted, checkable=True)
        toolbar.addAction(self.invert_action)
        toolbar.addAction(self._action("Reset", "R", self.reset))
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Window presets (Ctrl+1 to Ctrl+5); right-drag on the image for window/level")
        for index, (name, shortcut, _) in enumerate(WINDOW_PRESETS):
            self.preset_combo.addItem(f"{name}  ({shortcut})")
            self._action(name, shortcut, lambda checked=False, preset=index: self.apply_preset(preset))
        self.preset_combo.activated.connect(self.apply_preset)
        toolbar.addWidget(self.preset_combo)
        toolbar.addSeparator()
        self.cam_action = self._action("Grad-CAM", "G", self.set_cam_visible, checkable=True)
        toolbar.addAction(self.cam_action)
        self._action("More overlay", "]", lambda: self.set_cam_opacity(self.opacity_slider.value() / 100 + 0.1))
        self._action("Less overlay", "[", lambda: self.set_cam_opacity(self.opacity_slider.value() / 100 - 0.1))
        return toolbar

    def _build_side_panel(self) -> QWidget:
        self.checkpoint_label = QLabel("No checkpoint: choose one to classify images.")
        self.checkpoint_label.setWordWrap(True)
        choose = QPushButton("Choose checkpoint…")
        choose.clicked.connect(self.choose_checkpoint_dialog)
        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.checkpoint_label)
        model_layout.addWidget(choose)

        self.prediction_label = QLabel("–")
        font = self.prediction_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.prediction_label.setFont(font)
        self.bars_layout = QFormLayout()
        self.probability_bars: list[QProgressBar] = []
        self.timing_label = QLabel()
        result_box = QGroupBox("Prediction")
        result_layout = QVBoxLayout(result_box)
        result_layout.addWidget(self.prediction_label)
        result_layout.addLayout(self.bars_layout)
        result_layout.addWidget(self.timing_label)

        self.cam_check = QCheckBox("Show overlay (G)")
        self.cam_check.toggled.connect(self._on_cam_toggled)
        self.cam_class_combo = QComboBox()
        self.cam_class_combo.setToolTip("The class whose evidence the overlay shows")
        self.cam_class_combo.activated.connect(self.set_cam_class)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Overlay opacity ([ and ])")
        self.opacity_slider.valueChanged.connect(lambda value: self.cam_item.setOpacity(value / 100))
        self.opacity_slider.setValue(55)
        cam_box = QGroupBox(f"Grad-CAM ({DEFAULT_LAYER})")
        cam_layout = QFormLayout(cam_box)
        cam_layout.addRow(self.cam_check)
        cam_layout.addRow("Class", self.cam_class_combo)
        cam_layout.addRow("Opacity", self.opacity_slider)
        cam_layout.addRow(QLabel("Red: regions that raised the class score most."))

        note = QLabel(RESEARCH_NOTE)
        note.setWordWrap(True)
        note.setStyleSheet("background:#fff4ce; color:#5c4400; padding:6px; border:1px solid #e5c76b;")
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)

        panel = QWidget()
        panel.setFixedWidth(300)
        panel.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(model_box)
        layout.addWidget(result_box)
        layout.addWidget(cam_box)
        layout.addWidget(self.info_label)
        layout.addStretch(1)
        layout.addWidget(note)
        return panel

    # -- results ----------------------------------------------------------------------------------------

    @Slot(object)
    def _on_checkpoint_loaded(self, info: CheckpointInfo) -> None:
        self.checkpoint = info
        self.checkpoint_label.setText(info.describe())
        self.checkpoint_label.setToolTip(info.path)
        self.cam_class_combo.clear()
        self.cam_class_combo.addItems(list(info.classes))
        self._make_bars(info.classes)
        self.checkpoint_changed.emit(info.path)

    @Slot(str)
    def _on_checkpoint_failed(self, message: str) -> None:
        self.checkpoint = None
        self.checkpoint_label.setText(f"No checkpoint: {message}")
        self._show_message(f"Cannot use the checkpoint: {message}")
        self.checkpoint_failed.emit(message)

    @Slot(object, float)
    def _on_image_loaded(self, image: DisplayImage, seconds: float) -> None:
        self.image = image
        self.classification = None
        self._decode_seconds = seconds
        self.message.hide()
        self.image_item.setImage(image.values, autoLevels=False, levels=image.window)
        self.cam_item.hide()
        self.set_inverted(False)
        self.apply_preset(0)
        self.fit()
        self.prediction_label.setText("Classifying…" if self.checkpoint else "–")
        self.info_label.setText(f"{Path(image.path).name}\n{image.description}\ndecoded in {1000 * seconds:.0f} ms")
        self.info_label.setToolTip(image.path)
        self.pixel_label.setText(NAVIGATION_HINT)
        self.image_opened.emit(image.path)

    @Slot(object)
    def _on_classified(self, classification: Classification) -> None:
        self.classification = classification
        probabilities = classification.probabilities
        self.prediction_label.setText(f"{classification.label}  {probabilities[classification.predicted]:.1%}")
        for bar, name, value in zip(self.probability_bars, classification.classes, probabilities):
            bar.setValue(round(1000 * float(value)))
            bar.setFormat(f"{value:.1%}")
        self.cam_item.setImage(classification.cam, autoLevels=False, levels=(0.0, 1.0))
        self.cam_item.setVisible(self.cam_check.isChecked())
        self.cam_class_combo.setCurrentIndex(classification.cam_class)
        self.timing_label.setText(f"inference {1000 * classification.inference_seconds:.0f} ms\n"
                                  f"Grad-CAM {1000 * classification.cam_seconds:.0f} ms")
        self.prediction_ready.emit(classification)

    @Slot(str)
    def _on_image_failed(self, message: str) -> None:
        self.image = None
        self.classification = None
        self.image_item.clear()
        self.cam_item.clear()
        self.cam_item.hide()
        self.prediction_label.setText("–")
        for bar in self.probability_bars:
            bar.setValue(0)
            bar.setFormat("")
        self.info_label.clear()
        self._show_message(f"Cannot open the image: {message}")
        self.image_failed.emit(message)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _make_bars(self, classes: tuple[str, ...]) -> None:
        while self.bars_layout.rowCount():
            self.bars_layout.removeRow(0)
        self.probability_bars = []
        for name in classes:
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("")
            bar.setValue(0)
            self.bars_layout.addRow(name, bar)
            self.probability_bars.append(bar)

    # -- interaction ------------------------------------------------------------------------------------

    @Slot(bool)
    def _on_cam_toggled(self, visible: bool) -> None:
        self.cam_action.setChecked(visible)
        self.cam_item.setVisible(visible and self.classification is not None)

    @Slot(float, float)
    def _drag_window(self, right: float, down: float) -> None:
        if self.image is None:
            return
        low, high = self.window
        lowest, highest = self.image.value_range
        step = max(highest - lowest, 1.0) / WINDOW_DRAG_PIXELS
        # Dragging down darkens the picture whichever way its grey scale runs.
        centre = (low + high) / 2 + (-down if self.display_inverted else down) * step
        width = max(high - low + right * step, step)
        self.set_window(centre - width / 2, centre + width / 2)

    def _show_window_text(self) -> None:
        low, high = self.window
        self.window_label.setText(f"window {(low + high) / 2:.6g} / {high - low:.6g}")

    @Slot()
    def _show_zoom_text(self) -> None:
        pixel_width = self.view_box.viewPixelSize()[0]
        if pixel_width > 0:
            self.zoom_label.setText(f"zoom {100 / (pixel_width * self.graphics.devicePixelRatioF()):.0f} %")

    @Slot(QPointF)
    def _show_pixel(self, scene_pos: QPointF) -> None:
        if self.image is None:
            return
        point = self.view_box.mapSceneToView(scene_pos)
        x, y = math.floor(point.x()), math.floor(point.y())
        if not (0 <= x < self.image.width and 0 <= y < self.image.height):
            self.pixel_label.setText(NAVIGATION_HINT)
            return
        text = f"x {x}  y {y}  value {self.image.values[y, x]:.6g}"
        if self.classification is not None and self.cam_item.isVisible():
            text += f"  Grad-CAM {self.classification.cam[y, x]:.2f}"
        self.pixel_label.setText(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The IKD Studio X-ray viewer on its own.")
    parser.add_argument("image", nargs="?", help="image to open (default: a bundled demo radiograph)")
    parser.add_argument("--checkpoint", help="checkpoint to classify with")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    viewer = ViewerWidget()
    viewer.setWindowTitle("IKD Studio viewer")
    viewer.resize(1280, 820)
    if args.checkpoint:
        viewer.set_checkpoint(args.checkpoint)
    viewer.open_image(args.image or str(image_files([demo_dataset()])[0]))
    viewer.show()
    code = app.exec()
    viewer.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
