"""Experiments: a grid of IKD runs (schedule x p0 x seed) plus the baselines, trained one after another with
the same data split, budget and seeds, resumable, and then reported.

    OUT/<name>/
        experiment.json   the manifest: the spec, and each run's folder and status (rewritten atomically)
        runs/             one run folder per training, in the format of runs.py
        report.md, report.html, results.csv, figures/*.png   (see report.py)

Re-running the same experiment skips finished runs, resumes interrupted ones from their last checkpoint and
restarts those that stopped before completing an epoch. Like the training loop, the runner knows nothing of
Qt or terminals: it reports to an `ExperimentObserver` and checks a `CancelToken`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import training
from .data import scan_dataset
from .errors import IKDError
from .hybrid import check_architectures
from .models import architecture_names, load_checkpoint
from .runs import is_run_folder, read_summary, write_json_atomically
from .schedules import SCHEDULES
from .training import CancelToken, RunFinished, TrainConfig, TrainingObserver

MANIFEST_FILE = "experiment.json"
MANIFEST_FORMAT = 1
BASELINE_MODES = ("student", "kd")  # the student trained alone, and classic (Hinton) distillation
FINISHED = ("completed", "early_stopped", "failed")  # a failed run would fail again: it is reported, not retried
PATH_KEYS = ("data", "teacher", "out")


@dataclass
class ExperimentSpec:
    """What an experiment trains. Every run shares the data, split, budget and training options."""

    data: str = ""
    teacher: str = ""
    student_arch: str = "resnet18"
    schedules: list[str] = field(default_factory=lambda: ["uniform", "linear", "review"])
    p0: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    seeds: int = 3  # seeds 0 .. seeds-1, each used by one run of every configuration
    epochs: int = TrainConfig.epochs
    image_size: int = TrainConfig.image_size
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    labels: str = TrainConfig.labels
    val_fraction: float = TrainConfig.val_fraction
    cycles: int = TrainConfig.cycles
    device: str = TrainConfig.device
    split_seed: int = 0  # one validation split for every run, whatever its seed
    out: str = "experiments"
    name: str = "experiment"

    def __post_init__(self) -> None:
        # Absolute paths: runs resume from any working directory, and a re-run is recognised as the same.
        for key in PATH_KEYS:
            if getattr(self, key):
                setattr(self, key, str(Path(getattr(self, key)).expanduser().resolve()))

    @property
    def directory(self) -> Path:
        return Path(self.out) / self.name

    @classmethod
    def from_dict(cls, values: dict, relative_to: Path | None = None) -> "ExperimentSpec":
        """A spec from JSON-like values: keys as on the command line (dashes or underscores), lists as JSON
        lists or comma-separated text. Relative paths are taken relative to `relative_to` (a config file's
        folder) when given."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise IKDError(f"unknown experiment setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if isinstance(values.get("schedules"), str):
            values["schedules"] = _split_list(values["schedules"])
        if "p0" in values:
            p0 = values["p0"]
            items = _split_list(p0) if isinstance(p0, str) else p0 if isinstance(p0, list) else [p0]
            try:
                values["p0"] = [float(v) for v in items]
            except (TypeError, ValueError) as exc:
                raise IKDError(f"p0 must be numbers such as 0.1,0.5,0.9 (got {p0!r})") from exc
        if relative_to is not None:
            for key in PATH_KEYS:
                if values.get(key):
                    values[key] = str(relative_to / Path(values[key]).expanduser())  # unchanged when absolute
        try:
            return cls(**values)
        except TypeError as exc:
            raise IKDError(f"invalid experiment settings: {exc}") from exc

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if not self.data or not self.teacher:
            raise IKDError("an experiment needs --data and --teacher")
        if self.student_arch not in architecture_names():
            raise IKDError(f"unknown student architecture {self.student_arch!r}; "
                           f"choose one of {', '.join(architecture_names())}")
        if not self.schedules or not self.p0:
            raise IKDError("an experiment needs at least one schedule and one p0")
        for name in self.schedules:
            if name not in SCHEDULES or name == "fixed":
                choices = ", ".join(s for s in SCHEDULES if s != "fixed")
                raise IKDError(f"unknown or unsupported schedule {name!r} in an experiment; choose from {choices}")
        if len(set(self.schedules)) != len(self.schedules) or len(set(self.p0)) != len(self.p0):
            raise IKDError("schedules and p0 values must not repeat")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise IKDError(f"seeds is the number of seeds per configuration, at least 1 (got {self.seeds!r})")
        for plan in self.plan():
            self.train_config(plan).validate()  # ranges of p0, epochs, sizes, labels, learning rate

    def plan(self) -> list["RunPlan"]:
        """Every run, seed by seed: after the first seed, every configuration has a result."""
        runs = []
        for seed in range(self.seeds):
            runs += [RunPlan(mode, seed) for mode in BASELINE_MODES]
            runs += [RunPlan("ikd", seed, schedule, p0) for schedule in self.schedules for p0 in self.p0]
        return runs

    def train_config(self, plan: "RunPlan") -> TrainConfig:
        config = TrainConfig(
            data=self.data, mode=plan.mode, arch=self.student_arch,
            teacher=self.teacher if plan.mode != "student" else None,
            labels=self.labels, val_fraction=self.val_fraction, cycles=self.cycles, epochs=self.epochs,
            batch_size=self.batch_size, image_size=self.image_size, lr=self.lr, device=self.device,
            seed=plan.seed, split_seed=self.split_seed,
            # Identical budgets: every run trains all its epochs (the best epoch is still selected on val).
            patience=self.epochs + 1,
            out=str(self.directory / "runs"), name=plan.name)
        if plan.mode == "ikd":
            config.schedule, config.p0 = plan.schedule, plan.p0
        return config


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class RunPlan:
    """One run of the grid: a configuration (IKD schedule and p0, or a baseline) and a seed."""

    mode: str  # ikd | student | kd
    seed: int
    schedule: str | None = None
    p0: float | None = None

    @property
    def configuration(self) -> str:
        """The runs that differ only by seed share this label; statistics are taken over them."""
        if self.mode == "student":
            return "student alone"
        if self.mode == "kd":
            return "classic KD"
        return f"IKD {self.schedule}, p0 {self.p0:g}"

    @property
    def name(self) -> str:
        if self.mode == "ikd":
            return f"ikd-{self.schedule}-p{self.p0:g}-seed{self.seed}"
        return f"{self.mode}-seed{self.seed}"


@dataclass
class RunEntry:
    """The manifest's record of one run."""

    plan: RunPlan
    folder: str | None = None  # relative to the experiment folder
    status: str = "pending"  # pending | running | completed | early_stopped | failed | cancelled

    def to_dict(self) -> dict:
        return {"name": self.plan.name, **dataclasses.asdict(self.plan), "folder": self.folder, "status": self.status}

    @classmethod
    def from_dict(cls, values: dict) -> "RunEntry":
        plan = RunPlan(values["mode"], int(values["seed"]), values.get("schedule"), values.get("p0"))
        return cls(plan, values.get("folder"), values.get("status", "pending"))


class Manifest:
    """experiment.json: the spec and each run's folder and status, rewritten after every change."""

    def __init__(self, directory: Path, spec: ExperimentSpec, entries: list[RunEntry], teacher_arch: str):
        self.directory = directory
        self.spec = spec
        self.entries = entries
        self.teacher_arch = teacher_arch

    @classmethod
    def load(cls, directory: str | Path) -> "Manifest":
        directory = Path(directory).expanduser().resolve()
        path = directory / MANIFEST_FILE
        try:
            stored = json.loads(path.read_text())
            # The folder may have moved since: it is where the manifest is now.
            spec = ExperimentSpec(**{**stored["spec"], "out": str(directory.parent), "name": directory.name})
            entries = [RunEntry.from_dict(run) for run in stored["runs"]]
            teacher_arch = stored["teacher_arch"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IKDError(f"not an experiment folder (no readable {MANIFEST_FILE}): {directory}") from exc
        return cls(directory, spec, entries, teacher_arch)

    @classmethod
    def open(cls, spec: ExperimentSpec, teacher_arch: str) -> "Manifest":
        """The manifest of `spec`'s folder: the existing one when it holds the same experiment, else a new one."""
        directory = spec.directory
        if not (directory / MANIFEST_FILE).exists():
            manifest = cls(directory, spec, [RunEntry(plan) for plan in spec.plan()], teacher_arch)
            try:
                (directory / "runs").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IKDError(f"cannot create the experiment folder {directory}: {exc.strerror or exc}") from exc
            manifest.save()
            return manifest
        manifest = cls.load(directory)
        stored, wanted = manifest.spec.to_dict(), spec.to_dict()
        changed = [key for key in wanted if key not in ("out", "name") and stored[key] != wanted[key]]
        if changed:
            raise IKDError(f"{directory} holds an experiment with other settings ({', '.join(changed)}); resume it "
                           f"with --resume {directory}, or choose another --name or --out")
        return manifest

    def save(self) -> None:
        write_json_atomically(self.directory / MANIFEST_FILE, {
            "format": MANIFEST_FORMAT, "spec": self.spec.to_dict(), "teacher_arch": self.teacher_arch,
            "runs": [entry.to_dict() for entry in self.entries]})

    def run_folder(self, entry: RunEntry) -> Path | None:
        return self.directory / entry.folder if entry.folder else None


def find_experiment(path: str | Path) -> Path:
    """The experiment folder `path` names: one holding experiment.json, or an OUT folder holding exactly one."""
    path = Path(path).expanduser()
    if (path / MANIFEST_FILE).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST_FILE}")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        raise IKDError(f"{path} holds several experiments ({', '.join(p.name for p in found)}); name one")
    raise IKDError(f"no experiment in {path} (no {MANIFEST_FILE})")


# ---------------------------------------------------------------------------------------------------------
# Observer and runner


class ExperimentObserver(TrainingObserver):
    """Receives the experiment's progress, run by run, and the training events of the run in progress."""

    def on_run_start(self, index: int, total: int, name: str, resuming: bool) -> None: ...
    def on_run_skipped(self, index: int, total: int, name: str, status: str) -> None: ...
    def on_run_end(self, index: int, total: int, name: str, result: RunFinished) -> None: ...
    def on_report(self, markdown: Path, html: Path) -> None: ...


class _RecordingObserver(TrainingObserver):
    """Writes the run's folder into the manifest as soon as it exists, so that a crash can be resumed; passes
    every event on."""

    def __init__(self, target: TrainingObserver, manifest: Manifest, entry: RunEntry):
        self.target, self.manifest, self.entry = target, manifest, entry

    def on_prepare(self, done: int, total: int, what: str) -> None:
        self.target.on_prepare(done, total, what)

    def on_start(self, event: training.RunStarted) -> None:
        self.entry.folder = event.run_dir.relative_to(self.manifest.directory).as_posix()
        self.entry.status = "running"
        self.manifest.save()
        self.target.on_start(event)

    def on_batch(self, event: training.BatchEnded) -> None:
        self.target.on_batch(event)

    def on_epoch(self, event: training.EpochEnded) -> None:
        self.target.on_epoch(event)

    def on_message(self, level: str, text: str) -> None:
        self.target.on_message(level, text)

    def on_finish(self, event: RunFinished) -> None:
        self.target.on_finish(event)


@dataclass
class ExperimentResult:
    directory: Path
    status: str  # completed | cancelled
    statuses: dict[str, int]  # run status -> number of runs
    report: Path | None  # report.md, written once every run has finished


def check_inputs(spec: ExperimentSpec) -> str:
    """Everything that can be wrong before the first (slow) run; returns the teacher's architecture."""
    from .report import require_matplotlib

    require_matplotlib()
    spec.validate()
    scan = scan_dataset(spec.data, spec.labels)
    teacher = load_checkpoint(spec.teacher, classes=scan.classes)
    check_architectures(teacher.arch, spec.student_arch)
    return teacher.arch


def run_experiment(spec: ExperimentSpec, observer: ExperimentObserver | None = None,
                   cancel: CancelToken | None = None) -> ExperimentResult:
    """Train every run of `spec` not yet finished, then write the report. User errors raise IKDError."""
    from .report import write_report

    observer = observer or ExperimentObserver()
    cancel = cancel or CancelToken()
    manifest = Manifest.open(spec, check_inputs(spec))
    total = len(manifest.entries)
    for index, entry in enumerate(manifest.entries, start=1):
        if cancel.cancelled:
            break
        folder = manifest.run_folder(entry)
        if folder is not None and entry.status not in FINISHED:
            recorded = read_summary(folder).get("status")
            if recorded in FINISHED:  # a crash between the run's final summary and the manifest's update
                entry.status = recorded
                manifest.save()
        if entry.status in FINISHED and folder is not None and folder.is_dir():
            observer.on_run_skipped(index, total, entry.plan.name, entry.status)
            continue
        result = _train_or_resume(manifest, entry, folder, index, total, observer, cancel)
        entry.status = result.status
        manifest.save()
        observer.on_run_end(index, total, entry.plan.name, result)

    statuses: dict[str, int] = {}
    for entry in manifest.entries:
        statuses[entry.status] = statuses.get(entry.status, 0) + 1
    if any(entry.status not in FINISHED for entry in manifest.entries):
        return ExperimentResult(manifest.directory, "cancelled", statuses, None)
    markdown, html = write_report(manifest)
    observer.on_report(markdown, html)
    return ExperimentResult(manifest.directory, "completed", statuses, markdown)


def _train_or_resume(manifest: Manifest, entry: RunEntry, folder: Path | None, index: int, total: int,
                     observer: ExperimentObserver, cancel: CancelToken) -> RunFinished:
    recorder = _RecordingObserver(observer, manifest, entry)
    if folder is not None and (folder / "checkpoints" / "last.pt").exists():
        observer.on_run_start(index, total, entry.plan.name, resuming=True)
        try:
            return training.resume(folder, recorder, cancel)
        except IKDError as exc:
            # Typically a crash after the last epoch's checkpoint but before the summary: nothing to continue.
            observer.on_message("warning", f"{entry.plan.name}: cannot resume ({exc}); training it again")
    if folder is not None and is_run_folder(folder):
        # Stopped before any epoch completed (or unresumable): nothing in it is worth keeping.
        shutil.rmtree(folder)
    entry.folder, entry.status = None, "pending"
    manifest.save()
    observer.on_run_start(index, total, entry.plan.name, resuming=False)
    return training.train(manifest.spec.train_config(entry.plan), recorder, cancel)
