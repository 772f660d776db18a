"""The one training loop: modes teacher, student, ikd (hybrid swap-in) and kd (Hinton distillation).

The loop knows nothing of Qt or terminals. It reports to a `TrainingObserver` and checks a `CancelToken`
once per batch; the CLI and the app's worker are two observers.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_mod
from .errors import IKDError
from .hybrid import HybridNet, check_architectures
from .metrics import classification_metrics
from .models import build_model, checkpoint_payload, load_checkpoint, save_atomically
from .distributed import ProcessGroup
from .preprocess import Normalisation, augment_batch, normalise, to_network_input, to_unit_grey
from .runs import RunFolder, SecondaryRankFolder, read_config
from .schedules import Schedule, progress

MODES = ("teacher", "student", "ikd", "kd")
OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("cosine", "step", "constant")
BALANCING = ("weights", "sampler", "none")
AMP_CHOICES = (True, False, "auto", "off", "bf16", "fp16")
MONITORS = {"val_balanced_accuracy": "max", "val_accuracy": "max", "val_loss": "min", "val_auc": "max"}


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are what we recommend without tuning."""

    data: str = ""
    mode: str = "ikd"
    arch: str = "resnet18"  # the network being trained: the student, or the teacher in teacher mode
    teacher: str | None = None  # teacher checkpoint (ikd, kd)
    init_checkpoint: str | None = None  # optional starting weights for the trained network
    imagenet: bool = False
    reinit_head: bool = False
    labels: str = "binary"
    val_fraction: float = 0.1
    schedule: str = "linear"
    p0: float = 0.5
    cycles: int = 2
    mask: list[int] = field(default_factory=list)
    granularity: str = "step"
    epochs: int = 15
    batch_size: int = 32
    image_size: int = 224
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_epochs: float = 1.0
    balance: str = "weights"
    augment: bool = True
    kd_temperature: float = 4.0
    kd_alpha: float = 0.7
    # ikd: before each evaluation, recompute the student's BatchNorm statistics on the pure student (see
    # recalibrate_batchnorm); without it they describe activations that came through teacher blocks.
    recalibrate_bn: bool = True
    monitor: str = "val_balanced_accuracy"
    patience: int = 5
    min_delta: float = 0.002
    seed: int = 0
    split_seed: int | None = None  # seed of the validation split; None: `seed` (experiments fix it across seeds)
    device: str = "auto"
    amp: bool | str = True  # True/"auto": bf16 (else fp16) on CUDA only; "bf16" on any device; False/"off"
    channels_last: bool | None = None  # None: on CUDA only
    cache: bool = True
    cache_dir: str | None = None
    out: str = "runs"
    name: str = ""
    audit_routing: bool = False  # under torchrun, every rank also writes routing.rankN.csv

    @property
    def validation_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        choices = {"mode": MODES, "optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES, "balance": BALANCING,
                   "monitor": tuple(MONITORS), "labels": data_mod.LABEL_SCHEMES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise IKDError(f"{key} must be one of {', '.join(allowed)} (got {getattr(self, key)!r})")
        if self.mode in ("ikd", "kd") and not self.teacher:
            raise IKDError(f"{self.mode} mode needs a teacher checkpoint")
        for key in ("epochs", "batch_size", "image_size"):
            if getattr(self, key) < 1:
                raise IKDError(f"{key} must be at least 1")
        if self.image_size < 32:
            raise IKDError("image size must be at least 32 pixels (ResNets downsample 32 times)")
        if not self.lr > 0:
            raise IKDError("learning rate must be positive")
        if self.amp not in AMP_CHOICES:
            raise IKDError(f"amp must be one of {', '.join(map(str, AMP_CHOICES))} (got {self.amp!r})")
        self.make_schedule()

    def make_schedule(self) -> Schedule:
        return Schedule(self.schedule, self.p0, self.cycles, tuple(self.mask), self.granularity)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------------------------------------------------
# Events, observer, cancellation


@dataclass
class RunStarted:
    run_dir: Path
    config: dict
    classes: list[str]
    counts: dict[str, dict[str, int]]
    position_labels: list[str]  # one per swap position (ikd); empty otherwise
    steps_per_epoch: int
    total_steps: int
    start_step: int
    device: str


@dataclass
class BatchEnded:
    epoch: int  # 1-based
    step: int  # 0-based global step
    epoch_step: int
    steps_per_epoch: int
    total_steps: int
    loss: float
    accuracy: float
    lr: float
    p: float  # scheduled p(t); 1.0 outside ikd
    mask: tuple[int, ...]  # routing of this step (ikd); empty otherwise
    images_per_second: float
    eta_seconds: float


@dataclass
class EpochEnded:
    epoch: int
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val: dict  # classification_metrics of the validation split
    lr: float
    seconds: float
    is_best: bool
    student_share: float | None  # observed fraction of student blocks this epoch (ikd)


@dataclass
class RunFinished:
    status: str  # completed | early_stopped | cancelled | failed
    run_dir: Path | None
    message: str
    best_epoch: int | None = None
    best_checkpoint: Path | None = None
    best_val: dict | None = None
    test: dict | None = None


class TrainingObserver:
    """Receives the loop's events; every method is optional. Called from the training thread."""

    def on_prepare(self, done: int, total: int, what: str) -> None: ...
    def on_start(self, event: RunStarted) -> None: ...
    def on_batch(self, event: BatchEnded) -> None: ...
    def on_epoch(self, event: EpochEnded) -> None: ...
    def on_message(self, level: str, text: str) -> None: ...  # level: info | warning | error
    def on_finish(self, event: RunFinished) -> None: ...


class ObserverGroup(TrainingObserver):
    """Passes every event to each observer in turn (e.g. the console and TensorBoard)."""

    def __init__(self, *observers: TrainingObserver):
        self.observers = observers

    def on_prepare(self, done: int, total: int, what: str) -> None:
        for observer in self.observers:
            observer.on_prepare(done, total, what)

    def on_start(self, event: RunStarted) -> None:
        for observer in self.observers:
            observer.on_start(event)

    def on_batch(self, event: BatchEnded) -> None:
        for observer in self.observers:
            observer.on_batch(event)

    def on_epoch(self, event: EpochEnded) -> None:
        for observer in self.observers:
            observer.on_epoch(event)

    def on_message(self, level: str, text: str) -> None:
        for observer in self.observers:
            observer.on_message(level, text)

    def on_finish(self, event: RunFinished) -> None:
        for observer in self.observers:
            observer.on_finish(event)


class CancelToken:
    """Cooperative cancellation, checked once per batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


# ---------------------------------------------------------------------------------------------------------
# Setup helpers


def select_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise IKDError(f"unknown device {requested!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise IKDError("CUDA was asked for but no CUDA GPU is available")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise IKDError("MPS was asked for but is not available")
    return device


def available_devices() -> list[tuple[str, str]]:
    """(device string, human name) for every device this machine offers."""
    devices = [("cpu", "CPU")]
    if torch.cuda.is_available():
        devices += [(f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append(("mps", "Apple MPS"))
    return devices


@dataclass
class PreparedData:
    classes: list[str]
    counts: dict[str, dict[str, int]]
    pixels: dict[str, torch.Tensor]  # split -> uint8 [N, S, S]
    labels: dict[str, torch.Tensor]  # split -> int64 [N]
    skipped: list[tuple[Path, str]]
    val_origin: str


def prepare_data(config: TrainConfig, scan: data_mod.DatasetScan,
                 observer: TrainingObserver | None = None) -> PreparedData:
    """Split and decode (once, through the cache) the data of a run; bad files are skipped by name."""
    observer = observer or TrainingObserver()
    splits, origin = data_mod.resolve_splits(scan, config.val_fraction, config.validation_seed)
    cache_dir = (Path(config.cache_dir) if config.cache_dir else data_mod.default_cache_dir()) if config.cache else None
    skipped = list(scan.skipped)
    pixels, labels = {}, {}
    for split, samples in splits.items():
        decoded = data_mod.decode_all([s.path for s in samples], config.image_size, cache_dir,
                                      progress=lambda done, total, s=split: observer.on_prepare(done, total, f"decoding {s}"))
        ok = decoded.ok
        skipped.extend((Path(p), reason) for p, reason in decoded.errors.items())
        pixels[split] = torch.from_numpy(np.ascontiguousarray(decoded.pixels[ok]))
        labels[split] = torch.tensor([s.label for s, good in zip(samples, ok) if good], dtype=torch.int64)

    counts = {split: {name: int((labels[split] == i).sum()) for i, name in enumerate(scan.classes)}
              for split in labels}
    present = [name for name, n in counts["train"].items() if n > 0]
    if len(present) < 2:
        raise IKDError(f"training needs images of at least two classes; usable train images: "
                       f"{', '.join(f'{k} {v}' for k, v in counts['train'].items())}")
    if len(labels["val"]) == 0:
        raise IKDError("no usable validation images")
    return PreparedData(scan.classes, counts, pixels, labels, skipped, origin)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N / (K * n_k): every class contributes equally to the loss; absent classes get weight 0."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to 1% (or x0.1 steps at 50% and 75% of the run, or constant)."""
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    t = (step - warmup) / max(total_steps - warmup, 1)
    if config.lr_schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))
    if config.lr_schedule == "step":
        return config.lr * (0.1 ** (int(t >= 0.5) + int(t >= 0.75)))
    return config.lr


def evaluate(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, classes: list[str],
             device: torch.device, batch_size: int = 64, normalisation: Normalisation | None = None,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[dict, np.ndarray]:
    """Metrics and class probabilities of `model` in eval mode on uint8 images; metrics include `loss`."""
    normalisation = normalisation or Normalisation()
    was_training = model.training
    model.eval()
    probabilities, losses = [], []
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x = to_network_input(pixels[start:start + batch_size], device, normalisation, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            logits = logits.float()
            y = labels[start:start + batch_size].to(device)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            probabilities.append(torch.softmax(logits, dim=1).cpu())
    model.train(was_training)
    probs = torch.cat(probabilities).numpy() if probabilities else np.zeros((0, len(classes)))
    metrics = classification_metrics(labels.numpy(), probs, classes)
    metrics["loss"] = float(sum(losses) / max(len(labels), 1))
    return metrics, probs


def recalibrate_batchnorm(model: nn.Module, pixels: torch.Tensor, device: torch.device,
                          normalisation: Normalisation, channels_last: bool = False,
                          amp_dtype: torch.dtype | None = None, images: int = 2048, batch_size: int = 64) -> None:
    """Recompute the BatchNorm running statistics of `model` as it runs on its own.

    In hybrid training a student block's BatchNorm layers see activations produced partly by teacher blocks,
    and a block that was often swapped out has seen few batches at all, so the running statistics do not
    describe the pure student that is evaluated and kept. A forward pass of the pure student in train mode
    over (up to `images`) un-augmented training images, with a cumulative average, gives statistics that do.
    No gradients, no parameter changes, no random numbers: a resumed run recomputes exactly the same values.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average over the whole pass
    was_training = model.training
    model.train()
    with torch.no_grad():
        for start in range(0, min(len(pixels), images), batch_size):
            x = to_network_input(pixels[start:start + batch_size], device, normalisation, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                model(x)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)


def autocast_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The mixed-precision dtype for `amp` on `device`, or None for full precision."""
    if amp in (False, "off"):
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        if amp == "fp16":
            raise IKDError("fp16 mixed precision needs a CUDA device; use bf16 on the CPU")
        return None  # "auto": CPU autocast rarely pays off, so full precision
    if amp == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ---------------------------------------------------------------------------------------------------------
# The loop


class _Trainer:
    """One run's state. Use `train()` or `resume()`."""

    def __init__(self, config: TrainConfig, observer: TrainingObserver | None, cancel: CancelToken | None):
        config.validate()
        self.config = config
        self.cancel = cancel or CancelToken()
        self.device = select_device(config.device)
        self.group = ProcessGroup.from_environment(self.device.type)
        if self.group.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.group.local_rank)
            torch.cuda.set_device(self.device)
        # Under torchrun only rank 0 reports; the others train silently in lockstep.
        self.observer = (observer if self.group.is_main else None) or TrainingObserver()
        self.amp_dtype = autocast_dtype(self.device, config.amp)
        self.channels_last = self.device.type == "cuda" if config.channels_last is None else config.channels_last
        self.normalisation = Normalisation()

    # -- building ---------------------------------------------------------------------------------------

    def build(self) -> None:
        c = self.config
        # Everything that can be wrong with the user's choices is checked before the (slow) decoding.
        scan = data_mod.scan_dataset(c.data, c.labels)
        if len(scan.classes) < 2:
            raise IKDError(f"training needs images of at least two classes; {c.data} has only {scan.classes[0]}")
        self.classes = scan.classes
        teacher_ckpt = None
        if c.mode in ("ikd", "kd"):
            teacher_ckpt = load_checkpoint(c.teacher, classes=self.classes if c.mode == "kd" else None)
            if c.mode == "ikd":
                check_architectures(teacher_ckpt.arch, c.arch)
        init_ckpt = (load_checkpoint(c.init_checkpoint, arch=c.arch, classes=self.classes, reinit_head=c.reinit_head)
                     if c.init_checkpoint else None)

        self.data = prepare_data(c, scan, self.observer)
        for path, reason in self.data.skipped:
            self.observer.on_message("warning", f"skipped {path.name}: {reason}")
        torch.manual_seed(c.seed)
        self.model = init_ckpt.build() if init_ckpt else build_model(c.arch, len(self.classes), imagenet=c.imagenet)

        self.teacher = None
        self.hybrid = None
        if teacher_ckpt is not None:
            self.teacher = teacher_ckpt.build()
            self.teacher_arch = teacher_ckpt.arch
            self.teacher.requires_grad_(False)
            self.teacher.eval()
            if c.mode == "ikd":
                self.hybrid = HybridNet(self.model, self.teacher)
                self.schedule = c.make_schedule()
                self.schedule.check_positions(self.hybrid.num_positions)
        self.network = self.hybrid if self.hybrid is not None else self.model
        self.network.to(self.device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)
        if self.teacher is not None:
            self.teacher.to(self.device)  # kd: the teacher is not part of the trained network
        # Swapped-out student blocks get no gradient in a step: DDP must expect unused parameters in ikd.
        self.trained_network = self.group.wrap(self.network, self.device, has_unused_parameters=self.hybrid is not None)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay, nesterov=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        train_labels = self.data.labels["train"]
        weights = class_weights(train_labels, len(self.classes)) if c.balance == "weights" else None
        self.loss_weights = weights.to(self.device) if weights is not None else None
        self.sample_weights = (class_weights(train_labels, len(self.classes))[train_labels]
                               if c.balance == "sampler" else None)

        self.n_train = len(train_labels)
        # Each rank takes every world_size-th sample; the last partial batch is dropped.
        self.steps_per_epoch = max(1, self.n_train // self.group.world_size // c.batch_size)
        self.total_steps = self.steps_per_epoch * c.epochs
        self.train_pixels = self.data.pixels["train"].to(self.device) if self.device.type != "cpu" else self.data.pixels["train"]
        self.train_labels = train_labels.to(self.device)

        self.data_generator = torch.Generator().manual_seed(c.seed)
        self.augment_generator = torch.Generator().manual_seed(c.seed + 1)
        self.routing_generator = torch.Generator().manual_seed(c.seed + 2)
        self.epoch = 0  # completed epochs
        self.step = 0
        self.best_score: float | None = None
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.metric_columns = (["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc",
                                "val_balanced_acc", "val_auc", "lr", "seconds", "student_share"]
                               + [f"val_recall_{name}" for name in self.classes])

    @property
    def position_labels(self) -> list[str]:
        return [p.label for p in self.hybrid.positions] if self.hybrid else []

    def meta(self, metrics: dict | None) -> dict:
        c = self.config
        return {
            "arch": c.arch,
            "role": "teacher" if c.mode == "teacher" else "student",
            "classes": list(self.classes),
            "label_scheme": c.labels,
            "image_size": c.image_size,
            "normalisation": self.normalisation.to_dict(),
            "mode": c.mode,
            "teacher_arch": getattr(self, "teacher_arch", None),
            "config": c.to_dict(),
            "metrics": metrics or {},
        }

    # -- checkpoints ------------------------------------------------------------------------------------

    def training_state(self) -> dict:
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data": self.data_generator.get_state(),
                    "augment": self.augment_generator.get_state(), "routing": self.routing_generator.get_state()},
            "early_stopping": {"best_score": self.best_score, "best_loss": self.best_loss,
                               "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs},
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, checkpoint) -> None:
        state = checkpoint.raw.get("training")
        if not isinstance(state, dict):
            raise IKDError(f"{checkpoint.path.name} holds no training state to resume from")
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.data_generator.set_state(rng["data"])
        self.augment_generator.set_state(rng["augment"])
        self.routing_generator.set_state(rng["routing"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        early = state["early_stopping"]
        self.best_score, self.best_loss = early["best_score"], float(early["best_loss"])
        self.best_epoch, self.bad_epochs = early["best_epoch"], int(early["bad_epochs"])

    def save(self, path: Path, metrics: dict, with_training_state: bool) -> None:
        if not self.group.is_main:
            return
        extra = {"training": self.training_state()} if with_training_state else {}
        try:
            save_atomically(checkpoint_payload(self.model, self.meta(metrics), **extra), path)
        except OSError as exc:
            raise IKDError(f"could not save {path.name} in {path.parent} ({exc.strerror or exc}); "
                           "the previous checkpoint is intact") from exc

    # -- one epoch --------------------------------------------------------------------------------------

    def _epoch_order(self) -> torch.Tensor:
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, self.n_train, replacement=True, generator=self.data_generator)
        return torch.randperm(self.n_train, generator=self.data_generator)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, mask: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.trained_network(x, mask) if self.hybrid is not None else self.trained_network(x)
            hard = F.cross_entropy(logits.float(), y, weight=self.loss_weights)
            if c.mode != "kd":
                return hard, logits
            with torch.no_grad():
                teacher_logits = self.teacher(x)
        t = c.kd_temperature
        soft = F.kl_div(F.log_softmax(logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                        reduction="batchmean", log_target=True) * (t * t)
        return c.kd_alpha * soft + (1.0 - c.kd_alpha) * hard, logits

    def run_epoch(self) -> tuple[float, float, float | None] | None:
        """Train one epoch; None when cancelled. Returns (mean loss, accuracy, observed student share)."""
        c = self.config
        self.network.train()
        order = self.group.shard(self._epoch_order())  # every rank draws the same order, then takes its share
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        student_blocks = positions_run = 0
        mask: tuple[int, ...] = ()
        epoch_start_step = self.step
        step_seconds = None
        for epoch_step in range(self.steps_per_epoch):
            if self.cancel.cancelled:
                return None
            tick = time.perf_counter()
            index = order[epoch_step * c.batch_size:(epoch_step + 1) * c.batch_size]
            x = to_unit_grey(self.train_pixels[index.to(self.train_pixels.device)], self.device)
            if c.augment:
                x = augment_batch(x, self.augment_generator)
            x = normalise(x, self.normalisation, self.channels_last)
            y = self.train_labels[index.to(self.train_labels.device)]

            p = 1.0
            if self.hybrid is not None:
                t = progress(self.step if c.granularity == "step" else epoch_start_step, self.total_steps)
                p = self.schedule.p(t)
                if c.granularity == "step" or epoch_step == 0:
                    mask = self.schedule.sample(t, self.hybrid.num_positions, self.routing_generator)
                student_blocks += sum(mask)
                positions_run += len(mask)

            lr = learning_rate(c, self.step, self.total_steps, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, logits = self._loss(x, y, mask)
            if not self.group.all_true(bool(torch.isfinite(loss)), self.device):
                raise NonFiniteLoss(f"the loss became {loss.item()} at step {self.step}; lower the learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

            batch_loss = loss.detach()
            batch_correct = (logits.detach().argmax(1) == y).sum()
            loss_sum += batch_loss * len(y)
            correct += batch_correct
            seen += len(y)
            self.run_folder.log_step(self.step, self.epoch + 1, p, mask)

            seconds = time.perf_counter() - tick
            step_seconds = seconds if step_seconds is None else 0.9 * step_seconds + 0.1 * seconds
            remaining = self.total_steps - self.step - 1
            self.observer.on_batch(BatchEnded(
                epoch=self.epoch + 1, step=self.step, epoch_step=epoch_step, steps_per_epoch=self.steps_per_epoch,
                total_steps=self.total_steps, loss=float(batch_loss), accuracy=float(batch_correct) / len(y), lr=lr,
                p=p, mask=tuple(mask), images_per_second=len(y) / max(step_seconds, 1e-9),
                eta_seconds=remaining * step_seconds))
            self.step += 1
        share = student_blocks / positions_run if positions_run else None
        loss_total, correct_total, seen_total = self.group.sum([float(loss_sum), float(correct), seen], self.device)
        return loss_total / max(seen_total, 1), correct_total / max(seen_total, 1), share

    def _improved(self, val: dict) -> bool:
        c = self.config
        key = c.monitor.removeprefix("val_")
        score = val.get(key)
        if score is None:
            score = val["balanced_accuracy"]
        if MONITORS[c.monitor] == "min":
            score = -score
        if self.best_score is None or score > self.best_score + c.min_delta or (
                abs(score - self.best_score) <= c.min_delta and val["loss"] < self.best_loss):
            # Within min_delta of the best, the lower validation loss wins: on small validation sets many
            # epochs tie on accuracy, and the better calibrated one is the better pick.
            self.best_score = max(score, self.best_score) if self.best_score is not None else score
            self.best_loss = val["loss"]
            return True
        return False

    # -- the whole run ----------------------------------------------------------------------------------

    def run(self, run_folder: RunFolder) -> RunFinished:
        c = self.config
        self.run_folder = run_folder
        self.observer.on_start(RunStarted(
            run_dir=run_folder.path, config=c.to_dict(), classes=list(self.classes), counts=self.data.counts,
            position_labels=self.position_labels,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, start_step=self.step,
            device=str(self.device)))
        self.observer.on_message("info", f"validation set: {self.data.val_origin}")
        status, message = "completed", f"trained {c.epochs} epochs"
        try:
            while self.epoch < c.epochs:
                started = time.perf_counter()
                result = self.run_epoch()
                if result is None:
                    status, message = "cancelled", f"stopped by the user during epoch {self.epoch + 1}"
                    break
                train_loss, train_acc, share = result
                if self.hybrid is not None and c.recalibrate_bn:
                    recalibrate_batchnorm(self.model, self.train_pixels, self.device, self.normalisation,
                                          self.channels_last, self.amp_dtype)
                self.group.sync_buffers(self.model)
                val, _ = evaluate(self.model, self.data.pixels["val"], self.data.labels["val"], self.classes,
                                  self.device, normalisation=self.normalisation, amp_dtype=self.amp_dtype,
                                  channels_last=self.channels_last)
                self.epoch += 1
                is_best = self._improved(val)
                if is_best:
                    self.best_epoch, self.bad_epochs = self.epoch, 0
                else:
                    self.bad_epochs += 1
                lr = self.optimizer.param_groups[0]["lr"]
                row = {"epoch": self.epoch, "step": self.step, "train_loss": train_loss, "train_acc": train_acc,
                       "val_loss": val["loss"], "val_acc": val["accuracy"], "val_balanced_acc": val["balanced_accuracy"],
                       "val_auc": val["auc"] if val["auc"] is not None else "", "lr": lr,
                       "seconds": time.perf_counter() - started, "student_share": "" if share is None else share}
                row.update({f"val_recall_{n}": val["per_class"][n]["recall"] for n in self.classes})
                if is_best:
                    self.save(run_folder.best_checkpoint, {"epoch": self.epoch, "val": val}, with_training_state=False)
                self.save(run_folder.last_checkpoint, {"epoch": self.epoch, "val": val}, with_training_state=True)
                run_folder.log_epoch(row)
                run_folder.write_summary(self.summary("running", "", val_best=None))
                self.observer.on_epoch(EpochEnded(self.epoch, self.step, train_loss, train_acc, val["loss"], val, lr,
                                                  row["seconds"], is_best, share))
                if is_best:
                    self.observer.on_message("info", f"epoch {self.epoch}: best so far, saved {run_folder.best_checkpoint.name}")
                if self.bad_epochs >= c.patience and self.epoch < c.epochs:
                    status = "early_stopped"
                    message = (f"early stop after epoch {self.epoch}: no {c.monitor} improvement for {c.patience} "
                               f"epochs; best was epoch {self.best_epoch}")
                    self.observer.on_message("info", message)
                    break
        except (NonFiniteLoss, IKDError) as exc:
            status, message = "failed", str(exc)
            self.observer.on_message("error", message)
        except torch.OutOfMemoryError:
            status = "failed"
            message = (f"out of {self.device.type} memory at batch size {c.batch_size} and image size "
                       f"{c.image_size}; try a smaller batch or image size")
            self.observer.on_message("error", message)
        return self.finish(status, message)

    def summary(self, status: str, message: str, val_best: dict | None, test: dict | None = None) -> dict:
        return {"status": status, "message": message, "epochs_completed": self.epoch, "steps": self.step,
                "best_epoch": self.best_epoch, "best_checkpoint": str(self.run_folder.best_checkpoint)
                if self.best_epoch else None, "best_val": val_best, "test": test, "classes": self.classes,
                "val_origin": self.data.val_origin, "counts": self.data.counts}

    def finish(self, status: str, message: str) -> RunFinished:
        run_folder = self.run_folder
        best_val = test = None
        best_path = None
        self.group.barrier()  # rank 0's last save is complete before anyone reads it
        if self.best_epoch is not None and run_folder.best_checkpoint.exists():
            best_path = run_folder.best_checkpoint
            best = load_checkpoint(best_path)
            self.model.load_state_dict(best.state_dict)
            best_val = best.meta.get("metrics", {}).get("val")
            if "test" in self.data.labels and status != "cancelled":
                # The test split is reported on, once, with the selected model; it never chose anything.
                test, probabilities = evaluate(self.model, self.data.pixels["test"], self.data.labels["test"],
                                               self.classes, self.device, normalisation=self.normalisation,
                                               amp_dtype=self.amp_dtype, channels_last=self.channels_last)
                if len(self.classes) == 2:  # per-image scores, for drawing the ROC curve
                    test["labels"] = self.data.labels["test"].tolist()
                    test["scores"] = probabilities[:, 1].tolist()
        run_folder.write_summary(self.summary(status, message, best_val, test))
        run_folder.close()
        event = RunFinished(status, run_folder.path, message, self.best_epoch, best_path, best_val, test)
        self.observer.on_finish(event)
        self.group.close()
        return event


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite: the run stops, the best checkpoint stays as it was."""


def train(config: TrainConfig, observer: TrainingObserver | None = None,
          cancel: CancelToken | None = None) -> RunFinished:
    """Run one training to the end (or cancellation, early stop, divergence). User errors raise IKDError."""
    trainer = _Trainer(config, observer, cancel)
    trainer.build()
    group = trainer.group
    name = config.name or f"{config.mode}-{config.arch}"
    # The swap positions' labels go with the config, so readers of the folder can label the routing log.
    described = {**config.to_dict(), "position_labels": trainer.position_labels}
    folder = RunFolder.create(config.out, name, described, trainer.metric_columns) if group.is_main else None
    path = group.broadcast(folder.path if folder else None)
    return trainer.run(folder or SecondaryRankFolder(path, group.rank, config.audit_routing))


def resume(run_dir: str | Path, observer: TrainingObserver | None = None,
           cancel: CancelToken | None = None) -> RunFinished:
    """Continue a run from its last checkpoint, in the same folder."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_dict(read_config(run_dir))
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        raise IKDError(f"{run_dir} has no checkpoints/last.pt: nothing to resume (no epoch completed)")
    trainer = _Trainer(config, observer, cancel)
    trainer.build()
    checkpoint = load_checkpoint(last, arch=config.arch)
    trainer.restore(checkpoint)
    if trainer.epoch >= config.epochs:
        raise IKDError(f"{run_dir.name} already completed its {config.epochs} epochs")
    group = trainer.group
    if group.is_main:
        folder = RunFolder.reopen(run_dir, trainer.metric_columns, trainer.epoch, trainer.step)
    else:
        folder = SecondaryRankFolder(run_dir, group.rank, config.audit_routing, keep_steps=trainer.step)
    group.barrier()
    return trainer.run(folder)



def evaluate_checkpoint(data_dir: str | Path, checkpoint: str | Path, split: str = "test",
                        device: str = "auto", cache: bool = True) -> dict:
    """Metrics of a checkpoint on one split of a dataset.

    The validation split is re-created exactly as in training (same label scheme, fraction and seed, read from
    the checkpoint's metadata), so `--split val` measures the images the run selected its model on.
    """
    ckpt = load_checkpoint(checkpoint)
    trained = ckpt.meta.get("config", {})
    labels_scheme = ckpt.meta.get("label_scheme") or trained.get("labels", "binary")
    scan = data_mod.scan_dataset(data_dir, labels_scheme)
    seed = trained.get("split_seed")
    splits, _ = data_mod.resolve_splits(scan, trained.get("val_fraction", 0.1),
                                        trained.get("seed", 0) if seed is None else seed)
    if split not in splits:
        raise IKDError(f"the dataset has no {split} split (found {', '.join(splits)})")
    if len(scan.classes) != ckpt.num_classes:
        raise IKDError(f"{Path(checkpoint).name} has {ckpt.num_classes} classes ({', '.join(ckpt.classes)}), "
                       f"the data {len(scan.classes)} ({', '.join(scan.classes)})")
    samples = splits[split]
    decoded = data_mod.decode_all([s.path for s in samples], ckpt.image_size,
                                  data_mod.default_cache_dir() if cache else None)
    pixels = torch.from_numpy(np.ascontiguousarray(decoded.pixels[decoded.ok]))
    labels = torch.tensor([s.label for s, ok in zip(samples, decoded.ok) if ok], dtype=torch.int64)
    target = select_device(device)
    model = ckpt.build().to(target)
    metrics, _ = evaluate(model, pixels, labels, ckpt.classes, target,
                          normalisation=Normalisation.from_dict(ckpt.meta.get("normalisation")))
    metrics["split"] = split
    metrics["skipped"] = decoded.errors
    return metrics
