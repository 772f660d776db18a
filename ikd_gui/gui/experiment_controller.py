"""The experiment controller and worker: an experiment (a grid of runs, then the report) in a background thread.

Same shape as the training controller: the worker runs `run_experiment` in its QThread and turns the engine's
observer events into signals; the controller, in the GUI thread, owns the thread and the worker, re-emits their
signals, stops through the engine's CancelToken, and joins the thread before `experiment_finished`. The training
events of the run in progress go through the training worker's observer (copies, batch events at a bounded
rate), so the Experiments view can show them exactly as the Train tab does.
"""

from __future__ import annotations

import copy
import dataclasses
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..engine.errors import IKDError, one_line
from ..engine.experiments import ExperimentObserver, ExperimentResult, ExperimentSpec, run_experiment
from ..engine.training import CancelToken, RunFinished
from .controller import leave_a_core_for_the_window
from .worker import _PreparationCancelled, _SignalObserver


class _ExperimentSignalObserver(_SignalObserver, ExperimentObserver):
    """The training worker's observer, plus the experiment's run-by-run events. Runs in the worker thread."""

    def on_run_start(self, index: int, total: int, name: str, resuming: bool) -> None:
        self._worker.run_began.emit(index, total, name, resuming)

    def on_run_skipped(self, index: int, total: int, name: str, status: str) -> None:
        self._worker.run_skipped.emit(index, total, name, status)

    def on_run_end(self, index: int, total: int, name: str, result: RunFinished) -> None:
        self.flush()  # the run's last batches before its end
        self._worker.run_ended.emit(index, total, name, copy.deepcopy(result))

    def on_report(self, markdown, html) -> None:
        self._worker.report_written.emit(markdown, html)


class ExperimentWorker(QObject):
    """One experiment. `experiment_finished(ExperimentResult)` is always the last signal, also after a failure
    (status "failed")."""

    # The training events of the run in progress; the names are those `_SignalObserver` emits.
    preparation_progressed = Signal(int, int, str)  # done, total, what
    run_started = Signal(object)  # RunStarted: the run's folder exists, its training starts
    batches_ended = Signal(object)  # list[BatchEnded]
    epoch_ended = Signal(object)  # EpochEnded
    message_logged = Signal(str, str)  # level (info | warning | error), text
    # The experiment's events.
    run_began = Signal(int, int, str, bool)  # index (1-based), total, run name, resuming
    run_skipped = Signal(int, int, str, str)  # index, total, run name, its earlier status
    run_ended = Signal(int, int, str, object)  # index, total, run name, RunFinished
    report_written = Signal(object, object)  # report.md, report.html (Path)
    experiment_failed = Signal(str)  # an IKDError: the user's settings or files, in one line
    experiment_crashed = Signal(str, str)  # any other exception: one-line cause, traceback
    experiment_finished = Signal(object)  # ExperimentResult

    def __init__(self, spec: ExperimentSpec, cancel: CancelToken):
        super().__init__()
        self._spec = spec
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        observer = _ExperimentSignalObserver(self, self._cancel)
        # When the experiment ends early, the engine returns no result: one is made here. Its `statuses` stays
        # empty; experiment.json holds each run's status.
        try:
            result = run_experiment(self._spec, observer, self._cancel)
        except _PreparationCancelled:
            result = ExperimentResult(self._spec.directory, "cancelled", {}, None)
        except IKDError as exc:
            self.experiment_failed.emit(str(exc))
            result = ExperimentResult(self._spec.directory, "failed", {}, None)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user, not die with the thread
            self.experiment_crashed.emit(one_line(exc), traceback.format_exc())
            result = ExperimentResult(self._spec.directory, "failed", {}, None)
        observer.flush()
        self.experiment_finished.emit(result)


class ExperimentController(QObject):
    """Starts, stops and reports one experiment at a time; every signal is emitted in the GUI thread."""

    preparation_progressed = Signal(int, int, str)
    run_started = Signal(object)
    batches_ended = Signal(object)
    epoch_ended = Signal(object)
    message_logged = Signal(str, str)
    run_began = Signal(int, int, str, bool)
    run_skipped = Signal(int, int, str, str)
    run_ended = Signal(int, int, str, object)
    report_written = Signal(object, object)
    experiment_failed = Signal(str)
    experiment_crashed = Signal(str, str)
    experiment_finished = Signal(object)  # ExperimentResult; the thread has been joined
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: ExperimentWorker | None = None
        self._cancel: CancelToken | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, spec: ExperimentSpec) -> None:
        if self.is_running:
            raise RuntimeError("an experiment is already in progress")
        leave_a_core_for_the_window()
        self._cancel = CancelToken()
        self._worker = ExperimentWorker(dataclasses.replace(spec), self._cancel)
        self._thread = QThread()
        self._thread.setObjectName("ikd-experiment")
        self._worker.moveToThread(self._thread)
        worker = self._worker
        worker.preparation_progressed.connect(self._on_preparation_progressed)
        worker.run_started.connect(self._on_run_started)
        worker.batches_ended.connect(self._on_batches_ended)
        worker.epoch_ended.connect(self._on_epoch_ended)
        worker.message_logged.connect(self._on_message_logged)
        worker.run_began.connect(self._on_run_began)
        worker.run_skipped.connect(self._on_run_skipped)
        worker.run_ended.connect(self._on_run_ended)
        worker.report_written.connect(self._on_report_written)
        worker.experiment_failed.connect(self._on_experiment_failed)
        worker.experiment_crashed.connect(self._on_experiment_crashed)
        worker.experiment_finished.connect(self._on_experiment_finished)
        self._thread.started.connect(worker.run)
        self._thread.start()
        self.running_changed.emit(True)

    def stop(self) -> None:
        """Ask the experiment to stop after the current batch; running it again continues where it stopped."""
        if self._cancel is not None and not self._cancel.cancelled:
            self._cancel.cancel()
            self.message_logged.emit("info", "Stopping after the current batch…")

    def shutdown(self) -> None:
        """Stop the experiment and wait for its thread (when the window closes). Blocks for up to one batch."""
        if not self.is_running:
            return
        self._cancel.cancel()
        self._join()  # the worker's last signals are still queued; the slots ignore them from now on
        self.running_changed.emit(False)

    def _join(self) -> None:
        # quit() directly, not through a queued finished -> quit connection that could not run while this
        # thread is blocked in wait() (see the training controller).
        self._thread.quit()
        self._thread.wait()
        self._thread = self._worker = self._cancel = None

    # -- the worker's signals, re-emitted in the GUI thread ---------------------------------------------
    # Each slot ignores signals that arrive after `shutdown` (no worker any more).

    @Slot(int, int, str)
    def _on_preparation_progressed(self, done: int, total: int, what: str) -> None:
        if self._worker is not None:
            self.preparation_progressed.emit(done, total, what)

    @Slot(object)
    def _on_run_started(self, event) -> None:
        if self._worker is not None:
            self.run_started.emit(event)

    @Slot(object)
    def _on_batches_ended(self, batches) -> None:
        if self._worker is not None:
            self.batches_ended.emit(batches)

    @Slot(object)
    def _on_epoch_ended(self, event) -> None:
        if self._worker is not None:
            self.epoch_ended.emit(event)

    @Slot(str, str)
    def _on_message_logged(self, level: str, text: str) -> None:
        if self._worker is not None:
            self.message_logged.emit(level, text)

    @Slot(int, int, str, bool)
    def _on_run_began(self, index: int, total: int, name: str, resuming: bool) -> None:
        if self._worker is not None:
            self.run_began.emit(index, total, name, resuming)

    @Slot(int, int, str, str)
    def _on_run_skipped(self, index: int, total: int, name: str, status: str) -> None:
        if self._worker is not None:
            self.run_skipped.emit(index, total, name, status)

    @Slot(int, int, str, object)
    def _on_run_ended(self, index: int, total: int, name: str, result: RunFinished) -> None:
        if self._worker is not None:
            self.run_ended.emit(index, total, name, result)

    @Slot(object, object)
    def _on_report_written(self, markdown, html) -> None:
        if self._worker is not None:
            self.report_written.emit(markdown, html)

    @Slot(str)
    def _on_experiment_failed(self, cause: str) -> None:
        if self._worker is not None:
            self.experiment_failed.emit(cause)

    @Slot(str, str)
    def _on_experiment_crashed(self, cause: str, details: str) -> None:
        if self._worker is not None:
            self.experiment_crashed.emit(cause, details)

    @Slot(object)
    def _on_experiment_finished(self, result: ExperimentResult) -> None:
        if self._worker is None:
            return
        self._join()
        self.running_changed.emit(False)
        self.experiment_finished.emit(result)
