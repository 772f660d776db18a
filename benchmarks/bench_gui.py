"""GUI benchmarks (issue 6, item 5): the redraw cost of the loss view and of the routing heatmap, each against
plain pyqtgraph drawing the same data, and the GUI thread's stalls while a training runs in the background.

    python benchmarks/run_all.py --only gui [--quick]

Redraws are forced with `grab()`, which paints the widget into a pixmap, so the figures include the actual
drawing, not only `setData`. Each frame first adds what a live run adds between two redraws.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ikd_gui.engine.training import TrainConfig  # noqa: E402
from ikd_gui.gui.main_window import MainWindow  # noqa: E402
from ikd_gui.gui.probes import StallMeter, watch_training  # noqa: E402
from ikd_gui.gui.widgets.curves import TrainingCurves  # noqa: E402
from ikd_gui.gui.widgets.routing_heatmap import RoutingHeatmap  # noqa: E402
from ikd_gui.resources import demo_dataset  # noqa: E402

CURVE_POINTS = 100_000
HEATMAP_STEPS, POSITIONS = 20_000, 8
STEPS_PER_FRAME = 30  # steps a fast run adds between two redraws (~30 Hz)
SIZE = (1000, 700)


def fake_batches(first: int, count: int, rng: np.random.Generator) -> list[SimpleNamespace]:
    """What the engine's BatchEnded events carry for the loss view (no routing: a student run)."""
    return [SimpleNamespace(step=step, loss=float(np.exp(-step / 30_000) + 0.1 * rng.random()), p=1.0, mask=())
            for step in range(first, first + count)]


def median_frame_ms(frame, repeats: int) -> float:
    frame()  # first paint: layout and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        frame()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_curves(repeats: int) -> dict:
    rng = np.random.default_rng(0)
    curves = TrainingCurves()
    curves.resize(*SIZE)
    curves.show()
    total = CURVE_POINTS + (repeats + 1) * STEPS_PER_FRAME
    curves.start(total, routed=False)
    for first in range(0, CURVE_POINTS, 1000):
        curves.add_batches(fake_batches(first, 1000, rng))
    curves.refresh()
    state = {"step": CURVE_POINTS}

    def ours() -> None:
        curves.add_batches(fake_batches(state["step"], STEPS_PER_FRAME, rng))
        state["step"] += STEPS_PER_FRAME
        curves.refresh()
        curves.grab()

    # The plain plot shows the same two series (raw and smoothed loss) at the size of one of our four plots.
    steps, raw = curves.step_losses()
    x = np.concatenate([steps, np.arange(len(steps), total, dtype=np.float64)])
    y = np.concatenate([raw, rng.random(total - len(raw))])
    smoothed = np.concatenate([curves.smoothed_losses(), rng.random(total - len(raw))])
    plain = pg.PlotWidget()
    plain.resize(SIZE[0] // 2, SIZE[1] // 2)
    plain.show()
    raw_curve, smoothed_curve = plain.plot(), plain.plot()
    count = {"n": CURVE_POINTS}

    def baseline() -> None:
        count["n"] += STEPS_PER_FRAME
        raw_curve.setData(x[:count["n"]], y[:count["n"]])
        smoothed_curve.setData(x[:count["n"]], smoothed[:count["n"]])
        plain.grab()

    ours_ms, plain_ms = median_frame_ms(ours, repeats), median_frame_ms(baseline, repeats)
    curves.close()
    plain.close()
    print(f"5a. loss view redraw with {CURVE_POINTS} steps: {ours_ms:.1f} ms (plain PlotWidget {plain_ms:.1f} ms)")
    return {"id": "5a", "what": f"loss view redraw at {CURVE_POINTS // 1000}k steps (all four plots, raw and smoothed "
                                "loss) / plain pyqtgraph PlotWidget drawing the same two 100k-point series",
            "ratio": ours_ms / plain_ms, "target": "<= 1",
            "note": f"{ours_ms:.1f} ms vs {plain_ms:.1f} ms per frame of {STEPS_PER_FRAME} new steps"}


def bench_heatmap(repeats: int) -> dict:
    rng = np.random.default_rng(1)
    labels = [f"position {k}" for k in range(POSITIONS)]
    total = HEATMAP_STEPS + (repeats + 1) * STEPS_PER_FRAME
    masks = (rng.random((total, POSITIONS)) < 0.5).astype(np.uint8)
    heatmap = RoutingHeatmap()
    heatmap.resize(*SIZE)
    heatmap.show()
    heatmap.start(labels, total)
    heatmap.add_steps(np.arange(HEATMAP_STEPS), masks[:HEATMAP_STEPS])
    heatmap.refresh()
    state = {"step": HEATMAP_STEPS}

    def ours() -> None:
        first = state["step"]
        heatmap.add_steps(np.arange(first, first + STEPS_PER_FRAME), masks[first:first + STEPS_PER_FRAME])
        state["step"] += STEPS_PER_FRAME
        heatmap.refresh()
        heatmap.grab()

    # Plain: the unbinned mask [positions x steps] in an ImageItem, with fixed levels like ours.
    image = np.zeros((POSITIONS, total), np.float32)
    image[:, :HEATMAP_STEPS] = masks[:HEATMAP_STEPS].T
    plain = pg.PlotWidget()
    plain.resize(*SIZE)
    plain.show()
    item = pg.ImageItem(axisOrder="row-major")
    plain.addItem(item)
    count = {"n": HEATMAP_STEPS}

    def baseline() -> None:
        first = count["n"]
        image[:, first:first + STEPS_PER_FRAME] = masks[first:first + STEPS_PER_FRAME].T
        count["n"] += STEPS_PER_FRAME
        item.setImage(image[:, :count["n"]], levels=(0, 1))
        plain.grab()

    ours_ms, plain_ms = median_frame_ms(ours, repeats), median_frame_ms(baseline, repeats)
    heatmap.close()
    plain.close()
    print(f"5b. heatmap redraw at {HEATMAP_STEPS} steps: {ours_ms:.1f} ms (plain ImageItem {plain_ms:.1f} ms)")
    return {"id": "5b", "what": f"routing heatmap redraw at {HEATMAP_STEPS // 1000}k steps x {POSITIONS} positions "
                                "(binned to 1000 columns, share bars, colour bar) / plain ImageItem of the unbinned "
                                "mask", "ratio": ours_ms / plain_ms, "target": "<= 1",
            "note": f"{ours_ms:.1f} ms vs {plain_ms:.1f} ms per frame of {STEPS_PER_FRAME} new steps; ours stays at "
                    f"1000 columns while the unbinned image grows by a column per step"}


def idle_gaps_ms(seconds: float) -> np.ndarray:
    meter = StallMeter()
    loop = QEventLoop()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    meter.start()
    loop.exec()
    return meter.stop()


def bench_stalls(workdir: Path, quick: bool) -> list[dict]:
    window = MainWindow(QSettings(str(workdir / "gui-settings.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 900)
    window.show()
    idle_gaps_ms(1)  # the window's first layout and paint are not idle time
    idle = idle_gaps_ms(3 if quick else 10)
    epochs = 2 if quick else 4
    config = TrainConfig(data=str(demo_dataset()), mode="student", arch="resnet18", epochs=epochs, patience=epochs,
                         batch_size=8, image_size=32, device="cpu", out=str(workdir / "gui-runs"),
                         cache_dir=str(workdir / "cache"))
    watched = watch_training(window.controller, config)
    window.close()
    busy = watched.gaps_ms
    idle_worst, idle_p99 = float(idle.max()), float(np.percentile(idle, 99))
    print(f"5c/d. GUI-thread gaps between 10 ms ticks: training worst {watched.worst_stall_ms:.0f} ms, p99 "
          f"{watched.p99_stall_ms:.0f} ms ({watched.steps} steps); idle worst {idle_worst:.0f} ms, p99 {idle_p99:.0f} ms")
    setting = f"resnet18 student run, 32 px, batch 8, {watched.steps} steps, live plots in the main window"
    return [
        {"id": "5c", "what": f"worst GUI-thread gap between 10 ms timer ticks while training / idle ({setting})",
         "ratio": watched.worst_stall_ms / idle_worst,
         "note": f"{watched.worst_stall_ms:.0f} ms vs {idle_worst:.0f} ms"},
        {"id": "5d", "what": "99th-percentile GUI-thread gap between 10 ms timer ticks while training / idle",
         "ratio": watched.p99_stall_ms / idle_p99, "target": "<= 5",
         "note": f"{watched.p99_stall_ms:.1f} ms vs {idle_p99:.1f} ms; {len(busy)} ticks while training"},
    ]


def bench_gui(workdir: Path, quick: bool) -> list[dict]:
    app = QApplication.instance() or QApplication(["bench_gui"])  # noqa: F841 - widgets need it alive
    repeats = 10 if quick else 30
    return [bench_curves(repeats), bench_heatmap(repeats), *bench_stalls(workdir, quick)]
