"""The training worker: runs the engine in its QThread and turns the engine's observer events into Qt signals.

It never touches a widget. Events cross threads as signals carrying copies (the engine's dicts are deep-copied;
batch events hold only numbers and tuples). Batch events are gathered and sent at most every
`BATCH_SIGNAL_INTERVAL_S`, so a fast GPU run does not flood the GUI thread's event queue. Every exception is
caught here and reported, because one escaping a thread's run would be lost.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import traceback

from PySide6.QtCore import QObject, Signal, Slot

from ..engine.demo import ensure_demo_teacher
from ..engine.errors import IKDError, one_line
from ..engine.training import CancelToken, RunFinished, TrainConfig, TrainingObserver, train

BATCH_SIGNAL_INTERVAL_S = 0.1
PREPARE_SIGNAL_INTERVAL_S = 0.1


class _PreparationCancelled(Exception):
    """Raised from the decoding progress callback: decoding has no cancellation point of its own."""


class _SignalObserver(TrainingObserver):
    """Runs in the worker thread; emits the worker's signals."""

    def __init__(self, worker: "TrainingWorker", cancel: CancelToken):
        self._worker = worker
        self._cancel = cancel
        self._pending_batches: list = []
        self._last_batch_signal = 0.0
        self._last_prepare_signal = 0.0

    def on_prepare(self, done: int, total: int, what: str) -> None:
        if self._cancel.cancelled:
            raise _PreparationCancelled()
        now = time.monotonic()
        if done == total or now - self._last_prepare_signal >= PREPARE_SIGNAL_INTERVAL_S:
            self._last_prepare_signal = now
            self._worker.preparation_progressed.emit(done, total, what)

    def on_start(self, event) -> None:
        self._worker.run_started.emit(copy.deepcopy(event))

    def on_batch(self, event) -> None:
        self._pending_batches.append(event)
        now = time.monotonic()
        if now - self._last_batch_signal >= BATCH_SIGNAL_INTERVAL_S or event.epoch_step == event.steps_per_epoch - 1:
            self._last_batch_signal = now
            self.flush()

    def on_epoch(self, event) -> None:
        self.flush()
        self._worker.epoch_ended.emit(copy.deepcopy(event))

    def on_message(self, level: str, text: str) -> None:
        self._worker.message_logged.emit(level, text)

    def on_finish(self, event) -> None:
        self.flush()  # the run's result is reported once, from the worker, after train() returns

    def flush(self) -> None:
        if self._pending_batches:
            batches, self._pending_batches = self._pending_batches, []  # the GUI thread owns the sent list
            self._worker.batches_ended.emit(batches)


class TrainingWorker(QObject):
    """One run (for the demo without a cached teacher: the teacher's training, then the run).

    `run_finished(RunFinished)` is always the last signal, also after a failure (status "failed").
    """

    preparation_progressed = Signal(int, int, str)  # done, total, what
    run_started = Signal(object)  # RunStarted
    batches_ended = Signal(object)  # list[BatchEnded]
    epoch_ended = Signal(object)  # EpochEnded
    message_logged = Signal(str, str)  # level (info | warning | error), text
    run_failed = Signal(str, str)  # one-line cause, details (traceback)
    run_finished = Signal(object)  # RunFinished

    def __init__(self, config: TrainConfig, cancel: CancelToken, train_demo_teacher: bool = False):
        super().__init__()
        self._config = config
        self._cancel = cancel
        self._train_demo_teacher = train_demo_teacher

    @Slot()
    def run(self) -> None:
        observer = _SignalObserver(self, self._cancel)
        try:
            result = self._train(observer)
        except _PreparationCancelled:
            result = RunFinished("cancelled", None, "stopped by the user while the images were being prepared")
        except IKDError as exc:
            result = self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user, not die with the thread
            result = self._failed(one_line(exc))
        observer.flush()
        self.run_finished.emit(result)

    def _train(self, observer: _SignalObserver) -> RunFinished:
        config = self._config
        if self._train_demo_teacher:
            self.message_logged.emit("info", "Training the demo's teacher first; later demo runs reuse it.")
            teacher = ensure_demo_teacher(config.out, observer, self._cancel)
            if teacher is None:
                if self._cancel.cancelled:
                    return RunFinished("cancelled", None, "stopped by the user while the demo's teacher was training")
                raise IKDError("the demo's teacher could not be trained; see the messages above")
            config = dataclasses.replace(config, teacher=str(teacher))
        return train(config, observer, self._cancel)

    def _failed(self, cause: str) -> RunFinished:
        self.run_failed.emit(cause, traceback.format_exc())
        return RunFinished("failed", None, cause)
