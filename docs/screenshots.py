"""Render the main states of IKD Studio to PNG, offscreen, from a real demo run.

    python docs/screenshots.py [--out docs/images]

Writes setup.png (the demo filled in), training.png (an IKD run in progress: curves and routing heatmap),
summary.png (the finished run) and history.png (two runs compared). The first run on a machine also trains
the demo's teacher (a few epochs), as the app does. Settings and run folders go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402 - the platform must be chosen before Qt loads
from PySide6.QtWidgets import QApplication  # noqa: E402

from ikd_gui.gui.main_window import MainWindow  # noqa: E402

WINDOW_SIZE = (1500, 950)
RUN_TIMEOUT_S = 900


def wait_until(app: QApplication, condition, what: str, timeout: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def save(window: MainWindow, app: QApplication, path: Path) -> None:
    for _ in range(20):  # let queued redraws (at most every 33 ms) land before the grab
        app.processEvents()
        time.sleep(0.01)
    window.grab().save(str(path))
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "images"), help="folder for the PNG files")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ikd-screenshots-"))

    app = QApplication(sys.argv[:1])
    window = MainWindow(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window.confirm_stop_on_close = lambda: True
    window.resize(*WINDOW_SIZE)
    window.show()
    window.setup_panel.output_field.set_path(str(work / "runs"))
    window.load_demo()
    wait_until(app, lambda: window.setup_panel.dataset_summary.thumbnail_count() == 8, "the thumbnails")
    save(window, app, out / "setup.png")

    finished, epochs_seen = [], []
    window.controller.run_finished.connect(finished.append)
    window.controller.epoch_ended.connect(lambda event: epochs_seen.append(window.run_view.heatmap.image().shape[0]))
    window.start_training()
    # In progress: the IKD run (heatmap rows > 0) past its second epoch, some steps into the third.
    wait_until(app, lambda: sum(1 for rows in epochs_seen if rows) >= 2, "two epochs of the IKD run")
    steps_then = window.progress.value()
    wait_until(app, lambda: window.progress.value() >= steps_then + 4, "a few more steps")
    save(window, app, out / "training.png")

    wait_until(app, lambda: bool(finished), "the end of the run")
    save(window, app, out / "summary.png")

    window.tabs.setCurrentWidget(window.history)
    window.history.select_runs([Path(p) for p in window.history.recent()] + list((work / "runs").iterdir()))
    save(window, app, out / "history.png")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
