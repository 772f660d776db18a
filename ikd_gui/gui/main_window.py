"""The IKD Studio main window: Train (setup, live views, log), History, Viewer and Experiments tabs.

The window wires widgets to the training controller; it holds no training logic. Settings (folders,
hyper-parameters, window geometry, recent runs) persist with QSettings.
"""

from __future__ import annotations

import html
import importlib.util
import json
import traceback
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPlainTextEdit,
                               QProgressBar, QPushButton, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from ..engine.demo import demo_config, demo_teacher_path
from ..engine.errors import one_line
from .app import APP_NAME
from ..engine.training import RunFinished, TrainConfig
from .controller import TrainingController
from .widgets.experiments_view import ExperimentsView
from .widgets.run_history import RunHistory
from .widgets.run_view import RunView
from .widgets.setup_panel import SetupPanel
from .widgets.summary import STATUS_TEXT
from .widgets.theme import InlineMessage, error_colour, warning_colour

# The viewer is developed alongside this window; until it is part of the package the tab says so.
if importlib.util.find_spec(f"{__package__}.widgets.viewer") is not None:
    from .widgets.viewer import ViewerWidget
else:  # pragma: no cover - depends on the checkout
    ViewerWidget = None

LOG_LINES = 5000
PRIVACY_NOTE = "Everything runs on this computer: images, checkpoints and logs never leave it."


def default_output_folder() -> str:
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return str(Path(documents or Path.home()) / APP_NAME / "runs")


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.settings = settings if settings is not None else QSettings()
        self.controller = TrainingController(self)
        self.error_dialog: QMessageBox | None = None
        self._epochs_planned = 0

        self.setup_panel = SetupPanel()
        self.run_view = RunView()
        self.history = RunHistory()
        self.viewer = ViewerWidget() if ViewerWidget is not None else None
        self.experiments = ExperimentsView(self.settings)
        self._build_train_page()
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.train_page, "Train")
        self.tabs.addTab(self.history, "History")
        viewer_page = self.viewer if self.viewer is not None else QLabel("The image viewer is not part of this build.")
        self.tabs.addTab(viewer_page, "Viewer")
        self.tabs.addTab(self.experiments, "Experiments")
        self.tabs.setTabToolTip(0, "Set up a run, start it and watch it (Ctrl+1)")
        self.tabs.setTabToolTip(1, "Earlier runs: curves, routing and summaries, and comparisons (Ctrl+2)")
        self.tabs.setTabToolTip(2, "Open an X-ray and see what a checkpoint predicts (Ctrl+3)")
        self.tabs.setTabToolTip(3, "Compare schedules and p0 values over seeds against the baselines, with a "
                                   "report (Ctrl+4)")
        self.setCentralWidget(self.tabs)
        self._build_actions()
        self.statusBar().showMessage(PRIVACY_NOTE, 10000)

        self.controller.running_changed.connect(self._running_changed)
        self.controller.preparation_progressed.connect(self._preparation_progressed)
        self.controller.run_started.connect(self._run_started)
        self.controller.batches_ended.connect(self._batches_ended)
        self.controller.epoch_ended.connect(self._epoch_ended)
        self.controller.message_logged.connect(self.log_message)
        self.controller.run_failed.connect(self.show_error)
        self.controller.run_finished.connect(self._run_finished)
        self.experiments.controller.experiment_crashed.connect(lambda cause, details: self.show_error(
            cause, details, "Experiment failed", "The settings are kept: correct the cause and press Run again."))
        self.run_view.open_in_viewer_requested.connect(self.open_in_viewer)
        self.history.open_in_viewer_requested.connect(self.open_in_viewer)
        self.setup_panel.output_field.path_chosen.connect(self.history.set_folder)
        self.setup_panel.changed.connect(self.start_problem.clear_message)

        self._restore_settings()
        self._running_changed(False)

    # -- construction -------------------------------------------------------------------------------------

    def _build_train_page(self) -> None:
        self.train_page = QWidget(self)
        setup_scroll = QScrollArea(self.train_page)
        setup_scroll.setWidget(self.setup_panel)
        setup_scroll.setWidgetResizable(True)
        setup_scroll.setMinimumWidth(380)

        self.start_button = QPushButton("Train", self.train_page)
        self.stop_button = QPushButton("Stop", self.train_page)
        self.demo_button = QPushButton("Try the demo", self.train_page)
        self.start_problem = InlineMessage(self.train_page)
        self.progress = QProgressBar(self.train_page)
        self.progress.setToolTip("Epoch and step of the run, speed and estimated time left")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)  # a progress bar without a value shows no text
        self.progress.setFormat("Idle")
        self.log = QPlainTextEdit(self.train_page)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setToolTip("Messages and warnings of the runs")

        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.demo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.monitor_splitter = QSplitter(Qt.Orientation.Vertical, self.train_page)
        self.monitor_splitter.addWidget(self.run_view)
        self.monitor_splitter.addWidget(self.log)
        self.monitor_splitter.setStretchFactor(0, 5)
        self.monitor_splitter.setStretchFactor(1, 1)
        self.monitor_splitter.setSizes([800, 130])
        right = QWidget(self.train_page)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.start_problem)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.monitor_splitter, 1)
        self.train_splitter = QSplitter(self.train_page)
        self.train_splitter.addWidget(setup_scroll)
        self.train_splitter.addWidget(right)
        self.train_splitter.setStretchFactor(1, 1)
        self.train_splitter.setSizes([420, 980])
        layout = QVBoxLayout(self.train_page)
        layout.addWidget(self.train_splitter)

    def _action(self, text: str, shortcuts: list, slot, tip: str, widget: QWidget | None = None) -> QAction:
        """An action with shortcuts; with `widget`, the shortcuts act only while focus is inside it."""
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
        keys = ", ".join(QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in shortcuts)
        action.setToolTip(f"{tip} ({keys})" if keys else tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        if widget is not None:
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            widget.addAction(action)
        else:
            self.addAction(action)
        return action

    def _build_actions(self) -> None:
        # Ctrl+O also opens an image in the viewer, so here it acts only on the Train tab.
        self.open_dataset_action = self._action("Open dataset…", [QKeySequence.StandardKey.Open],
                                                self.choose_dataset, "Choose the dataset folder", self.train_page)
        self.start_action = self._action("Train", ["Ctrl+R", "F5"], self.start_training,
                                         "Start training with these settings")
        self.stop_action = self._action("Stop", ["Esc", "Ctrl+."], self.controller.stop,
                                        "Stop after the current batch; the last completed epoch is kept")
        self.demo_action = self._action("Try the demo", ["Ctrl+D"], self.load_demo,
                                        "Fill in the built-in demo: 160 chest X-rays, IKD of a ResNet-18")
        self.open_run_action = self._action("Open run…", ["Ctrl+Shift+O"], self._choose_run,
                                            "Open a run folder in the History tab")
        quit_action = self._action("Quit", [QKeySequence.StandardKey.Quit], self.close, "Close IKD Studio")
        tab_actions = [self._action(name, [f"Ctrl+{index + 1}"], lambda _=False, i=index: self.tabs.setCurrentIndex(i),
                                    f"Show the {name} tab")
                       for index, name in enumerate(("Train", "History", "Viewer", "Experiments"))]
        self.start_button.clicked.connect(self.start_training)
        self.stop_button.clicked.connect(self.controller.stop)
        self.demo_button.clicked.connect(self.load_demo)
        for button, action in ((self.start_button, self.start_action), (self.stop_button, self.stop_action),
                               (self.demo_button, self.demo_action)):
            button.setToolTip(action.toolTip())

        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        for action in (self.open_dataset_action, self.open_run_action, self.demo_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        run_menu = menus.addMenu("&Run")
        run_menu.addAction(self.start_action)
        run_menu.addAction(self.stop_action)
        view_menu = menus.addMenu("&View")
        for action in tab_actions:
            view_menu.addAction(action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self._action("About IKD Studio", [], self._about, "Version, shortcuts and privacy"))

    # -- user actions -------------------------------------------------------------------------------------

    def choose_dataset(self) -> None:
        self.tabs.setCurrentWidget(self.train_page)
        self.setup_panel.dataset_field.browse()

    def _choose_run(self) -> None:
        self.tabs.setCurrentWidget(self.history)
        self.history.choose_run()

    def load_demo(self) -> None:
        """Fill in the demo dataset and settings (the Try the demo action and `ikd-gui --demo`)."""
        if self.controller.is_running:
            return
        teacher = demo_teacher_path()
        self.setup_panel.set_config(demo_config(self.setup_panel.config().out, teacher if teacher.exists() else None))
        self.tabs.setCurrentWidget(self.train_page)
        note = "" if teacher.exists() else " The first demo run trains the demo's teacher first (a few epochs)."
        self.log_message("info", f"Demo settings loaded: press Train (Ctrl+R).{note}")

    def start_training(self) -> None:
        if self.controller.is_running:
            return
        problem = self.setup_panel.problem()
        if problem:
            self.start_problem.show_message(problem)
            return
        self.start_problem.clear_message()
        self._save_settings()
        self.controller.start(self.setup_panel.config(), train_demo_teacher=self.setup_panel.demo_teacher_pending())

    def open_in_viewer(self, checkpoint: str) -> None:
        if self.viewer is None:
            self.statusBar().showMessage("The image viewer is not part of this build.", 5000)
            return
        self.viewer.set_checkpoint(checkpoint)
        self.tabs.setCurrentWidget(self.viewer)

    def show_in_viewer(self, image: str | None, checkpoint: str | None) -> None:
        """`ikd-gui --view IMAGE [--checkpoint CKPT]`."""
        if checkpoint:
            self.open_in_viewer(checkpoint)
        if self.viewer is not None:
            if image:
                self.viewer.open_image(image)
            self.tabs.setCurrentWidget(self.viewer)

    def show_error(self, cause: str, details: str, title: str = "Training failed",
                   advice: str = "The settings are kept: correct the cause and press Train again.") -> None:
        """An error (by default a failed run): the cause in one line, the details (traceback) expandable. Does not
        block."""
        box = QMessageBox(QMessageBox.Icon.Critical, title, cause, QMessageBox.StandardButton.Ok, self)
        box.setInformativeText(advice)
        box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda: setattr(self, "error_dialog", None))
        self.error_dialog = box
        box.open()

    def report_unexpected_error(self, exc_type: type[BaseException], exc: BaseException, tb) -> None:
        """An exception that escaped a slot or an event handler (see `app.show_unexpected_errors`): shown, and the
        app goes on. While an error dialog is open, further errors go to the log only, so an error repeated on
        every redraw cannot bury the window under dialogs."""
        cause = one_line(exc)
        self.log_message("error", f"Unexpected error: {cause}")
        if self.error_dialog is None:
            self.show_error(cause, "".join(traceback.format_exception(exc_type, exc, tb)), title="Unexpected error",
                            advice="IKD Studio goes on running, but the action that failed did not finish. The "
                                   "details help to report the problem.")

    def log_message(self, level: str, text: str) -> None:
        colour = {"warning": warning_colour, "error": error_colour}.get(level)
        escaped = html.escape(text)
        self.log.appendHtml(f'<span style="color:{colour(self.palette()).name()}">{escaped}</span>' if colour
                            else escaped)

    def _about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", (
            f"<b>{APP_NAME}</b>: interactive knowledge distillation for chest X-rays.<p>{PRIVACY_NOTE}</p>"
            "<p>Shortcuts: Ctrl+O open dataset · Ctrl+R or F5 train · Esc or Ctrl+. stop · Ctrl+D demo · "
            "Ctrl+Shift+O open run · Ctrl+1/2/3/4 tabs</p>"))

    # -- controller events --------------------------------------------------------------------------------

    def _running_changed(self, running: bool) -> None:
        self.setup_panel.set_read_only(running)
        for action, enabled in ((self.start_action, not running), (self.stop_action, running),
                                (self.demo_action, not running), (self.open_dataset_action, not running)):
            action.setEnabled(enabled)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.demo_button.setEnabled(not running)

    def _preparation_progressed(self, done: int, total: int, what: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"Preparing: {what} {done}/{total}")

    def _run_started(self, event) -> None:
        config = event.config
        self._epochs_planned = config["epochs"]
        self.run_view.begin(event)
        self.progress.setRange(0, event.total_steps)
        self.progress.setValue(event.start_step)
        self.progress.setFormat(f"Epoch 1/{self._epochs_planned} · starting")
        counts = "; ".join(f"{split} {sum(per_class.values())}" for split, per_class in event.counts.items())
        self.log_message("info", f"{config['mode']} run of a {config['arch']} on {event.device} ({counts} images): "
                                 f"{event.run_dir}")

    def _batches_ended(self, batches: list) -> None:
        self.run_view.add_batches(batches)
        last = batches[-1]
        self.progress.setValue(last.step + 1)
        self.progress.setFormat(
            f"Epoch {last.epoch}/{self._epochs_planned} · step {last.step + 1}/{last.total_steps} · "
            f"{last.images_per_second:.0f} images/s · {format_duration(last.eta_seconds)} left")

    def _epoch_ended(self, event) -> None:
        self.run_view.add_epoch(event)
        best = " (best so far)" if event.is_best else ""
        self.log_message("info", f"epoch {event.epoch}: train loss {event.train_loss:.4f}, val loss "
                                 f"{event.val_loss:.4f}, val accuracy {event.val['accuracy']:.3f}, balanced "
                                 f"{event.val['balanced_accuracy']:.3f}{best}")

    def _run_finished(self, result: RunFinished) -> None:
        status = STATUS_TEXT.get(result.status, result.status)
        self.progress.setFormat(f"{status}: {result.message}")
        self.log_message("error" if result.status == "failed" else "info", f"{status}: {result.message}")
        if result.run_dir is not None:
            self.run_view.show_result(result.run_dir)
            self.history.add_recent(result.run_dir)

    # -- closing and settings -----------------------------------------------------------------------------

    def confirm_stop_on_close(self) -> bool:
        """Asks whether to stop the running training; tests replace this method to answer without a click."""
        answer = QMessageBox.question(
            self, "Stop training?", "A run is in progress. Stop it and close? The last completed epoch's "
            "checkpoint is kept.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt naming
        if self.controller.is_running or self.experiments.is_running:
            if not self.confirm_stop_on_close():
                event.ignore()
                return
            self.controller.shutdown()
            self.experiments.shutdown()
        if self.viewer is not None:
            self.viewer.shutdown()
        self._save_settings()
        super().closeEvent(event)

    def _save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/train_splitter", self.train_splitter.saveState())
        self.settings.setValue("window/monitor_splitter", self.monitor_splitter.saveState())
        self.settings.setValue("setup/config", json.dumps(self.setup_panel.config().to_dict()))
        self.settings.setValue("history/recent", self.history.recent())
        self.settings.sync()

    def _restore_settings(self) -> None:
        for key, restore in (("window/geometry", self.restoreGeometry),
                             ("window/train_splitter", self.train_splitter.restoreState),
                             ("window/monitor_splitter", self.monitor_splitter.restoreState)):
            value = self.settings.value(key)
            if isinstance(value, QByteArray):
                restore(value)
        if self.settings.value("window/geometry") is None:
            self.resize(1400, 900)
        config = TrainConfig(out=default_output_folder())
        stored = self.settings.value("setup/config")
        if stored:
            try:
                config = TrainConfig.from_dict(json.loads(stored))
            except (TypeError, ValueError):
                pass  # settings from another version: start from the defaults
        self.setup_panel.set_config(config)
        self.history.set_folder(config.out)
        recent = self.settings.value("history/recent") or []
        self.history.set_recent([recent] if isinstance(recent, str) else list(recent))
