"""`ikd experiment`: run a grid of IKD schedules x p0 x seeds plus the baselines, then write the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli import ConsoleObserver
from .engine.errors import IKDError
from .engine.experiments import ExperimentObserver, ExperimentSpec, Manifest, find_experiment, run_experiment

# Options that override the config file's value when given; argparse defaults are None so that "not given"
# can be told apart from "given the default value".
SPEC_OPTIONS = ("data", "teacher", "student_arch", "schedules", "p0", "seeds", "epochs", "image_size", "batch_size",
                "lr", "labels", "val_fraction", "device", "cycles", "split_seed", "out", "name")


def add_experiment_parser(subparsers) -> None:
    from .engine.data import LABEL_SCHEMES
    from .engine.models import architecture_names

    d = ExperimentSpec()
    p = subparsers.add_parser(
        "experiment", help="compare IKD schedules and p0 values over seeds against the baselines, with a report",
        description="Train every IKD run of a schedule x p0 x seed grid, plus the student alone and classic KD for "
                    "each seed, all with the same data split and budget; then write report.md and report.html. "
                    "Re-running the same command (or --resume) skips finished runs and resumes interrupted ones.")
    p.add_argument("--config", metavar="JSON", help="a JSON file with the same keys as these options (e.g. "
                   "\"student_arch\", \"p0\": [0.1, 0.5]); options given on the command line override it")
    p.add_argument("--resume", metavar="DIR", help="continue the experiment in DIR (or the only one under DIR); "
                   "other options are ignored")
    p.add_argument("--data", default=None, help="dataset folder")
    p.add_argument("--teacher", default=None, metavar="CKPT", help="teacher checkpoint")
    p.add_argument("--student-arch", choices=architecture_names(), default=None, help=f"default {d.student_arch}")
    p.add_argument("--schedules", default=None, help=f"comma-separated (default {','.join(d.schedules)})")
    p.add_argument("--p0", default=None, help=f"comma-separated (default {','.join(f'{v:g}' for v in d.p0)})")
    p.add_argument("--seeds", type=int, default=None, help=f"number of seeds per configuration (default {d.seeds})")
    p.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    p.add_argument("--image-size", type=int, default=None, help=f"default {d.image_size}")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=None, help=f"default {d.lr:g}")
    p.add_argument("--labels", choices=LABEL_SCHEMES, default=None, help=f"default {d.labels}")
    p.add_argument("--val-fraction", type=float, default=None, help=f"default {d.val_fraction:g}")
    p.add_argument("--cycles", type=int, default=None, help=f"ramps of the review schedule (default {d.cycles})")
    p.add_argument("--split-seed", type=int, default=None,
                   help=f"seed of the validation split, the same for every run (default {d.split_seed})")
    p.add_argument("--device", default=None, help=f"auto, cpu, cuda, cuda:N or mps (default {d.device})")
    unresolved_out = ExperimentSpec.__dataclass_fields__["out"].default  # d.out is already an absolute path
    p.add_argument("--out", default=None, help=f"folder that receives the experiment folder (default {unresolved_out})")
    p.add_argument("--name", default=None, help=f"experiment folder name (default {d.name})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_experiment)


def spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    if args.resume:
        return Manifest.load(find_experiment(args.resume)).spec
    values: dict = {}
    relative_to = None
    if args.config:
        path = Path(args.config).expanduser()
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IKDError(f"cannot read the experiment config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise IKDError(f"{path} must hold a JSON object of settings")
        relative_to = path.parent
    spec = ExperimentSpec.from_dict(values, relative_to)
    given = {key: getattr(args, key) for key in SPEC_OPTIONS if getattr(args, key) is not None}
    return ExperimentSpec.from_dict({**spec.to_dict(), **given})


class ExperimentConsole(ConsoleObserver, ExperimentObserver):
    """`ikd train`'s progress bars for the run in progress, with which run of how many it is."""

    def on_run_start(self, index: int, total: int, name: str, resuming: bool) -> None:
        self._write(f"[{index}/{total}] {'resuming' if resuming else 'training'} {name}")

    def on_run_skipped(self, index: int, total: int, name: str, status: str) -> None:
        if not self.quiet:
            self._write(f"[{index}/{total}] {name}: {status.replace('_', ' ')} before, skipped")

    def on_run_end(self, index: int, total: int, name: str, result) -> None:
        best = result.best_val or {}
        detail = f", val balanced accuracy {best['balanced_accuracy']:.3f}" if best else ""
        self._write(f"[{index}/{total}] {name}: {result.status}{detail}")


def cmd_experiment(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    observer = ExperimentConsole(quiet=args.quiet)
    result = run_experiment(spec, observer)
    observer.close()
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in result.statuses.items())
    print(f"{result.status}: {summary}", file=sys.stderr)
    print(result.report if result.report else result.directory)
    return 0 if result.status == "completed" else 1
