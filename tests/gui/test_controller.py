"""The training controller on its own: signal order in the GUI thread, the thread joined before `run_finished`,
one run at a time, and a stop while the images are still being decoded."""

from __future__ import annotations

import pytest
from helpers import tiny_config
from PySide6.QtCore import QThread

from ikd_gui.gui.controller import TrainingController

RUN_TIMEOUT_MS = 300_000



@pytest.fixture
def controller(qtbot):
    controller = TrainingController()
    yield controller
    controller.shutdown()



def test_events_arrive_in_order_in_the_gui_thread(controller, qtbot, demo_data, tmp_path):
    events = []
    gui_thread = QThread.currentThread()

    def record(name):
        def slot(*args):
            events.append((name, QThread.currentThread() is gui_thread, controller.is_running))
        return slot

    for name in ("run_started", "batches_ended", "epoch_ended", "run_finished"):
        getattr(controller, name).connect(record(name))
    with qtbot.waitSignal(controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        controller.start(tiny_config(demo_data, tmp_path))
        with pytest.raises(RuntimeError):
            controller.start(tiny_config(demo_data, tmp_path))  # one run at a time
    assert finished.args[0].status == "completed"
    names = [name for name, _, _ in events]
    assert names[0] == "run_started" and names[-2:] == ["epoch_ended", "run_finished"]
    assert set(names[1:-2]) == {"batches_ended"}
    assert all(in_gui for _, in_gui, _ in events)
    assert events[-1][2] is False  # the thread is joined before run_finished is emitted


def test_stop_while_decoding_ends_the_run_without_a_folder(controller, qtbot, demo_data, tmp_path):
    config = tiny_config(demo_data, tmp_path / "runs", cache=False)  # no cache: every image is decoded
    with qtbot.waitSignal(controller.preparation_progressed, timeout=RUN_TIMEOUT_MS):
        controller.start(config)
    with qtbot.waitSignal(controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        controller.stop()
    result = finished.args[0]
    assert result.status == "cancelled" and result.run_dir is None and "prepared" in result.message
    assert not (tmp_path / "runs").exists()
