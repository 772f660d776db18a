"""Setup panel: the dataset, the networks, the swap-in schedule and the hyper-parameters of a run.

The panel edits a `TrainConfig` (`config()` / `set_config()`); fields without a control keep the values of the
last config set. Inputs are checked as they are chosen (dataset scanned, checkpoints read, teacher/student
pairing checked) and problems are shown next to the control, in one line.

Run on its own: `python -m ikd_gui.gui.widgets.setup_panel`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QSpinBox,
                               QVBoxLayout, QWidget)

from ...engine.data import LABEL_SCHEMES, DatasetScan, resolve_splits, scan_dataset
from ...engine.demo import demo_teacher_path
from ...engine.errors import IKDError
from ...engine.hybrid import check_architectures
from ...engine.models import architecture_names, load_checkpoint
from ...engine.training import OPTIMIZERS, TrainConfig, available_devices
from ...resources import demo_dataset
from .dataset_summary import DatasetSummary
from .path_field import PathField, dropped_path
from .schedule_editor import SCHEDULE_FIELDS, ScheduleEditor
from .theme import InlineMessage

MODES = {
    "teacher": ("Teacher", "Train a network on its own, to serve as a teacher"),
    "student": ("Student baseline", "Train the student on its own, for comparison"),
    "ikd": ("IKD (swap-in)", "Train the student inside a hybrid network whose blocks are randomly swapped for the "
                             "teacher's, following the schedule"),
    "kd": ("Classic KD", "Hinton distillation: the student also matches the teacher's softened outputs"),
}
CHECKPOINT_FILTER = "PyTorch checkpoints (*.pt *.pth *.ckpt);;All files (*)"
TEACHER_MODES = ("ikd", "kd")


class SetupPanel(QWidget):
    """Emits `changed` whenever any setting changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._base = TrainConfig()
        self._scan: DatasetScan | None = None
        self._teacher_arch: str | None = None
        self._teacher_description = ""
        self._teacher_read_error = ""
        self._init_arch: str | None = None
        self._filling = False  # set_config in progress: one `changed` at the end, not one per field

        # Data
        self.dataset_field = PathField(self, folder=True, dialog_title="Choose a dataset folder",
                                       placeholder="a chest_xray folder, or one folder per class")
        self.dataset_field.setToolTip("The dataset: train/val/test folders of class folders (Kermany layout), "
                                      "or one folder per class")
        self.dataset_field.path_chosen.connect(self.set_dataset)
        self.labels_box = QComboBox(self)
        self.labels_box.addItems(LABEL_SCHEMES)
        self.labels_box.setToolTip("binary: one class per folder; three-class: NORMAL / BACTERIA / VIRUS from the "
                                "file names of a NORMAL/PNEUMONIA dataset")
        self.dataset_error = InlineMessage(self)
        self.dataset_summary = DatasetSummary(self)

        # Networks
        self.mode_box = QComboBox(self)
        for value, (label, tip) in MODES.items():
            self.mode_box.addItem(label, value)
            self.mode_box.setItemData(self.mode_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.mode_box.setToolTip("What to train")
        self.arch_box = QComboBox(self)
        self.arch_box.addItems(architecture_names())
        self.arch_box.setToolTip("The architecture of the network being trained (the student, or the teacher in "
                              "teacher mode)")
        self.teacher_field = PathField(self, dialog_title="Choose a teacher checkpoint", file_filter=CHECKPOINT_FILTER,
                                       placeholder="a checkpoint trained in teacher mode")
        self.teacher_field.setToolTip("The trained teacher: a checkpoint file (.pt) of a ResNet")
        self.teacher_field.path_chosen.connect(self.set_teacher)
        self.teacher_error = InlineMessage(self)
        self._teacher_info = QLabel(self)
        self._teacher_info.setWordWrap(True)
        self._teacher_info.setToolTip("What the teacher checkpoint holds")
        self.init_field = PathField(self, dialog_title="Choose starting weights", file_filter=CHECKPOINT_FILTER,
                                    placeholder="optional")
        self.init_field.setToolTip("Optional: start from these weights instead of a random initialisation")
        self.init_field.path_chosen.connect(self.set_init_checkpoint)
        self.init_error = InlineMessage(self)

        # Schedule
        self.schedule_editor = ScheduleEditor(self)
        self.schedule_editor.changed.connect(self._edited)

        # Hyper-parameters
        self.epochs_box = QSpinBox(self, minimum=1, maximum=10000)
        self.epochs_box.setToolTip("Passes over the training images")
        self.batch_size_box = QSpinBox(self, minimum=1, maximum=4096)
        self.batch_size_box.setToolTip("Images per training step")
        self.lr_box = QDoubleSpinBox(self, decimals=6, minimum=0.000001, maximum=10.0, singleStep=0.0001)
        self.lr_box.setToolTip("Peak learning rate (after warm-up; cosine decay by default)")
        self.image_size_box = QSpinBox(self, minimum=32, maximum=1024, singleStep=32, suffix=" px")
        self.image_size_box.setToolTip("Images are resized to this square size (64 px is quick, 224 px is standard)")
        self.optimizer_box = QComboBox(self)
        self.optimizer_box.addItems(OPTIMIZERS)
        self.optimizer_box.setToolTip("AdamW, or SGD with Nesterov momentum")
        self.seed_box = QSpinBox(self, minimum=0, maximum=2**31 - 1)
        self.seed_box.setToolTip("Seed of the validation split, initialisation, augmentation and routing draws")
        self._devices = available_devices()
        self.device_box = QComboBox(self)
        self.device_box.addItem("Automatic", "auto")
        for device, name in self._devices:
            self.device_box.addItem(name, device)
        self.device_box.setToolTip("Where to train: the best available device, or a specific one")
        self.amp_box = QCheckBox("Mixed precision (AMP)", self)
        self.amp_box.setToolTip("Faster training in 16-bit floats on CUDA GPUs; not used on other devices")
        self.output_field = PathField(self, folder=True, dialog_title="Choose the output folder")
        self.output_field.setToolTip("Each run writes a time-stamped folder here: logs, checkpoints, summary")

        self._groups = [self._group("Data", [("Folder", self.dataset_field), ("Labels", self.labels_box),
                                             (None, self.dataset_error), (None, self.dataset_summary)])]
        self._network_group = self._group("Networks", [
            ("Mode", self.mode_box), ("Architecture", self.arch_box), ("Teacher", self.teacher_field),
            (None, self.teacher_error), (None, self._teacher_info), ("Start from", self.init_field),
            (None, self.init_error)])
        self._schedule_group = self._group("Swap-in schedule", [(None, self.schedule_editor)])
        self._groups += [self._network_group, self._schedule_group, self._group("Training", [
            ("Epochs", self.epochs_box), ("Batch size", self.batch_size_box), ("Learning rate", self.lr_box),
            ("Image size", self.image_size_box), ("Optimizer", self.optimizer_box), ("Seed", self.seed_box),
            ("Device", self.device_box), (None, self.amp_box), ("Output folder", self.output_field)])]
        layout = QVBoxLayout(self)
        for group in self._groups:
            layout.addWidget(group)
        layout.addStretch(1)
        self.setAcceptDrops(True)

        for signal in (self.epochs_box.valueChanged, self.batch_size_box.valueChanged, self.lr_box.valueChanged,
                       self.image_size_box.valueChanged, self.optimizer_box.currentIndexChanged,
                       self.seed_box.valueChanged, self.amp_box.toggled, self.output_field.path_chosen):
            signal.connect(self._edited)
        self.labels_box.currentIndexChanged.connect(self._labels_changed)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.arch_box.currentIndexChanged.connect(self._arch_changed)
        self.device_box.currentIndexChanged.connect(self._device_changed)
        self.set_config(self._base)

    def _group(self, title: str, rows: list[tuple[str | None, QWidget]]) -> QGroupBox:
        group = QGroupBox(title, self)
        form = QFormLayout(group)
        for label, widget in rows:
            if label is None:
                form.addRow(widget)
            else:
                form.addRow(label, widget)
        return group

    # -- the config ---------------------------------------------------------------------------------------

    def config(self) -> TrainConfig:
        data = self.dataset_field.path()
        mode = self.mode_box.currentData()
        values = dict(
            data=data, labels=self.labels_box.currentText(), mode=mode, arch=self.arch_box.currentText(),
            teacher=(self.teacher_field.path() or None) if mode in TEACHER_MODES else None,
            init_checkpoint=self.init_field.path() or None, epochs=self.epochs_box.value(),
            batch_size=self.batch_size_box.value(), lr=self.lr_box.value(), image_size=self.image_size_box.value(),
            optimizer=self.optimizer_box.currentText(), seed=self.seed_box.value(),
            device=self.device_box.currentData(), amp=self.amp_box.isChecked(),
            out=self.output_field.path() or self._base.out,
            # A run name set with the config (the demo's) describes that config's data only.
            name=self._base.name if data == self._base.data else "",
            **self.schedule_editor.values())
        return dataclasses.replace(self._base, **values)

    def set_config(self, config: TrainConfig) -> None:
        self._filling = True
        try:
            self._base = dataclasses.replace(config)
            self.dataset_field.set_path(config.data, notify=False)
            self.labels_box.setCurrentText(config.labels)
            self.mode_box.setCurrentIndex(max(self.mode_box.findData(config.mode), 0))
            self.arch_box.setCurrentText(config.arch)
            self.teacher_field.set_path(config.teacher or "", notify=False)
            self.init_field.set_path(config.init_checkpoint or "", notify=False)
            self.schedule_editor.set_values(**{name: getattr(config, name) for name in SCHEDULE_FIELDS})
            self.epochs_box.setValue(config.epochs)
            self.batch_size_box.setValue(config.batch_size)
            self.lr_box.setValue(config.lr)
            self.image_size_box.setValue(config.image_size)
            self.optimizer_box.setCurrentText(config.optimizer)
            self.seed_box.setValue(config.seed)
            self.device_box.setCurrentIndex(max(self.device_box.findData(config.device), 0))
            self.amp_box.setChecked(config.amp not in (False, "off"))  # the engine also takes "bf16"/"fp16"
            self.output_field.set_path(config.out, notify=False)
            self._scan_dataset()
            self._read_teacher()
            self._read_init_checkpoint()
            self._device_changed()
        finally:
            self._filling = False
        self._edited()

    def demo_teacher_pending(self) -> bool:
        """True for the demo dataset in a teacher-based mode without a teacher: the demo's is trained first."""
        return (self.mode_box.currentData() in TEACHER_MODES and not self.teacher_field.path()
                and self.dataset_field.path() != "" and Path(self.dataset_field.path()) == demo_dataset())

    def problem(self) -> str | None:
        """Why a run with these settings cannot start, in one line; None when it can."""
        if not self.dataset_field.path():
            return "Choose a dataset folder (Ctrl+O), or try the demo (Ctrl+D)."
        if self._scan is None:
            return self.dataset_error.text()
        mode = self.mode_box.currentData()
        if mode in TEACHER_MODES and self.teacher_error.text():
            return f"Teacher: {self.teacher_error.text()}"
        if mode in TEACHER_MODES and not self.teacher_field.path() and not self.demo_teacher_pending():
            return f"{MODES[mode][0]} needs a teacher checkpoint: train one in teacher mode, then choose it."
        if self.init_error.text():
            return f"Starting weights: {self.init_error.text()}"
        if mode == "ikd" and self.schedule_editor.problem():
            return f"Schedule: {self.schedule_editor.problem()}"
        config = self.config()
        if self.demo_teacher_pending():
            config.teacher = str(demo_teacher_path())  # where the demo's teacher will be when the run starts
        try:
            config.validate()
        except IKDError as exc:
            return str(exc)
        return None

    def set_read_only(self, read_only: bool) -> None:
        for group in self._groups:
            group.setEnabled(not read_only)
        self.setAcceptDrops(not read_only)

    def scan(self) -> DatasetScan | None:
        return self._scan

    # -- user actions -------------------------------------------------------------------------------------

    def set_dataset(self, path: str) -> None:
        """Use the dataset folder at `path` (what the folder picker and drag and drop call)."""
        self.dataset_field.set_path(path, notify=False)
        self._scan_dataset()
        self._edited()

    def set_teacher(self, path: str) -> None:
        """Use the teacher checkpoint at `path`; it is read and checked at once."""
        self.teacher_field.set_path(path, notify=False)
        self._read_teacher()
        self._edited()

    def set_init_checkpoint(self, path: str) -> None:
        self.init_field.set_path(path, notify=False)
        self._read_init_checkpoint()
        self._edited()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt naming
        if dropped_path(event, want_folder=True):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt naming
        path = dropped_path(event, want_folder=True)
        if path:
            self.set_dataset(path)
            event.acceptProposedAction()

    # -- checks -------------------------------------------------------------------------------------------

    def _scan_dataset(self) -> None:
        self._scan = None
        self.dataset_error.clear_message()
        path = self.dataset_field.path()
        if not path:
            self.dataset_summary.clear()
        else:
            try:
                self._scan = scan_dataset(path, self.labels_box.currentText())
                self.dataset_summary.show_scan(self._scan)
            except IKDError as exc:
                self.dataset_summary.clear()
                self.dataset_error.show_message(str(exc))

    def _read_teacher(self) -> None:
        self._teacher_arch, self._teacher_description, self._teacher_read_error = None, "", ""
        path = self.teacher_field.path()
        if path:
            try:
                checkpoint = load_checkpoint(path)
                self._teacher_arch = checkpoint.arch
                self._teacher_description = (f"{checkpoint.arch} · {', '.join(checkpoint.classes)} · trained at "
                                             f"{checkpoint.image_size} px")
            except IKDError as exc:
                self._teacher_read_error = str(exc)
        self._update_mode()

    def _check_pairing(self) -> None:
        """The teacher's message, and the swap positions of the pair for the schedule's fixed mask."""
        problem, positions = self._teacher_read_error, None
        student = self.arch_box.currentText()
        if self._teacher_arch and self.mode_box.currentData() == "ikd":
            try:
                positions = check_architectures(self._teacher_arch, student)
            except IKDError as exc:
                problem = f"a {self._teacher_arch} teacher cannot train a {student} student by swap-in: {exc}"
        self.teacher_error.show_message(problem)
        self.schedule_editor.set_positions(positions)

    def _read_init_checkpoint(self) -> None:
        self._init_arch = None
        self.init_error.clear_message()
        path = self.init_field.path()
        if path:
            try:
                self._init_arch = load_checkpoint(path).arch
            except IKDError as exc:
                self.init_error.show_message(str(exc))
        self._check_init_arch()

    def _check_init_arch(self) -> None:
        arch = self.arch_box.currentText()
        if self._init_arch and self._init_arch != arch:
            self.init_error.show_message(f"{Path(self.init_field.path()).name} holds {self._init_arch} weights; "
                                         f"the network to train is a {arch}")
        elif self._init_arch:
            self.init_error.clear_message()

    def _update_plan(self) -> None:
        steps_per_epoch = None
        if self._scan is not None:
            try:
                splits, _ = resolve_splits(self._scan, self._base.val_fraction, self.seed_box.value())
                steps_per_epoch = max(1, len(splits["train"]) // self.batch_size_box.value())
            except IKDError:
                pass  # too few images: the data message already says so
        self.schedule_editor.set_plan(self.epochs_box.value(), steps_per_epoch)

    def _update_mode(self) -> None:
        mode = self.mode_box.currentData()
        form = self._network_group.layout()
        for widget in (self.teacher_field, self.teacher_error):
            form.setRowVisible(widget, mode in TEACHER_MODES)
        form.labelForField(self.arch_box).setText("Architecture" if mode == "teacher" else "Student")
        self._schedule_group.setVisible(mode == "ikd")
        self._check_pairing()

    # -- slots --------------------------------------------------------------------------------------------

    def _labels_changed(self) -> None:
        self._scan_dataset()
        self._edited()

    def _mode_changed(self) -> None:
        self._update_mode()
        self._edited()

    def _arch_changed(self) -> None:
        self._check_pairing()
        self._check_init_arch()
        self._edited()

    def _device_changed(self) -> None:
        device = self.device_box.currentData()
        cuda = device.startswith("cuda") or (device == "auto" and any(d.startswith("cuda") for d, _ in self._devices))
        self.amp_box.setEnabled(cuda)
        self._edited()

    def _edited(self) -> None:
        if self._filling:
            return
        self._update_plan()
        self._show_teacher_info()
        self.changed.emit()

    def _show_teacher_info(self) -> None:
        info = self._teacher_description
        if self.demo_teacher_pending():
            info = ("The demo's teacher, trained by an earlier demo run, is used." if demo_teacher_path().exists()
                    else "The demo's teacher is trained when you press Train (a few epochs, once), then reused.")
        self._teacher_info.setText(info)
        visible = self.mode_box.currentData() in TEACHER_MODES and bool(info)
        self._network_group.layout().setRowVisible(self._teacher_info, visible)


def _demo() -> None:  # pragma: no cover - a manual preview
    import sys

    from PySide6.QtWidgets import QApplication, QScrollArea

    from ...engine.demo import demo_config

    app = QApplication(sys.argv)
    panel = SetupPanel()
    panel.set_config(demo_config("runs"))
    panel.changed.connect(lambda: print(panel.problem() or panel.config()))
    scroll = QScrollArea()
    scroll.setWidget(panel)
    scroll.setWidgetResizable(True)
    scroll.resize(480, 900)
    scroll.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
