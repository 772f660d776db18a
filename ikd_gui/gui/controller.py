"""The training controller: a GUI-thread object that owns the training thread and its worker.

Widgets talk to the controller only. It starts a run in a fresh QThread, re-emits the worker's signals in the
GUI thread (so slots and tests can rely on them), stops a run through the engine's CancelToken, and joins the
thread before reporting the end of a run, so `run_finished` means the thread is gone.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..engine.training import CancelToken, RunFinished, TrainConfig
from .worker import TrainingWorker


def leave_a_core_for_the_window() -> None:
    """Train on all cores but one, so the GUI thread always has a core to stay responsive on."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))


class WorkerController(QObject):
    """Owns one worker QObject in one QThread at a time, from the GUI thread; the base of the training and the
    experiment controllers. It re-emits the training events every worker sends, ignoring those that arrive
    after `shutdown`, and stops through the engine's CancelToken."""

    preparation_progressed = Signal(int, int, str)  # done, total, what
    run_started = Signal(object)  # RunStarted
    batches_ended = Signal(object)  # list[BatchEnded]
    epoch_ended = Signal(object)  # EpochEnded
    message_logged = Signal(str, str)  # level, text
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: QObject | None = None
        self._cancel: CancelToken | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    def _launch(self, worker: QObject, cancel: CancelToken, thread_name: str) -> None:
        """Move `worker` to a fresh thread, relay its training events, and start its `run` slot there."""
        leave_a_core_for_the_window()
        self._cancel, self._worker = cancel, worker
        self._thread = QThread()
        self._thread.setObjectName(thread_name)
        worker.moveToThread(self._thread)
        worker.preparation_progressed.connect(self._on_preparation_progressed)
        worker.run_started.connect(self._on_run_started)
        worker.batches_ended.connect(self._on_batches_ended)
        worker.epoch_ended.connect(self._on_epoch_ended)
        worker.message_logged.connect(self._on_message_logged)
        self._thread.started.connect(worker.run)
        self._thread.start()
        self.running_changed.emit(True)

    def stop(self) -> None:
        """Ask the work to stop; it ends after the current batch, keeping the last complete checkpoint."""
        if self._cancel is not None and not self._cancel.cancelled:
            self._cancel.cancel()
            self.message_logged.emit("info", "Stopping after the current batch…")

    def shutdown(self) -> None:
        """Stop the work and wait for its thread (when the window closes). Blocks for up to one batch."""
        if not self.is_running:
            return
        self._cancel.cancel()
        self._join()  # the worker's last signals are still queued; the slots ignore them from now on
        self.running_changed.emit(False)

    def _join(self) -> None:
        # quit() is called directly rather than through a queued finished -> quit connection, which could not
        # run while this thread is blocked in wait(). A quit() before the thread's event loop starts is kept.
        self._thread.quit()
        self._thread.wait()
        # Python owns the worker and the thread; with the thread finished, both can be dropped from here.
        self._thread = self._worker = self._cancel = None

    def _finish(self) -> bool:
        """Join the thread at the worker's last signal; False when shutdown already did (ignore the signal)."""
        if self._worker is None:
            return False
        self._join()
        self.running_changed.emit(False)
        return True

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


class TrainingController(WorkerController):
    run_failed = Signal(str, str)  # one-line cause, details
    run_finished = Signal(object)  # RunFinished; the thread has been joined

    def start(self, config: TrainConfig, train_demo_teacher: bool = False) -> None:
        """Start a run in the background; with `train_demo_teacher`, the demo's teacher is trained first."""
        if self.is_running:
            raise RuntimeError("a run is already in progress")
        cancel = CancelToken()
        worker = TrainingWorker(dataclasses.replace(config), cancel, train_demo_teacher)
        worker.run_failed.connect(self._on_run_failed)
        worker.run_finished.connect(self._on_run_finished)
        self._launch(worker, cancel, "ikd-training")

    @Slot(str, str)
    def _on_run_failed(self, cause: str, details: str) -> None:
        if self._worker is not None:
            self.run_failed.emit(cause, details)

    @Slot(object)
    def _on_run_finished(self, result: RunFinished) -> None:
        if self._finish():
            self.run_finished.emit(result)
