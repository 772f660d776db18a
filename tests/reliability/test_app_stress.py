"""The app under stress: Stop within a batch, closing at any moment of a run, an exception in a slot, and a long
run with live plots (memory and GUI-thread stalls bounded). The long soak itself is benchmarks/soak.py; its
numbers are in docs/reliability.md."""

from __future__ import annotations

import sys
import time

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QPushButton

from helpers import tiny_config
from ikd_gui.engine.runs import read_routing
from ikd_gui.gui import worker
from ikd_gui.gui.app import show_unexpected_errors
from ikd_gui.gui.main_window import MainWindow
from ikd_gui.gui.probes import enlarged_demo_dataset, watch_training

RUN_TIMEOUT_MS = 300_000  # a shared two-core machine; these runs normally take seconds

# The in-suite soak: 2 copies of the demo (288 training images), 36 steps per epoch at batch 8, 9 epochs.
SOAK_COPIES, SOAK_EPOCHS, SOAK_STEPS = 2, 9, 324
# Bounds, generous for a loaded shared machine (measured there: see docs/reliability.md).
MAX_MEMORY_GROWTH_MB = 64  # from the end of epoch 3 to the end of epoch 9
MAX_WORST_STALL_MS = 2000
MAX_P99_STALL_MS = 250


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make() -> MainWindow:
        window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        window.confirm_stop_on_close = lambda: True
        qtbot.addWidget(window)
        window.show()
        return window
    return make


def start(qtbot, window, config) -> None:
    window.setup_panel.set_config(config)
    qtbot.mouseClick(window.start_button, Qt.MouseButton.LeftButton)


@pytest.fixture
def batch_times(monkeypatch):
    """When each batch ended, as the training thread saw it (time.perf_counter())."""
    times: list[float] = []
    on_batch = worker._SignalObserver.on_batch

    def record(observer, event):
        times.append(time.perf_counter())
        on_batch(observer, event)

    monkeypatch.setattr(worker._SignalObserver, "on_batch", record)
    return times


@pytest.mark.parametrize("moment", ["batches_ended", "epoch_ended"])
def test_stop_ends_the_run_within_one_batch(make_window, qtbot, demo_data, tmp_path, batch_times, moment):
    window = make_window()
    config = tiny_config(demo_data, tmp_path / "runs", epochs=3, batch_size=8, image_size=32)
    with qtbot.waitSignal(getattr(window.controller, moment), timeout=RUN_TIMEOUT_MS):
        start(qtbot, window, config)
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        stopped_at = time.perf_counter()
        qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].status == "cancelled"
    after_stop = sum(t > stopped_at for t in batch_times)
    assert after_stop <= 1  # only the batch in progress when Stop was pressed
    assert len(read_routing(finished.args[0].run_dir)[0]) == len(batch_times)


@pytest.mark.parametrize("moment", ["preparing", "run_started", "batches_ended", "epoch_ended"])
def test_closing_at_any_moment_of_a_run_joins_its_thread(make_window, qtbot, demo_data, tmp_path, moment):
    window = make_window()
    config = tiny_config(demo_data, tmp_path / "runs", epochs=2, batch_size=8, image_size=32)
    if moment == "preparing":
        start(qtbot, window, config)
    else:
        with qtbot.waitSignal(getattr(window.controller, moment), timeout=RUN_TIMEOUT_MS):
            start(qtbot, window, config)
    thread = window.controller._thread
    assert thread is not None and thread.isRunning()
    window.close()  # Qt warnings, such as a thread destroyed while running, fail the test
    assert not window.isVisible() and not window.controller.is_running and thread.isFinished()


def test_an_exception_in_a_slot_shows_a_dialog_and_the_app_goes_on(make_window, qtbot, monkeypatch):
    window = make_window()
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after the test
    show_unexpected_errors(window)

    def broken_slot() -> None:
        raise ValueError("the slot failed\nsecond line of the message")

    button = QPushButton("Broken", window)
    button.clicked.connect(broken_slot)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = window.error_dialog
    assert dialog is not None and dialog.isVisible() and dialog.windowTitle() == "Unexpected error"
    assert dialog.text() == "ValueError: the slot failed"
    assert "Traceback" in dialog.detailedText() and "broken_slot" in dialog.detailedText()

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # again, while the dialog is open: logged, no new dialog
    assert window.error_dialog is dialog
    assert window.log.toPlainText().count("Unexpected error: ValueError: the slot failed") == 2
    dialog.accept()
    qtbot.waitUntil(lambda: window.error_dialog is None)
    assert window.isVisible() and window.start_button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.error_dialog is not None and window.error_dialog.isVisible()


def test_a_long_run_with_live_plots_keeps_memory_and_stalls_bounded(make_window, tmp_path):
    window = make_window()
    data = enlarged_demo_dataset(tmp_path / "data", SOAK_COPIES)
    config = tiny_config(data, tmp_path / "runs", epochs=SOAK_EPOCHS, patience=SOAK_EPOCHS, batch_size=8,
                         image_size=32, device="cpu")
    watched = watch_training(window.controller, config, warm_up_epochs=2, timeout_s=RUN_TIMEOUT_MS / 1000)
    print(f"soak: {watched.steps} steps in {watched.seconds:.0f} s, memory after epochs 3-{SOAK_EPOCHS} "
          f"{[round(m) for m in watched.memory_mb]} MB, worst stall {watched.worst_stall_ms:.0f} ms, "
          f"p99 {watched.p99_stall_ms:.0f} ms")
    assert watched.result.status == "completed" and watched.steps == SOAK_STEPS
    assert window.run_view.curves.step_losses()[0].size == SOAK_STEPS  # drawn live, every step
    assert len(watched.memory_mb) == SOAK_EPOCHS - 2
    assert watched.memory_growth_mb <= MAX_MEMORY_GROWTH_MB
    assert watched.worst_stall_ms <= MAX_WORST_STALL_MS and watched.p99_stall_ms <= MAX_P99_STALL_MS
