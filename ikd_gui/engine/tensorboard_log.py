"""TensorBoard event files of a training run, for people who follow runs in TensorBoard (optional extra).

Every value is logged against the global training step, so batch and epoch curves share one x axis and a
resumed run continues where its checkpoint left off: events written after that checkpoint, by the attempt that
stopped, are discarded (SummaryWriter's `purge_step`).

    batch/loss, batch/accuracy, batch/lr, batch/images_per_second     every step
    routing/p                                                         every step (ikd): scheduled p(t)
    routing/<position>, e.g. routing/layer1.0_vs_teacher_layer1.0-1   every step (ikd): 1 student block, 0 teacher
    epoch/train_loss, epoch/train_accuracy, epoch/val_loss, epoch/lr, epoch/student_share
    val/accuracy, val/balanced_accuracy, val/auc, val_recall/<class>  every epoch
    text: config (at the start), messages (warnings and errors), result (at the end)

TensorBoard's smoothing slider turns a 0/1 routing curve into the running share of steps that used the student.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import IKDError
from .training import BatchEnded, EpochEnded, RunFinished, RunStarted, TrainingObserver

FLUSH_SECONDS = 10  # readers see new points within this delay; epochs are flushed at once


def tag(group: str, name: str) -> str:
    """'group/name' with what TensorBoard refuses in a name (anything but letters, digits, '_', '-', '.') made
    '_' here, because TensorBoard would do the same with a logged warning on every call."""
    return group + "/" + re.sub(r"[^-\w.]+", "_", name)


def routing_tag(position_label: str) -> str:
    """'layer1.0 <-> teacher layer1.0-1' -> 'routing/layer1.0_vs_teacher_layer1.0-1'."""
    return tag("routing", position_label.replace("<->", "vs"))


class TensorBoardObserver(TrainingObserver):
    """Writes the run's scalars to `log_dir` (default: RUN_DIR/tensorboard). Needs the tensorboard package."""

    def __init__(self, log_dir: str | os.PathLike | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise IKDError("TensorBoard logging needs the tensorboard package: "
                           "pip install 'ikd-gui[tensorboard]'") from exc
        self._summary_writer = SummaryWriter
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.writer = None
        self.routing_tags: list[str] = []
        self.step = 0

    def on_start(self, event: RunStarted) -> None:
        log_dir = self.log_dir or Path(event.run_dir) / "tensorboard"
        self.writer = self._summary_writer(str(log_dir), purge_step=event.start_step or None,
                                           flush_secs=FLUSH_SECONDS)
        self.routing_tags = [routing_tag(label) for label in event.position_labels]
        self.step = event.start_step
        config = json.dumps(event.config, indent=2, default=str)
        # Indented by four spaces: TensorBoard renders text as Markdown, and this keeps the JSON verbatim.
        self.writer.add_text("config", "    " + config.replace("\n", "\n    "), event.start_step)

    def on_batch(self, event: BatchEnded) -> None:
        add, step = self.writer.add_scalar, event.step
        self.step = step
        add("batch/loss", event.loss, step)
        add("batch/accuracy", event.accuracy, step)
        add("batch/lr", event.lr, step)
        add("batch/images_per_second", event.images_per_second, step)
        if event.mask:
            add("routing/p", event.p, step)
            for tag, student in zip(self.routing_tags, event.mask):
                add(tag, student, step)

    def on_epoch(self, event: EpochEnded) -> None:
        add, step = self.writer.add_scalar, event.step
        self.step = step
        add("epoch/train_loss", event.train_loss, step)
        add("epoch/train_accuracy", event.train_accuracy, step)
        add("epoch/val_loss", event.val_loss, step)
        add("epoch/lr", event.lr, step)
        if event.student_share is not None:
            add("epoch/student_share", event.student_share, step)
        add("val/accuracy", event.val["accuracy"], step)
        add("val/balanced_accuracy", event.val["balanced_accuracy"], step)
        if event.val.get("auc") is not None:
            add("val/auc", event.val["auc"], step)
        for name, values in event.val["per_class"].items():
            add(tag("val_recall", name), values["recall"], step)
        self.writer.flush()

    def on_message(self, level: str, text: str) -> None:
        if level != "info" and self.writer is not None:
            self.writer.add_text("messages", f"{level}: {text}", self.step)

    def on_finish(self, event: RunFinished) -> None:
        if self.writer is None:  # the run failed before it started
            return
        self.writer.add_text("result", f"{event.status}: {event.message}", self.step)
        self.writer.close()
        self.writer = None
