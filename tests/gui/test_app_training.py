"""Real trainings driven through the main window as a user would: fill in the setup panel, click Train, wait
for the controller. Tiny runs: the demo images at 64 px, batch 16, one epoch unless a test needs more.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from ikd_gui.engine.demo import demo_teacher_path
from ikd_gui.engine.models import load_checkpoint
from ikd_gui.engine.runs import list_runs, read_metrics, read_routing, read_summary
from ikd_gui.gui.main_window import MainWindow
from ikd_gui.resources import demo_dataset

RUN_TIMEOUT_MS = 300_000  # generous: a shared two-core machine; these runs normally take seconds



@pytest.fixture
def window(qtbot, tmp_path):
    main = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    main.confirm_stop_on_close = lambda: True  # answer "stop" without a modal question
    qtbot.addWidget(main)
    main.show()
    main.setup_panel.output_field.set_path(str(tmp_path / "runs"))
    return main


@pytest.fixture
def own_demo_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own: the demo's teacher is cached there, or not, as the test needs."""
    monkeypatch.setenv("IKD_CACHE_DIR", str(tmp_path / "cache" / "pixels"))
    return demo_teacher_path()


def set_up_run(panel, data, mode: str = "student", teacher=None, epochs: int = 1) -> None:
    """Fill in the setup panel through its controls: 64 px, batch 16, resnet18 on the CPU."""
    panel.set_dataset(str(data))  # what the folder picker and drag and drop call
    panel.mode_box.setCurrentIndex(panel.mode_box.findData(mode))
    panel.arch_box.setCurrentText("resnet18")
    if teacher is not None:
        panel.teacher_field.set_path(str(teacher))  # as if picked: the checkpoint is read and checked
    panel.epochs_box.setValue(epochs)
    panel.batch_size_box.setValue(16)
    panel.image_size_box.setValue(64)
    panel.device_box.setCurrentIndex(panel.device_box.findData("cpu"))


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_an_ikd_run_fills_the_curves_heatmap_and_summary(window, qtbot, demo_data, trained):
    panel = window.setup_panel
    set_up_run(panel, demo_data, mode="ikd", teacher=trained["teacher"])
    editor = panel.schedule_editor
    editor.type_box.setCurrentIndex(editor.type_box.findData("linear"))
    editor.p0_box.setValue(0.3)
    assert panel.problem() is None

    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.start_button)
        assert window.controller.is_running and window.stop_button.isEnabled()
        assert not panel.epochs_box.isEnabled()  # read-only while running
    result = finished.args[0]
    assert result.status == "completed"
    assert not window.controller.is_running and panel.epochs_box.isEnabled() and window.start_button.isEnabled()

    steps, _, scheduled, masks = read_routing(result.run_dir)
    assert len(steps) == 144 // 16 and scheduled[0] == pytest.approx(0.3)
    heatmap, curves = window.run_view.heatmap, window.run_view.curves
    heatmap.refresh()
    assert heatmap.image().shape == (8, len(steps))  # one column per step
    assert np.array_equal(heatmap.image(), masks.T)  # exactly the routing the engine logged
    assert heatmap.describe_at(0.5, 7.5).startswith("step 0 · layer4.1 <-> teacher layer4.2: ")
    assert list(curves.step_losses()[0]) == list(steps)
    assert curves.routing_values()[1] == pytest.approx(scheduled)
    assert curves.routing_values()[2] == pytest.approx(masks.mean(axis=1))
    rows = read_metrics(result.run_dir)
    assert curves.epoch_values("val_loss")[1] == pytest.approx([r["val_loss"] for r in rows])
    assert window.progress.value() == len(steps) and window.progress.format().startswith("Completed")

    summary = window.run_view.summary
    assert window.run_view.tabs.currentIndex() == 1 and summary.checkpoint() == str(result.best_checkpoint)
    assert summary.validation.confusion_values() == read_summary(result.run_dir)["best_val"]["confusion_matrix"]
    assert str(result.run_dir) in window.history.recent()
    if window.viewer is not None:
        click(qtbot, summary.open_viewer_button)
        assert window.tabs.currentWidget() is window.viewer


def test_history_redraws_saved_runs_and_compares_them(window, trained):
    student_run, teacher_run = trained["run"], trained["teacher"].parent.parent
    history = window.history
    assert history.open_run(student_run)
    steps, _, _, masks = read_routing(student_run)
    assert np.array_equal(history.run_view.heatmap.image(), masks.T)
    # Row labels are rebuilt from the teacher checkpoint named in the run's config.
    assert history.run_view.heatmap.describe_at(0.5, 0.5).startswith("step 0 · layer1.0 <-> teacher layer1.0-1: ")
    assert history.run_view.summary.checkpoint() == str(trained["student"])

    assert history.open_run(teacher_run)
    history.select_runs([student_run, teacher_run])
    assert history.comparison.curve_count() == 2
    assert not history.open_run(student_run.parent) and "not a run folder" in history.error.text()


def test_stop_ends_the_run_within_a_batch_and_keeps_the_last_complete_epoch(window, qtbot, demo_data):
    set_up_run(window.setup_panel, demo_data, epochs=2)
    with qtbot.waitSignal(window.controller.epoch_ended, timeout=RUN_TIMEOUT_MS):
        click(qtbot, window.start_button)
    thread = window.controller._thread
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.stop_button)
    result = finished.args[0]
    assert result.status == "cancelled"
    assert thread.isFinished() and not window.controller.is_running  # joined before run_finished
    steps, _, _, _ = read_routing(result.run_dir)
    assert 9 <= len(steps) < 18  # stopped during the second epoch
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert last.raw["training"]["epoch"] == 1
    assert [row["epoch"] for row in read_metrics(result.run_dir)] == [1]
    assert window.run_view.summary._status.text() == "Stopped by you"


def test_closing_during_a_run_asks_then_stops_and_joins(window, qtbot, demo_data, tmp_path):
    set_up_run(window.setup_panel, demo_data, epochs=3)
    with qtbot.waitSignal(window.controller.batches_ended, timeout=RUN_TIMEOUT_MS):
        click(qtbot, window.start_button)
    thread = window.controller._thread

    window.confirm_stop_on_close = lambda: False  # the user answers "no": the window and the run go on
    window.close()
    assert window.isVisible() and window.controller.is_running

    window.confirm_stop_on_close = lambda: True
    window.close()
    assert not window.isVisible() and not window.controller.is_running and thread.isFinished()
    run_dir = list_runs(tmp_path / "runs")[0]
    assert read_summary(run_dir)["status"] == "cancelled"


def test_a_failing_run_shows_its_cause_and_the_window_stays_usable(window, qtbot, demo_data, tmp_path):
    one_class = tmp_path / "one-class" / "NORMAL"
    one_class.mkdir(parents=True)
    for image in sorted((demo_data / "chest_xray" / "train" / "NORMAL").iterdir())[:6]:
        shutil.copy(image, one_class)
    panel = window.setup_panel
    set_up_run(panel, one_class.parent)
    assert panel.problem() is None  # the folder scans; only training finds that one class is not enough

    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.start_button)
    assert finished.args[0].status == "failed"
    dialog = window.error_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.text().startswith("training needs images of at least two classes") and "\n" not in dialog.text()
    assert "Traceback" in dialog.detailedText() and "IKDError" in dialog.detailedText()
    dialog.accept()
    assert window.start_button.isEnabled() and panel.epochs_box.isEnabled()

    panel.set_dataset(str(demo_data))
    with qtbot.waitSignal(window.controller.run_started, timeout=RUN_TIMEOUT_MS):
        click(qtbot, window.start_button)
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.stop_action.trigger()
    assert finished.args[0].status == "cancelled"


def test_start_explains_what_is_missing(window, qtbot):
    click(qtbot, window.start_button)
    assert not window.controller.is_running
    assert window.start_problem.text().startswith("Choose a dataset folder")


def test_the_demo_with_a_cached_teacher_starts_the_ikd_run_at_once(window, qtbot, trained, own_demo_cache):
    own_demo_cache.parent.mkdir(parents=True)
    shutil.copy(trained["teacher"], own_demo_cache)
    click(qtbot, window.demo_button)
    config = window.setup_panel.config()
    assert config.data == str(demo_dataset()) and config.teacher == str(own_demo_cache)

    with qtbot.waitSignal(window.controller.run_started, timeout=RUN_TIMEOUT_MS) as started:
        click(qtbot, window.start_button)
    assert started.args[0].config["mode"] == "ikd" and started.args[0].config["teacher"] == str(own_demo_cache)
    qtbot.waitUntil(lambda: window.run_view.heatmap.image().shape[1] > 0, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.stop_button)
    assert finished.args[0].status == "cancelled"


def test_the_first_demo_run_trains_the_teacher_then_the_ikd_run(window, qtbot, own_demo_cache):
    window.load_demo()
    assert window.setup_panel.demo_teacher_pending()
    modes = []
    window.controller.run_started.connect(lambda event: modes.append(event.config["mode"]))
    with qtbot.waitSignal(window.controller.run_started, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda event: event.config["mode"] == "ikd") as started:
        click(qtbot, window.start_button)
    assert modes == ["teacher", "ikd"]
    assert own_demo_cache.is_file() and started.args[0].config["teacher"] == str(own_demo_cache)
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.stop_button)
    assert finished.args[0].status == "cancelled"


def test_stopping_the_demo_teacher_caches_nothing(window, qtbot, own_demo_cache):
    window.load_demo()
    with qtbot.waitSignal(window.controller.run_started, timeout=RUN_TIMEOUT_MS) as started:
        click(qtbot, window.start_button)
    assert started.args[0].config["mode"] == "teacher"
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, window.stop_button)
    assert finished.args[0].status == "cancelled" and "demo's teacher" in finished.args[0].message
    assert not own_demo_cache.exists()
