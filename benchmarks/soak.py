"""Soak: one long training through the app's controller, with the main window drawing live, measuring resident
memory growth and the worst GUI-thread stalls. Numbers for docs/reliability.md ("The app under stress").

    python benchmarks/soak.py [--steps 2000] [--out DIR]

The test suite runs a shorter version (tests/reliability/test_app_stress.py) with generous bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ikd_gui.engine.training import TrainConfig  # noqa: E402
from ikd_gui.gui.main_window import MainWindow  # noqa: E402
from ikd_gui.gui.probes import enlarged_demo_dataset, watch_training  # noqa: E402

COPIES = 8  # 1280 images: 1152 to train on, 144 steps per epoch at batch 8
BATCH = 8
WARM_UP_EPOCHS = 2


def soak(steps: int, workdir: Path) -> dict:
    data = enlarged_demo_dataset(workdir / "data", COPIES)
    train_images = 160 * COPIES - round(0.1 * 160 * COPIES)  # the validation fraction is split off
    epochs = math.ceil(steps / (train_images // BATCH))
    config = TrainConfig(data=str(data), mode="student", arch="resnet18", epochs=epochs, patience=epochs,
                         batch_size=BATCH, image_size=32, device="cpu", out=str(workdir / "runs"),
                         cache_dir=str(workdir / "cache"))
    window = MainWindow(QSettings(str(workdir / "settings.ini"), QSettings.Format.IniFormat))
    window.show()
    watched = watch_training(window.controller, config, warm_up_epochs=WARM_UP_EPOCHS)
    window.close()
    return {"status": watched.result.status, "steps": watched.steps, "epochs": epochs, "seconds": watched.seconds,
            "memory_mb_after_each_epoch": [round(m, 1) for m in watched.memory_mb],
            "memory_growth_mb": watched.memory_growth_mb, "worst_stall_ms": watched.worst_stall_ms,
            "p99_stall_ms": watched.p99_stall_ms, "median_gap_ms": float(np.median(watched.gaps_ms))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="at least this many training steps")
    parser.add_argument("--out", type=Path, help="also write the numbers to OUT/soak.json")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 - the window needs it alive
    with tempfile.TemporaryDirectory() as tmp:
        numbers = soak(args.steps, Path(tmp))
    print(json.dumps(numbers, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak.json").write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
