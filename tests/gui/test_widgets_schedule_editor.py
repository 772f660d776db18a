"""The schedule editor: the preview follows the parameters and matches the engine's p(t); fixed-mask toggles."""

from __future__ import annotations

import numpy as np
import pytest

from ikd_gui.engine.hybrid import check_architectures
from ikd_gui.engine.schedules import Schedule, progress
from ikd_gui.gui.widgets.schedule_editor import ScheduleEditor



@pytest.fixture
def editor(qtbot):
    widget = ScheduleEditor()
    qtbot.addWidget(widget)
    widget.set_plan(epochs=4, steps_per_epoch=9)
    return widget


def choose(editor, schedule: str) -> None:
    editor.type_box.setCurrentIndex(editor.type_box.findData(schedule))


def test_preview_follows_p0_and_matches_the_engine(editor, qtbot):
    choose(editor, "linear")
    editor.p0_box.setValue(0.3)
    x, p = editor.preview()
    steps = np.rint(x * 9).astype(int)
    assert p == pytest.approx([Schedule("linear", 0.3).p(progress(s, 36)) for s in steps])
    assert p[0] == pytest.approx(0.3) and p[-1] == pytest.approx(1.0) and x[-1] == pytest.approx(35 / 9)

    with qtbot.waitSignal(editor.changed):
        editor.p0_box.setValue(0.6)
    assert editor.preview()[1][0] == pytest.approx(0.6)
    assert editor.values()["p0"] == pytest.approx(0.6)


def test_preview_changes_with_type_cycles_granularity_and_plan(editor):
    choose(editor, "uniform")
    editor.p0_box.setValue(0.4)
    assert np.allclose(editor.preview()[1], 0.4)

    choose(editor, "review")
    editor.cycles_box.setValue(3)
    p = editor.preview()[1]
    assert int(np.sum(np.diff(p) < 0)) == 2  # three ramps: p drops back to p0 twice

    editor.granularity_box.setCurrentIndex(editor.granularity_box.findData("epoch"))
    x, p = editor.preview()
    assert len(x) == 5 and len(p) == 4  # a step function: one value per epoch, between epoch edges
    assert p == pytest.approx([Schedule("review", 0.4, 3).p(progress(e * 9, 36)) for e in range(4)])

    editor.set_plan(epochs=10, steps_per_epoch=9)
    assert len(editor.preview()[1]) == 10


def test_fixed_schedule_has_one_toggle_per_swap_position(editor):
    choose(editor, "fixed")
    assert editor.problem() and "teacher" in editor.problem()  # positions unknown until a teacher is chosen
    assert len(editor.preview()[0]) == 0

    editor.set_positions(check_architectures("resnet34", "resnet18"))
    names = [button.text() for button in editor.mask_buttons]
    assert names == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert "teacher layer3.3-5" in editor.mask_buttons[5].toolTip()
    assert editor.problem() is None

    editor.mask_buttons[2].click()  # layer2.0 runs the teacher's blocks
    assert editor.values()["mask"] == [1, 1, 0, 1, 1, 1, 1, 1]
    assert np.allclose(editor.preview()[1], 7 / 8)


def test_mask_from_settings_is_kept_until_the_positions_are_known(editor):
    editor.set_values(schedule="fixed", p0=0.5, cycles=2, mask=[1, 0, 1, 1, 1, 1, 1, 0], granularity="step")
    assert editor.values()["mask"] == []
    editor.set_positions(check_architectures("resnet34", "resnet18"))
    assert editor.values()["mask"] == [1, 0, 1, 1, 1, 1, 1, 0]
