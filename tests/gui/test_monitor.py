"""Monitor mode: a run folder that another process is writing is followed live, reading only what is new, until
its summary says the run ended."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from ikd_gui.engine.runs import list_runs, read_config, read_metrics, read_routing
from ikd_gui.gui.main_window import MainWindow
from ikd_gui.gui.widgets.run_view import RunView

RUN_TIMEOUT_MS = 300_000  # a shared two-core machine; the run itself takes seconds


@pytest.fixture
def window(qtbot, tmp_path):
    main = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(main)
    main.show()
    return main


def test_a_run_of_another_process_is_followed_until_it_ends(window, qtbot, tmp_path, demo_data):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "ikd_gui.cli", "train", "--data", str(demo_data), "--mode", "student",
               "--epochs", "3", "--image-size", "32", "--batch-size", "16", "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: bool(list_runs(out)), timeout=RUN_TIMEOUT_MS)  # the folder exists: training starts
        run_dir = list_runs(out)[0]
        window.tabs.setCurrentWidget(window.history)  # as File > Open run… does
        assert window.history.open_run(run_dir)
        view = window.history.run_view
        assert view.is_following and view.follow_label.isVisible()
        assert view.follow_label.text().endswith("waiting for the first step") or view.steps_read > 0
        first_steps, first_epochs = view.steps_read, len(view.curves.epoch_values("val_loss")[0])
        assert first_epochs < 3
        qtbot.waitUntil(lambda: view.steps_read > first_steps, timeout=RUN_TIMEOUT_MS)
        assert view.is_following and f"step {view.steps_read}, epoch " in view.follow_label.text()
        _, err = process.communicate(timeout=RUN_TIMEOUT_MS / 1000)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    qtbot.waitUntil(lambda: not view.is_following, timeout=5000)  # the next poll reads the final summary
    assert not view.follow_label.isVisible()
    rows = read_metrics(run_dir)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert list(view.curves.epoch_values("val_loss")[0]) == [1, 2, 3]
    assert view.curves.epoch_values("val_loss")[1] == pytest.approx([row["val_loss"] for row in rows])
    assert view.steps_read == len(read_routing(run_dir)[0]) == 3 * 9
    assert view.summary._status.text() == "Completed"
    assert "completed" in window.history.run_list.selectedItems()[0].text()  # the list shows the final status


def append(path, text: str) -> None:
    with open(path, "a") as stream:
        stream.write(text)


def test_an_ikd_run_is_followed_row_by_row_with_its_position_labels(qtbot, tmp_path, trained):
    """The writer is played by the test, a few lines at a time, from a finished IKD run's logs."""
    source, run = trained["run"], tmp_path / "followed"
    run.mkdir()
    shutil.copy(source / "config.json", run)
    routing = (source / "routing.csv").read_text().splitlines(keepends=True)
    metrics = (source / "metrics.csv").read_text()
    steps, _, _, masks = read_routing(source)
    labels = read_config(source)["position_labels"]
    assert len(labels) == 8 and len(steps) == 9

    view = RunView()
    qtbot.addWidget(view)
    view.load_run(run)  # nothing logged yet, no summary: followed
    assert view.is_following and view.steps_read == 0
    assert view.heatmap.position_labels == labels  # from config.json, before any routing row

    append(run / "routing.csv", "".join(routing[:5]) + routing[5][:4])  # header, 4 steps, half a line
    view.poll()
    view.heatmap.refresh()
    assert view.steps_read == 4 and np.array_equal(view.heatmap.image(), masks[:4].T)
    assert view.heatmap.describe_at(0.5, 7.5).startswith(f"step 0 · {labels[7]}: ")

    redraw_timers = (view.curves._redraw_timer, view.heatmap._redraw_timer)
    qtbot.waitUntil(lambda: not any(timer.isActive() for timer in redraw_timers))  # the new rows are drawn
    view.poll()  # nothing new: nothing is redrawn
    assert not any(timer.isActive() for timer in redraw_timers)

    append(run / "routing.csv", routing[5][4:] + "".join(routing[6:]))
    append(run / "metrics.csv", metrics)
    shutil.copy(source / "summary.json", run / "summary.json.tmp")
    summary = (run / "summary.json.tmp").read_text().replace('"status": "completed"', '"status": "running"')
    (run / "summary.json").write_text(summary)
    view.poll()
    view.heatmap.refresh()
    assert view.is_following and view.steps_read == 9 and np.array_equal(view.heatmap.image(), masks.T)
    assert list(view.curves.epoch_values("val_loss")[0]) == [1]
    assert view.curves.routing_values()[2] == pytest.approx(masks.mean(axis=1))

    # A resume drops the log rows after its checkpoint by rewriting the file: the view starts over.
    truncated = run / "routing.csv.new"
    truncated.write_text("".join(routing[:4]))
    os.replace(truncated, run / "routing.csv")
    view.poll()
    assert view.is_following and view.steps_read == 3

    append(run / "routing.csv", "".join(routing[4:]))
    os.replace(run / "summary.json.tmp", run / "summary.json")  # replaced atomically, as the engine does
    ended = []
    view.followed_run_ended.connect(lambda: ended.append(True))
    view.poll()
    assert ended and not view.is_following and view.steps_read == 9
    assert view.summary._status.text() == "Completed"
