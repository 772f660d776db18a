"""The setup panel: dataset scan and summary, checkpoint checks with inline messages, config round trip."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from ikd_gui.engine.demo import demo_config
from ikd_gui.engine.models import build_model, checkpoint_payload, save_atomically
from ikd_gui.engine.training import TrainConfig
from ikd_gui.gui.widgets.setup_panel import SetupPanel



@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained but well-formed checkpoints: what matters here is their architecture, not their weights."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for arch in ("resnet34", "resnet50"):
        paths[arch] = folder / f"{arch}.pt"
        meta = {"arch": arch, "classes": ["NORMAL", "PNEUMONIA"], "image_size": 64}
        save_atomically(checkpoint_payload(build_model(arch, 2), meta), paths[arch])
    paths["text"] = folder / "notes.pt"
    paths["text"].write_text("these are not weights\n")
    return paths


@pytest.fixture
def panel(qtbot):
    widget = SetupPanel()
    qtbot.addWidget(widget)
    return widget


def choose_mode(panel, mode: str) -> None:
    panel.mode_box.setCurrentIndex(panel.mode_box.findData(mode))


def test_choosing_a_dataset_shows_what_it_holds(panel, qtbot, demo_data):
    assert panel.problem().startswith("Choose a dataset folder")
    with qtbot.waitSignal(panel.changed):
        panel.dataset_field.set_path(str(demo_data))  # as the folder picker does
    assert panel.scan().classes == ["NORMAL", "PNEUMONIA"]
    assert "kermany layout" in panel.dataset_summary.description()
    assert "train: 160 images (NORMAL 80, PNEUMONIA 80)" in panel.dataset_summary.description()
    qtbot.waitUntil(lambda: panel.dataset_summary.thumbnail_count() == 8)  # 4 per class, loaded one at a time
    # 160 images, 10% held out for validation, batch 32: the preview plans 144 // 32 steps per epoch.
    assert panel.schedule_editor._steps_per_epoch == 144 // panel.batch_size_box.value()

    panel.set_dataset(str(demo_data / "no-such-folder"))
    assert panel.scan() is None and "not found" in panel.dataset_error.text()
    assert panel.problem() == panel.dataset_error.text()


def test_a_folder_dropped_on_the_panel_becomes_the_dataset(panel, demo_data):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_data))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(drop)
    assert panel.dataset_field.path() == str(demo_data) and panel.scan() is not None


def test_a_file_that_is_not_a_checkpoint_is_refused_inline(panel, demo_data, checkpoints):
    panel.set_dataset(str(demo_data))
    choose_mode(panel, "ikd")
    panel.set_teacher(str(checkpoints["text"]))
    assert not panel.teacher_error.isHidden()
    assert panel.teacher_error.text().startswith("notes.pt:")
    assert panel.problem() == f"Teacher: {panel.teacher_error.text()}"


def test_a_teacher_that_cannot_be_paired_is_refused_inline(panel, demo_data, checkpoints):
    panel.set_dataset(str(demo_data))
    choose_mode(panel, "ikd")
    panel.set_teacher(str(checkpoints["resnet50"]))
    assert "a resnet50 teacher cannot train a resnet18 student" in panel.teacher_error.text()
    assert panel.problem().startswith("Teacher: a resnet50 teacher")
    assert panel.schedule_editor.mask_buttons == []

    choose_mode(panel, "kd")  # classic KD needs no block pairing
    assert panel.teacher_error.isHidden() and panel.problem() is None
    choose_mode(panel, "ikd")
    panel.arch_box.setCurrentText("resnet50")  # a resnet50 student pairs with a resnet50 teacher
    assert panel.teacher_error.isHidden() and len(panel.schedule_editor.mask_buttons) == 16


def test_a_good_teacher_gives_the_schedule_its_swap_positions(panel, demo_data, checkpoints):
    panel.set_dataset(str(demo_data))
    choose_mode(panel, "ikd")
    panel.set_teacher(str(checkpoints["resnet34"]))
    assert panel.teacher_error.isHidden() and panel.problem() is None
    assert "resnet34 · NORMAL, PNEUMONIA · trained at 64 px" == panel._teacher_info.text()
    assert [b.text() for b in panel.schedule_editor.mask_buttons][-1] == "layer4.1"

    panel.set_init_checkpoint(str(checkpoints["resnet34"]))  # starting weights must fit the student
    assert "holds resnet34 weights; the network to train is a resnet18" in panel.init_error.text()
    panel.arch_box.setCurrentText("resnet34")
    assert panel.init_error.isHidden()


def test_config_round_trip_and_read_only(panel, qtbot, demo_data, tmp_path, checkpoints):
    config = TrainConfig(data=str(demo_data), mode="ikd", arch="resnet18", teacher=str(checkpoints["resnet34"]),
                         schedule="review", p0=0.25, cycles=3, granularity="epoch", epochs=7, batch_size=8,
                         image_size=96, optimizer="sgd", lr=0.003, seed=5, device="cpu", amp=False,
                         out=str(tmp_path), kd_alpha=0.5)
    panel.set_config(config)
    assert panel.config() == dataclasses.replace(config, mask=[1] * 8)  # fields without a control are kept too

    panel.set_read_only(True)
    assert not panel.epochs_box.isEnabled() and not panel.dataset_field.isEnabled()
    panel.set_read_only(False)
    assert panel.epochs_box.isEnabled()


def test_the_demo_without_its_teacher_is_ready_to_start(panel, tmp_path, monkeypatch):
    monkeypatch.setenv("IKD_CACHE_DIR", str(tmp_path / "cache" / "pixels"))  # no cached demo teacher here
    panel.set_config(demo_config(tmp_path / "runs"))
    assert panel.demo_teacher_pending() and panel.problem() is None
    assert panel.config().name == "demo-ikd"

    other = tmp_path / "data"
    shutil.copytree(panel.config().data, other)
    panel.set_dataset(str(other))
    assert not panel.demo_teacher_pending() and "needs a teacher checkpoint" in panel.problem()
    assert panel.config().name == ""  # the demo's run name described the demo's data only
