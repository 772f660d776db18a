"""The Experiments view driven as a user would: fill in the form, click Run, wait for the controller. Real
trainings, kept tiny: the demo images at 32 px, one epoch, a 1 schedule x 1 p0 x 1 seed grid (three runs with
the baselines)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt, QThread, QUrl

from ikd_gui.engine.experiments import Manifest
from ikd_gui.gui.main_window import MainWindow
from ikd_gui.gui.widgets.experiments_view import ROW_STATUS, ExperimentsView

pytest.importorskip("matplotlib")

RUN_TIMEOUT_MS = 300_000  # generous: a shared two-core machine; the experiment normally takes half a minute


@pytest.fixture
def view(qtbot):
    widget = ExperimentsView()
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


def fill_in(view: ExperimentsView, data, teacher, out, p0: str = "0.5") -> None:
    """A 1 x 1 x 1 grid through the form's controls, as if typed and picked."""
    view.dataset_field.set_path(str(data))
    view.teacher_field.set_path(str(teacher))
    view.arch_box.setCurrentText("resnet18")
    for name, box in view.schedule_boxes.items():
        box.setChecked(name == "uniform")
    view.p0_edit.setText(p0)
    view.seeds_box.setValue(1)
    view.epochs_box.setValue(1)
    view.image_size_box.setValue(32)
    view.batch_size_box.setValue(16)
    view.output_field.set_path(str(out))
    view.name_edit.setText("grid")


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_an_experiment_lists_every_run_and_opens_its_report(view, qtbot, demo_data, trained, tmp_path):
    fill_in(view, demo_data, trained["teacher"], tmp_path)
    assert view.problem() is None and view.run_button.isEnabled()
    assert view.plan_label.text().startswith("3 runs: 1 seed × (1 IKD configuration + ")
    began = []
    view.controller.run_began.connect(lambda index, total, name, _resuming: began.append((index, total, name)))
    gui_thread = QThread.currentThread()
    finished_in = []
    view.controller.experiment_finished.connect(lambda _: finished_in.append(QThread.currentThread()))

    with qtbot.waitSignal(view.controller.experiment_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, view.run_button)
        assert view.is_running and view.run_button.text() == "Stop"
        assert not view.p0_edit.isEnabled()  # read-only while running
    result = finished.args[0]
    assert result.status == "completed" and finished_in == [gui_thread]
    assert not view.is_running and view.run_button.text() == "Run" and view.p0_edit.isEnabled()

    manifest = Manifest.load(result.directory)
    assert view.row_statuses() == {entry.plan.name: ROW_STATUS[entry.status] for entry in manifest.entries}
    assert [name for _, _, name in began] == [entry.plan.name for entry in manifest.entries]
    assert all(total == 3 for _, total, _ in began)
    for row in range(view.table.rowCount()):
        assert 0.0 <= float(view.table.item(row, 2).text()) <= 1.0  # the best val accuracy of every run
    assert view.overall_progress.value() == view.overall_progress.maximum() == 3

    report = result.directory / "report.html"
    assert report.is_file() and result.report.is_file()
    opened = []
    view.open_url = opened.append  # instead of launching a browser
    assert view.report_button.isEnabled()
    click(qtbot, view.report_button)
    click(qtbot, view.folder_button)
    assert opened == [QUrl.fromLocalFile(str(report)), QUrl.fromLocalFile(str(result.directory))]

    # The same settings again: every run is finished, so each is skipped (with its accuracy) and the report rewritten.
    accuracies = [view.table.item(row, 2).text() for row in range(view.table.rowCount())]
    with qtbot.waitSignal(view.controller.experiment_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, view.run_button)
    assert finished.args[0].status == "completed"
    assert set(view.row_statuses().values()) == {"skipped"}
    assert [view.table.item(row, 2).text() for row in range(view.table.rowCount())] == accuracies


def test_stop_ends_the_experiment_cleanly(view, qtbot, demo_data, trained, tmp_path):
    fill_in(view, demo_data, trained["teacher"], tmp_path)
    with qtbot.waitSignal(view.controller.run_started, timeout=RUN_TIMEOUT_MS):  # the first run's training
        click(qtbot, view.run_button)
    with qtbot.waitSignal(view.controller.experiment_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, view.run_button)  # Stop
        assert view.run_button.text() == "Stopping…" and not view.run_button.isEnabled()
    result = finished.args[0]
    assert result.status == "cancelled" and result.report is None
    assert not view.is_running  # the thread was joined before experiment_finished
    assert view.run_button.text() == "Run" and view.run_button.isEnabled()
    assert not view.report_button.isEnabled()
    statuses = list(view.row_statuses().values())
    assert statuses[0] in ("stopped", "done") and statuses[1:] == ["pending", "pending"]
    assert "Stopped" in view.overall_progress.text()


def test_bad_p0_text_is_an_inline_error_and_disables_run(view, demo_data, tmp_path):
    teacher = tmp_path / "teacher.pt"  # not read until the experiment starts
    teacher.touch()
    fill_in(view, demo_data, teacher, tmp_path, p0="0.1, 0.5")
    assert view.run_button.isEnabled() and view.problem_message.isHidden()
    assert view.plan_label.text().startswith("4 runs")

    view.p0_edit.setText("0.1, half")
    assert not view.run_button.isEnabled() and view.plan_label.text() == ""
    assert view.problem_message.isVisible() and "p0 must be numbers" in view.problem_message.text()
    view.p0_edit.setText("0.1, 1.5")
    assert not view.run_button.isEnabled() and "between 0 and 1" in view.problem_message.text()

    view.p0_edit.setText("0.9")
    assert view.run_button.isEnabled() and view.problem_message.isHidden()


def test_an_engine_error_is_a_one_line_inline_message(view, qtbot, demo_data, tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not a checkpoint")
    fill_in(view, demo_data, teacher, tmp_path)
    crashed = []
    view.controller.experiment_crashed.connect(lambda *args: crashed.append(args))
    with qtbot.waitSignal(view.controller.experiment_finished, timeout=RUN_TIMEOUT_MS) as finished:
        click(qtbot, view.run_button)
    assert finished.args[0].status == "failed" and not crashed
    message = view.problem_message.text()
    assert view.problem_message.isVisible() and "teacher.pt" in message and "\n" not in message
    assert set(view.row_statuses().values()) == {"pending"}  # no run started
    assert view.run_button.isEnabled()  # the settings are kept: correct the cause and run again


def test_closing_the_window_stops_the_experiment_and_keeps_its_settings(qtbot, demo_data, trained, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.confirm_stop_on_close = lambda: True  # answer "stop" without a modal question
    qtbot.addWidget(window)
    window.show()
    assert window.tabs.widget(3) is window.experiments and window.tabs.tabText(3) == "Experiments"
    fill_in(window.experiments, demo_data, trained["teacher"], tmp_path, p0="0.3")
    with qtbot.waitSignal(window.experiments.controller.run_started, timeout=RUN_TIMEOUT_MS):
        click(qtbot, window.experiments.run_button)
    assert window.close()
    assert not window.experiments.is_running  # stopped and its thread joined

    reopened = MainWindow(settings)
    qtbot.addWidget(reopened)
    assert reopened.experiments.spec() == window.experiments.spec()
    assert reopened.experiments.p0_edit.text() == "0.3"
