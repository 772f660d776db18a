"""Experiments view: set up a grid of IKD runs (schedules x p0 x seeds, plus the baselines), run it, watch it
run by run, and open its report.

The form edits an `ExperimentSpec`; settings without a control (learning rate, labels, validation fraction,
device...) keep the values of the last spec set. The experiment itself runs in the `ExperimentController`'s
thread; this widget only shows its events. Running the same settings again continues a stopped experiment:
finished runs are skipped, interrupted ones resume.

Run on its own: `python -m ikd_gui.gui.widgets.experiments_view`.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QSizePolicy,
                               QSplitter, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ...engine.errors import IKDError
from ...engine.experiments import BASELINE_MODES, ExperimentResult, ExperimentSpec, Manifest, RunPlan
from ...engine.models import architecture_names
from ...engine.runs import read_summary
from ...engine.schedules import SCHEDULES
from ...engine.training import RunFinished
from ..app import APP_NAME
from ..experiment_controller import ExperimentController
from .path_field import PathField
from .setup_panel import CHECKPOINT_FILTER
from .summary import STATUS_TEXT
from .theme import InlineMessage

EXPERIMENT_SCHEDULES = [name for name in SCHEDULES if name != "fixed"]  # a fixed mask has no p0 to vary
# The engine's run statuses as the table shows them.
ROW_STATUS = {"completed": "done", "early_stopped": "done", "failed": "failed", "cancelled": "stopped"}
COLUMNS = ("Run", "Status", "Best val accuracy", "Best val balanced accuracy")
NAME_COLUMN, STATUS_COLUMN, ACCURACY_COLUMN, BALANCED_COLUMN = range(len(COLUMNS))
SETTINGS_KEY = "experiments/spec"


def default_experiments_folder() -> str:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return str(Path(documents or Path.home()) / APP_NAME / "experiments")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def describe_plan(spec: ExperimentSpec) -> str:
    """How many runs the experiment makes, and why: "11 runs: 1 seed × (9 IKD configurations + ...)"."""
    baselines = " + ".join(RunPlan(mode, 0).configuration for mode in BASELINE_MODES)
    configurations = _count(len(spec.schedules) * len(spec.p0), "IKD configuration")
    return f"{_count(len(spec.plan()), 'run')}: {_count(spec.seeds, 'seed')} × ({configurations} + {baselines})"


class ExperimentsView(QWidget):
    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.controller = ExperimentController(self)
        self._base = ExperimentSpec(out=default_experiments_folder())
        self._rows: dict[str, int] = {}  # run name -> table row
        self._directory: Path | None = None  # the experiment folder of the last start
        self._report: Path | None = None  # its report.html, once written

        # The grid
        self.dataset_field = PathField(self, folder=True, dialog_title="Choose a dataset folder",
                                       placeholder="a chest_xray folder, or one folder per class")
        self.dataset_field.setToolTip("The dataset every run trains and validates on, with the same split")
        self.teacher_field = PathField(self, dialog_title="Choose a teacher checkpoint", file_filter=CHECKPOINT_FILTER,
                                       placeholder="a checkpoint trained in teacher mode")
        self.teacher_field.setToolTip("The teacher of the IKD and classic KD runs")
        self.arch_box = QComboBox(self)
        self.arch_box.addItems(architecture_names())
        self.arch_box.setToolTip("The student's architecture, the same in every run")
        self.schedule_boxes = {name: QCheckBox(name, self) for name in EXPERIMENT_SCHEDULES}
        for box in self.schedule_boxes.values():
            box.setToolTip("Train IKD runs with this swap-in schedule")
        self.p0_edit = QLineEdit(self)
        self.p0_edit.setPlaceholderText("e.g. 0.1, 0.5, 0.9")
        self.p0_edit.setToolTip("Starting probabilities of keeping a student block, comma-separated, from 0 to 1")
        self.seeds_box = QSpinBox(self, minimum=1, maximum=100)
        self.seeds_box.setToolTip("Seeds per configuration (0, 1, ...): statistics are taken over them")
        self.epochs_box = QSpinBox(self, minimum=1, maximum=10000)
        self.epochs_box.setToolTip("Epochs of every run: all runs get the same budget")
        self.image_size_box = QSpinBox(self, minimum=32, maximum=1024, singleStep=32, suffix=" px")
        self.image_size_box.setToolTip("Images are resized to this square size")
        self.batch_size_box = QSpinBox(self, minimum=1, maximum=4096)
        self.batch_size_box.setToolTip("Images per training step")
        self.output_field = PathField(self, folder=True, dialog_title="Choose the output folder")
        self.output_field.setToolTip("The experiment's folder is made here: its runs, experiment.json and report")
        self.name_edit = QLineEdit(self)
        self.name_edit.setToolTip("The experiment folder's name; the same name and settings continue an experiment")
        self.plan_label = QLabel(self)
        self.plan_label.setWordWrap(True)
        self.plan_label.setToolTip("The runs the experiment will make: every IKD configuration and the baselines, "
                                   "once per seed")
        self.problem_message = InlineMessage(self)
        self.run_button = QPushButton("Run", self)
        self.run_button.setToolTip("Run every run not yet finished, then write the report; Stop keeps finished runs")
        self.run_button.clicked.connect(self._run_clicked)

        # Progress
        self.overall_progress = QProgressBar(self)
        self.overall_progress.setToolTip("Runs finished, and the run in progress")
        self.step_progress = QProgressBar(self)
        self.step_progress.setToolTip("Steps of the run in progress")
        for bar in (self.overall_progress, self.step_progress):
            self._show_progress(bar, 0, 1, "Idle")
        self.log_line = QLabel(self)
        self.log_line.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long lines clip
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.report_button = QPushButton("Open report", self)
        self.report_button.setToolTip("Open report.html (results table, statistics, figures) in the web browser")
        self.report_button.clicked.connect(self.open_report)
        self.folder_button = QPushButton("Open folder", self)
        self.folder_button.setToolTip("Open the experiment folder in the file manager")
        self.folder_button.clicked.connect(self.open_folder)

        self._build_layout()
        self._connect_controller()
        for signal in (self.dataset_field.path_chosen, self.teacher_field.path_chosen, self.output_field.path_chosen,
                       self.arch_box.currentIndexChanged, self.p0_edit.textChanged, self.seeds_box.valueChanged,
                       self.epochs_box.valueChanged, self.image_size_box.valueChanged,
                       self.batch_size_box.valueChanged, self.name_edit.textChanged,
                       *(box.toggled for box in self.schedule_boxes.values())):
            signal.connect(self._update_form)
        self.set_spec(self._restored_spec())
        self._running_changed(False)

    def _build_layout(self) -> None:
        grid_group = QGroupBox("Grid", self)
        schedules = QWidget(grid_group)
        schedules_layout = QHBoxLayout(schedules)
        schedules_layout.setContentsMargins(0, 0, 0, 0)
        for box in self.schedule_boxes.values():
            schedules_layout.addWidget(box)
        schedules_layout.addStretch(1)
        grid_form = QFormLayout(grid_group)
        for label, field in (("Dataset", self.dataset_field), ("Teacher", self.teacher_field),
                             ("Student", self.arch_box), ("Schedules", schedules),
                             ("p0 values", self.p0_edit), ("Seeds", self.seeds_box)):
            grid_form.addRow(label, field)
        training_group = QGroupBox("Every run", self)
        training_form = QFormLayout(training_group)
        for label, field in (("Epochs", self.epochs_box), ("Image size", self.image_size_box),
                             ("Batch size", self.batch_size_box), ("Output folder", self.output_field),
                             ("Name", self.name_edit)):
            training_form.addRow(label, field)
        self._form_groups = (grid_group, training_group)
        form = QWidget(self)
        form_layout = QVBoxLayout(form)
        for widget in (grid_group, training_group, self.plan_label, self.problem_message, self.run_button):
            form_layout.addWidget(widget)
        form_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(form)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(380)

        buttons = QHBoxLayout()
        buttons.addWidget(self.report_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        monitor = QWidget(self)
        monitor_layout = QVBoxLayout(monitor)
        monitor_layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.overall_progress, self.step_progress, self.log_line):
            monitor_layout.addWidget(widget)
        monitor_layout.addWidget(self.table, 1)
        monitor_layout.addLayout(buttons)
        splitter = QSplitter(self)
        splitter.addWidget(scroll)
        splitter.addWidget(monitor)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([420, 980])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _connect_controller(self) -> None:
        controller = self.controller
        controller.running_changed.connect(self._running_changed)
        controller.preparation_progressed.connect(self._preparation_progressed)
        controller.run_began.connect(self._run_began)
        controller.run_started.connect(self._run_started)
        controller.batches_ended.connect(self._batches_ended)
        controller.epoch_ended.connect(self._epoch_ended)
        controller.message_logged.connect(self._message_logged)
        controller.run_skipped.connect(self._run_skipped)
        controller.run_ended.connect(self._run_ended)
        controller.report_written.connect(self._report_written)
        controller.experiment_failed.connect(self.problem_message.show_message)
        controller.experiment_crashed.connect(self._experiment_crashed)
        controller.experiment_finished.connect(self._experiment_finished)

    # -- the spec -----------------------------------------------------------------------------------------

    def spec(self) -> ExperimentSpec:
        """The form's experiment; raises IKDError when the p0 text is not a list of numbers."""
        values = dict(
            data=self.dataset_field.path(), teacher=self.teacher_field.path(), student_arch=self.arch_box.currentText(),
            schedules=[name for name, box in self.schedule_boxes.items() if box.isChecked()],
            p0=self.p0_edit.text(), seeds=self.seeds_box.value(), epochs=self.epochs_box.value(),
            image_size=self.image_size_box.value(), batch_size=self.batch_size_box.value(),
            out=self.output_field.path() or self._base.out, name=self.name_edit.text().strip() or self._base.name)
        return ExperimentSpec.from_dict({**self._base.to_dict(), **values})

    def set_spec(self, spec: ExperimentSpec) -> None:
        self._base = spec
        self.dataset_field.set_path(spec.data, notify=False)
        self.teacher_field.set_path(spec.teacher, notify=False)
        self.arch_box.setCurrentText(spec.student_arch)
        for name, box in self.schedule_boxes.items():
            box.setChecked(name in spec.schedules)
        self.p0_edit.setText(", ".join(f"{p0:g}" for p0 in spec.p0))
        self.seeds_box.setValue(spec.seeds)
        self.epochs_box.setValue(spec.epochs)
        self.image_size_box.setValue(spec.image_size)
        self.batch_size_box.setValue(spec.batch_size)
        self.output_field.set_path(spec.out, notify=False)
        self.name_edit.setText(spec.name)
        self._update_form()

    def problem(self) -> str | None:
        """Why the experiment cannot start, in one line; None when it can. The dataset and the teacher are read
        when it starts (the teacher can be large), and problems with them are shown then."""
        try:
            spec = self.spec()
        except IKDError as exc:
            return str(exc)
        if not spec.data:
            return "Choose a dataset folder."
        if not spec.teacher:
            return "Choose a teacher checkpoint (train one in the Train tab, in teacher mode)."
        try:
            spec.validate()
        except IKDError as exc:
            return str(exc)
        return None

    def _update_form(self) -> None:
        try:
            self.plan_label.setText(describe_plan(self.spec()))
        except IKDError:
            self.plan_label.clear()  # the p0 text is not numbers: problem() says so
        problem = self.problem()
        self.problem_message.show_message(problem or "")
        self.run_button.setEnabled(problem is None)

    # -- running ------------------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self.controller.is_running

    def start(self) -> None:
        if self.is_running or self.problem() is not None:
            return
        spec = self.spec()
        if self.settings is not None:
            self.settings.setValue(SETTINGS_KEY, json.dumps(spec.to_dict()))
        self._directory, self._report = spec.directory, None
        self._rows.clear()
        self.table.setRowCount(0)
        for row, plan in enumerate(spec.plan()):
            self._rows[plan.name] = row
            self.table.insertRow(row)
            for column, text in ((NAME_COLUMN, plan.name), (STATUS_COLUMN, "pending"), (ACCURACY_COLUMN, ""),
                                 (BALANCED_COLUMN, "")):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self._show_progress(self.overall_progress, 0, len(self._rows), "Checking the dataset and the teacher…")
        self._show_progress(self.step_progress, 0, 1, "")
        self._log("")
        self.problem_message.clear_message()
        self.controller.start(spec)

    def shutdown(self) -> None:
        """Stop the experiment and wait for its thread (when the window closes)."""
        self.controller.shutdown()

    def row_statuses(self) -> dict[str, str]:
        """Each run's name and the status the table shows."""
        return {self.table.item(row, NAME_COLUMN).text(): self.table.item(row, STATUS_COLUMN).text()
                for row in range(self.table.rowCount())}

    def open_url(self, url: QUrl) -> None:
        """Open a file or folder with the desktop's application; tests replace this method to see the URL."""
        QDesktopServices.openUrl(url)

    def open_report(self) -> None:
        if self._report is not None:
            self.open_url(QUrl.fromLocalFile(str(self._report)))

    def open_folder(self) -> None:
        if self._directory is not None:
            self.open_url(QUrl.fromLocalFile(str(self._directory)))

    def _run_clicked(self) -> None:
        if self.is_running:
            self.controller.stop()
            self.run_button.setEnabled(False)  # until the run in progress has stopped
            self.run_button.setText("Stopping…")
        else:
            self.start()

    # -- controller events --------------------------------------------------------------------------------

    def _running_changed(self, running: bool) -> None:
        for group in self._form_groups:
            group.setEnabled(not running)
        self.run_button.setText("Stop" if running else "Run")
        # The form cannot change while running: an engine error shown at the end stays until the next edit.
        self.run_button.setEnabled(running or self.problem() is None)
        self.report_button.setEnabled(not running and self._report is not None)
        self.folder_button.setEnabled(not running and self._directory is not None and self._directory.is_dir())

    def _run_began(self, index: int, total: int, name: str, resuming: bool) -> None:
        self._set_row(name, "running")
        self._show_progress(self.overall_progress, index - 1, total, f"Run {index} of {total}: {name}")
        self._show_progress(self.step_progress, 0, 1, "Preparing…")
        self._log(f"{'Resuming' if resuming else 'Training'} {name}")

    def _preparation_progressed(self, done: int, total: int, what: str) -> None:
        self._show_progress(self.step_progress, done, total, f"Preparing: {what} {done}/{total}")

    def _run_started(self, event) -> None:
        self._show_progress(self.step_progress, event.start_step, event.total_steps,
                            f"Step {event.start_step}/{event.total_steps}")

    def _batches_ended(self, batches: list) -> None:
        last = batches[-1]
        self.step_progress.setValue(last.step + 1)
        self.step_progress.setFormat(f"Epoch {last.epoch} · step {last.step + 1}/{last.total_steps} · "
                                     f"{last.images_per_second:.0f} images/s")

    def _epoch_ended(self, event) -> None:
        self._log(f"Epoch {event.epoch}: val accuracy {event.val['accuracy']:.3f}, balanced "
                  f"{event.val['balanced_accuracy']:.3f}")

    def _message_logged(self, _level: str, text: str) -> None:
        self._log(text)

    def _run_skipped(self, index: int, total: int, name: str, status: str) -> None:
        self._set_row(name, "skipped", f"{STATUS_TEXT.get(status, status)} before; not trained again",
                      self._best_val_on_disk(name))
        self.overall_progress.setValue(index)

    def _run_ended(self, index: int, total: int, name: str, result: RunFinished) -> None:
        self._set_row(name, ROW_STATUS.get(result.status, result.status), result.message, result.best_val)
        self.overall_progress.setValue(index)

    def _report_written(self, _markdown: Path, html: Path) -> None:
        self._report = html

    def _experiment_finished(self, result: ExperimentResult) -> None:
        for name, status in self.row_statuses().items():
            if status == "running":  # stopped, or failed, before its training started
                self._set_row(name, "stopped" if result.status == "cancelled" else "failed")
        text = {"completed": "Finished: the report is written",
                "cancelled": "Stopped: Run continues the experiment (finished runs are kept)",
                "failed": "Failed"}.get(result.status, result.status)
        self.overall_progress.setFormat(text)
        self._show_progress(self.step_progress, 0, 1, "")
        if self._report is not None:
            self._log(f"Report: {self._report}")

    def _experiment_crashed(self, cause: str, _details: str) -> None:
        # The details go to the window's error dialog (see MainWindow); the line says what happened.
        self._log(f"Failed: {cause}")

    # -- helpers ------------------------------------------------------------------------------------------

    def _set_row(self, name: str, status: str, tip: str = "", best_val: dict | None = None) -> None:
        row = self._rows[name]
        self.table.item(row, STATUS_COLUMN).setText(status)
        self.table.item(row, STATUS_COLUMN).setToolTip(tip)
        if best_val:
            self.table.item(row, ACCURACY_COLUMN).setText(f"{best_val['accuracy']:.3f}")
            self.table.item(row, BALANCED_COLUMN).setText(f"{best_val['balanced_accuracy']:.3f}")

    def _best_val_on_disk(self, name: str) -> dict | None:
        """A skipped run's best validation metrics, from its folder (the engine reports only its status)."""
        manifest = Manifest.load(self._directory)
        entry = next(entry for entry in manifest.entries if entry.plan.name == name)
        return read_summary(manifest.run_folder(entry)).get("best_val")

    def _log(self, text: str) -> None:
        self.log_line.setText(text)
        self.log_line.setToolTip(text)  # the whole line, when the label is too narrow for it

    @staticmethod
    def _show_progress(bar: QProgressBar, value: int, maximum: int, text: str) -> None:
        bar.setRange(0, maximum)
        bar.setValue(value)  # a progress bar without a value shows no text
        bar.setFormat(text)

    def _restored_spec(self) -> ExperimentSpec:
        stored = self.settings.value(SETTINGS_KEY) if self.settings is not None else None
        if stored:
            try:
                return ExperimentSpec.from_dict(json.loads(stored))
            except (IKDError, ValueError):
                pass  # settings from another version: start from the defaults
        return self._base


def _demo() -> None:  # pragma: no cover - a manual preview
    import sys

    from PySide6.QtWidgets import QApplication

    from ...resources import demo_dataset

    app = QApplication(sys.argv)
    view = ExperimentsView()
    view.set_spec(ExperimentSpec(data=str(demo_dataset()), schedules=["uniform", "linear"], p0=[0.2, 0.8], seeds=2,
                                 epochs=1, image_size=32, out=default_experiments_folder(), name="demo-grid"))
    view.controller.experiment_crashed.connect(lambda cause, details: print(cause, details, sep="\n"))
    view.resize(1300, 800)
    view.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    _demo()
