"""The `ikd` command: train, evaluate, predict and inspect checkpoints without a window."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .engine.errors import IKDError
from .export_cli import add_export_parser

EXIT_USER_ERROR = 2


def _add_train(sub) -> None:
    from .engine.data import LABEL_SCHEMES
    from .engine.models import architecture_names
    from .engine.schedules import GRANULARITIES, SCHEDULES
    from .engine.training import BALANCING, LR_SCHEDULES, MODES, MONITORS, OPTIMIZERS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a teacher, a student baseline, an IKD student or a KD student",
                       description="Train a network. Prints a progress bar, then the run folder as the last line.")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (other options ignored)")
    p.add_argument("--data", help="dataset folder (train/val/test/CLASS/ or CLASS/ sub-folders)")
    p.add_argument("--mode", choices=MODES, default=d.mode)
    p.add_argument("--arch", choices=architecture_names(), default=d.arch,
                   help="architecture being trained: the student, or the teacher in teacher mode")
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (ikd, kd)")
    p.add_argument("--init", dest="init_checkpoint", metavar="CKPT", help="start from these weights")
    p.add_argument("--imagenet", action="store_true", help="start from ImageNet weights in the local torch cache")
    p.add_argument("--reinit-head", action="store_true", help="re-initialise the classifier of --init when classes differ")
    p.add_argument("--labels", choices=LABEL_SCHEMES, default=d.labels)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--schedule", choices=list(SCHEDULES), default=d.schedule)
    p.add_argument("--p0", type=float, default=d.p0, help="initial probability of using a student block")
    p.add_argument("--cycles", type=int, default=d.cycles, help="ramps of the review schedule")
    p.add_argument("--mask", help="fixed schedule mask, e.g. 1,0,1,1,1,1,1,1")
    p.add_argument("--granularity", choices=GRANULARITIES, default=d.granularity, help="sample the routing per step or per epoch")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule)
    p.add_argument("--balance", choices=BALANCING, default=d.balance, help="class imbalance handling")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--kd-temperature", type=float, default=d.kd_temperature)
    p.add_argument("--kd-alpha", type=float, default=d.kd_alpha)
    p.add_argument("--no-recalibrate-bn", dest="recalibrate_bn", action="store_false",
                   help="ikd: keep the BatchNorm statistics gathered in hybrid training instead of recomputing "
                        "them on the pure student before each evaluation")
    p.add_argument("--monitor", choices=list(MONITORS), default=d.monitor)
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping patience in epochs")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--split-seed", type=int, default=None, help="seed of the validation split (default: --seed)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="mixed precision: auto = bf16 (else fp16) on CUDA, full precision elsewhere")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on CUDA only)")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="decode images every run")
    p.add_argument("--out", default=d.out, help="folder that receives the run folder")
    p.add_argument("--name", default=d.name)
    p.add_argument("--audit-routing", action="store_true",
                   help="under torchrun, every rank also writes routing.rankN.csv (to check they agree)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard logs to RUN_DIR/tensorboard (pip install 'ikd-gui[tensorboard]')")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .engine import training
    from .engine.schedules import parse_mask

    console = ConsoleObserver(quiet=args.quiet)
    observer = console
    if args.tensorboard:
        from .engine.tensorboard_log import TensorBoardObserver

        observer = training.ObserverGroup(console, TensorBoardObserver())
    if args.resume:
        result = training.resume(args.resume, observer)
    else:
        if not args.data:
            raise IKDError("--data is required (or --resume RUN_DIR)")
        values = {k: v for k, v in vars(args).items() if k in {f for f in training.TrainConfig.__dataclass_fields__}}
        values["mask"] = list(parse_mask(args.mask)) if args.mask else []
        if args.mask and args.schedule != "fixed":
            values["schedule"] = "fixed"
        result = training.train(training.TrainConfig(**values), observer)
    console.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return 1 if result.status == "failed" else 0  # under torchrun, rank 0 speaks for the job
    print(f"{result.status}: {result.message}", file=sys.stderr)
    if result.best_val:
        print(f"best epoch {result.best_epoch}: val accuracy {result.best_val['accuracy']:.3f}, balanced "
              f"{result.best_val['balanced_accuracy']:.3f}", file=sys.stderr)
    if result.test:
        print(f"test: accuracy {result.test['accuracy']:.3f}, balanced {result.test['balanced_accuracy']:.3f}",
              file=sys.stderr)
    print(result.run_dir)
    return 1 if result.status == "failed" else 0


class ConsoleObserver:
    """Progress bars with ETA on stderr (tqdm); warnings and messages above them."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.prepare_bar = None

    def _write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def on_prepare(self, done: int, total: int, what: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.prepare_bar is None or self.prepare_bar.desc != what:
            if self.prepare_bar is not None:
                self.prepare_bar.close()
            self.prepare_bar = tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False, disable=None)
        self.prepare_bar.update(done - self.prepare_bar.n)

    def on_start(self, event) -> None:
        if self.prepare_bar is not None:
            self.prepare_bar.close()
        self._write(f"run folder: {event.run_dir} (device {event.device})")
        if not self.quiet:
            from tqdm import tqdm

            # disable=None: a bar on a terminal, none in a log file or pipe.
            self.bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", file=sys.stderr,
                            dynamic_ncols=True, disable=None)

    def on_batch(self, event) -> None:
        if self.bar is not None:
            self.bar.set_description(f"epoch {event.epoch}", refresh=False)
            self.bar.set_postfix(loss=f"{event.loss:.3f}", p=f"{event.p:.2f}", ips=f"{event.images_per_second:.0f}",
                                 refresh=False)
            self.bar.update(1)

    def on_epoch(self, event) -> None:
        auc = f", AUC {event.val['auc']:.3f}" if event.val.get("auc") is not None else ""
        self._write(f"epoch {event.epoch}: train loss {event.train_loss:.4f} acc {event.train_accuracy:.3f} | "
                    f"val loss {event.val_loss:.4f} acc {event.val['accuracy']:.3f} balanced "
                    f"{event.val['balanced_accuracy']:.3f}{auc}{'  *best' if event.is_best else ''}")

    def on_message(self, level: str, text: str) -> None:
        if level != "info" or not self.quiet:
            self._write(f"{level}: {text}" if level != "info" else text)

    def on_finish(self, event) -> None:
        self.close()

    def close(self) -> None:
        for bar in (self.bar, self.prepare_bar):
            if bar is not None:
                bar.close()
        self.bar = self.prepare_bar = None


def cmd_evaluate(args) -> int:
    from .engine.training import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.data, args.checkpoint, args.split, args.device)
    if args.json:
        keys = ("accuracy", "balanced_accuracy", "per_class", "confusion_matrix", "auc", "count", "split", "loss")
        print(json.dumps({k: metrics[k] for k in keys}, indent=2))
        return 0
    print(f"{metrics['split']}: {metrics['count']} images")
    print(f"accuracy {metrics['accuracy']:.4f}   balanced accuracy {metrics['balanced_accuracy']:.4f}"
          + (f"   ROC AUC {metrics['auc']:.4f}" if metrics["auc"] is not None else ""))
    names = list(metrics["per_class"])
    width = max(len(n) for n in names) + 2
    print(f"{'class':<{width}}precision  recall  f1      support")
    for name, m in metrics["per_class"].items():
        print(f"{name:<{width}}{m['precision']:<11.3f}{m['recall']:<8.3f}{m['f1']:<8.3f}{m['support']}")
    print("confusion matrix (rows true, columns predicted):")
    print(" " * width + "".join(f"{n[:8]:>9}" for n in names))
    for name, row in zip(names, metrics["confusion_matrix"]):
        print(f"{name:<{width}}" + "".join(f"{v:>9}" for v in row))
    for path, reason in metrics["skipped"].items():
        print(f"skipped {reason}", file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    from .engine.inference import Predictor, image_files

    predictor = Predictor(args.checkpoint, device=args.device)
    predictions = predictor.predict_files(image_files(args.images))
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        for p in predictions:
            if p.error:
                print(f"{p.file}: error: {p.error}")
            else:
                probs = "  ".join(f"{name} {value:.3f}" for name, value in p.probabilities.items())
                print(f"{p.file}: {p.label}  ({probs})")
    return 1 if any(p.error for p in predictions) else 0


def cmd_info(args) -> int:
    from .engine.models import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt.meta
    params = sum(v.numel() for k, v in ckpt.state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    info = {"file": str(ckpt.path), "arch": ckpt.arch, "classes": ckpt.classes, "parameters": params,
            "image_size": ckpt.image_size, "role": meta.get("role"), "mode": meta.get("mode"),
            "label_scheme": meta.get("label_scheme"), "normalisation": meta.get("normalisation"),
            "metrics": meta.get("metrics"), "resumable": isinstance(ckpt.raw.get("training"), dict),
            "format": ckpt.raw.get("format", "plain state_dict")}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if key == "metrics" and value:
            val = value.get("val", {})
            value = f"epoch {value.get('epoch')}: val accuracy {val.get('accuracy', 0):.3f}, balanced {val.get('balanced_accuracy', 0):.3f}"
        print(f"{key:>14}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikd", description="IKD Studio: interactive knowledge distillation for chest X-rays.")
    parser.add_argument("--version", action="version", version=f"ikd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    from .experiments_cli import add_experiment_parser  # here, not at the top: it imports ConsoleObserver from us

    add_experiment_parser(sub)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a dataset split")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify images (files or folders)")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="what a checkpoint holds")
    p.add_argument("checkpoint")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    add_export_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IKDError as exc:
        print(f"ikd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ikd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
