"""`ikd predict` and the viewer give the same probabilities for the same image and checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ikd_gui.cli import main
from ikd_gui.engine.data import read_grey
from ikd_gui.engine.inference import image_files
from ikd_gui.gui.widgets.viewer import ViewerWidget

PREDICTION_TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(qtbot):
    widget = ViewerWidget()
    qtbot.addWidget(widget, before_close_func=lambda w: w.shutdown())
    return widget


def cli_probabilities(paths: list[Path], checkpoint: Path, capsys) -> dict[Path, dict]:
    capsys.readouterr()
    assert main(["predict", *map(str, paths), "--json", "--checkpoint", str(checkpoint)]) == 0
    return {Path(entry["file"]): entry for entry in json.loads(capsys.readouterr().out)}


def assert_viewer_matches_cli(viewer, qtbot, paths: list[Path], checkpoint: Path, capsys) -> None:
    expected = cli_probabilities(paths, checkpoint, capsys)
    with qtbot.waitSignal(viewer.checkpoint_changed, timeout=PREDICTION_TIMEOUT_MS):
        viewer.set_checkpoint(str(checkpoint))
    for path in paths:
        with qtbot.waitSignal(viewer.prediction_ready, timeout=PREDICTION_TIMEOUT_MS) as blocker:
            viewer.open_image(str(path))
        shown = blocker.args[0]
        cli = expected[path]
        assert shown is viewer.classification and shown.path == str(path)
        assert list(shown.classes) == list(cli["probabilities"])
        np.testing.assert_allclose(shown.probabilities, list(cli["probabilities"].values()), rtol=0, atol=1e-6)
        assert shown.label == cli["label"]
        assert viewer.prediction_label.text().startswith(cli["label"])
        assert [bar.value() for bar in viewer.probability_bars] == [round(1000 * p) for p in shown.probabilities]


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_demo_images(viewer, qtbot, capsys, trained, demo_data, role):
    root = demo_data / "chest_xray" / "train"
    paths = image_files([root / "NORMAL"])[:2] + image_files([root / "PNEUMONIA"])[:2]
    assert_viewer_matches_cli(viewer, qtbot, paths, trained[role], capsys)


def test_high_bit_depth_and_transparent_png(viewer, qtbot, capsys, trained, demo_data, tmp_path):
    grey = read_grey(image_files([demo_data / "chest_xray" / "train" / "NORMAL"])[0])
    deep = tmp_path / "deep.png"
    Image.fromarray((grey.astype(np.uint16) * 200 + 1000)).save(deep)
    transparent = tmp_path / "transparent.png"
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :40] = 0
    Image.fromarray(np.dstack([grey, grey, grey, alpha])).save(transparent)
    assert_viewer_matches_cli(viewer, qtbot, [deep, transparent], trained["student"], capsys)


def test_full_resolution_and_dicom(viewer, qtbot, capsys, trained, shared_data):
    samples = shared_data / "chest_xray_fullres_sample"
    paths = [image_files([samples / "NORMAL"])[0], image_files([samples / "PNEUMONIA"])[0],
             *image_files([shared_data / "dicom"])]
    assert_viewer_matches_cli(viewer, qtbot, paths, trained["student"], capsys)
