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

from PySide6.QtCore import QObject, Signal, Slot

from ..engine.errors import IKDError, one_line
from ..engine.experiments import ExperimentObserver, ExperimentResult, ExperimentSpec, run_experiment
from ..engine.training import CancelToken, RunFinished
from .controller import WorkerController
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


class ExperimentController(WorkerController):
    """Starts, stops and reports one experiment at a time; every signal is emitted in the GUI thread."""

    run_began = Signal(int, int, str, bool)
    run_skipped = Signal(int, int, str, str)
    run_ended = Signal(int, int, str, object)
    report_written = Signal(object, object)
    experiment_failed = Signal(str)
    experiment_crashed = Signal(str, str)
    experiment_finished = Signal(object)  # ExperimentResult; the thread has been joined

    def start(self, spec: ExperimentSpec) -> None:
        if self.is_running:
            raise RuntimeError("an experiment is already in progress")
        cancel = CancelToken()
        worker = ExperimentWorker(dataclasses.replace(spec), cancel)
        worker.run_began.connect(self._on_run_began)
        worker.run_skipped.connect(self._on_run_skipped)
        worker.run_ended.connect(self._on_run_ended)
        worker.report_written.connect(self._on_report_written)
        worker.experiment_failed.connect(self._on_experiment_failed)
        worker.experiment_crashed.connect(self._on_experiment_crashed)
        worker.experiment_finished.connect(self._on_experiment_finished)
        self._launch(worker, cancel, "ikd-experiment")

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
        if self._finish():
            self.experiment_finished.emit(result)
