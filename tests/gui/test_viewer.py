"""The viewer and the folder classifier on real radiographs and trained checkpoints, offscreen."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage, QMouseEvent
from PySide6.QtWidgets import QApplication

from ikd_gui.engine.data import read_grey
from ikd_gui.engine.inference import Predictor, image_files
from ikd_gui.engine.training import CancelToken
from ikd_gui.engine.inference import folder_labels, run_folder_classification
from ikd_gui.gui.widgets.viewer import WINDOW_DRAG_PIXELS, ViewerWidget

TIMEOUT_MS = 60_000
# pyqtgraph drops mouse moves closer together than its rate limit (100 per second by default).
MOUSE_EVENT_INTERVAL_MS = 15


@pytest.fixture
def viewer(qtbot):
    widget = ViewerWidget()
    qtbot.addWidget(widget, before_close_func=lambda w: w.shutdown())
    widget.resize(1100, 750)
    return widget


@pytest.fixture(scope="module")
def xray(demo_data) -> Path:
    return image_files([demo_data / "chest_xray" / "train" / "NORMAL"])[0]


def open_and_wait(viewer, qtbot, path, signal=None) -> None:
    with qtbot.waitSignal(signal or viewer.image_opened, timeout=TIMEOUT_MS):
        viewer.open_image(str(path))


def rendered_grey(viewer) -> np.ndarray:
    """The picture the image item draws (levels and lookup table applied), at image resolution."""
    image = viewer.image_item.getPixmap().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width()].copy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(a, float).ravel(), np.asarray(b, float).ravel())[0, 1])


def send_mouse(widget, kind: QEvent.Type, pos: QPoint, button=Qt.MouseButton.NoButton,
               buttons=Qt.MouseButton.NoButton) -> None:
    local = QPointF(pos)
    QApplication.sendEvent(widget, QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons,
                                               Qt.KeyboardModifier.NoModifier))


def right_drag(qtbot, widget, start: QPoint, end: QPoint, steps: int = 8) -> None:
    right = Qt.MouseButton.RightButton
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, right, right)
    for i in range(1, steps + 1):
        qtbot.wait(MOUSE_EVENT_INTERVAL_MS)
        send_mouse(widget, QEvent.Type.MouseMove, start + (end - start) * (i / steps), buttons=right)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, right)


def viewport_point(viewer, x: float, y: float) -> QPoint:
    return viewer.graphics.mapFromScene(viewer.view_box.mapViewToScene(QPointF(x, y)))


# ---------------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("name, photometric_inverted", [("RG1_J2KI.dcm", True), ("1.3.6*.dcm", False)])
def test_dicom_grey_scale_and_window(viewer, qtbot, shared_data, name, photometric_inverted):
    import pydicom

    path = next((shared_data / "dicom").glob(name))
    open_and_wait(viewer, qtbot, path)
    dataset = pydicom.dcmread(path)
    raw = dataset.pixel_array
    assert viewer.image.inverted == viewer.display_inverted == photometric_inverted
    if "WindowCenter" in dataset:  # the file's VOI window is the starting window
        centre, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
        assert viewer.window == (centre - width / 2, centre + width / 2)

    sign = -1 if photometric_inverted else 1
    shown = rendered_grey(viewer)
    assert shown.shape == raw.shape
    assert sign * correlation(shown, raw) > 0.9
    assert sign * correlation(viewer.image.grey, raw) > 0.9  # the network sees the same grey scale

    viewer.set_inverted(True)
    assert -sign * correlation(rendered_grey(viewer), raw) > 0.9


def test_16_bit_png_keeps_its_precision(viewer, qtbot, xray, tmp_path):
    grey = read_grey(xray)
    levels = grey.astype(np.uint16) * 200 + 1000  # 1000..52000: needs 16 bits
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    open_and_wait(viewer, qtbot, path)
    assert np.array_equal(viewer.image.values, levels)
    assert viewer.window == (float(levels.min()), float(levels.max()))
    assert "16-bit" in viewer.image.description
    assert correlation(rendered_grey(viewer), grey) > 0.99

    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.fit()
    x, y = 100, 60
    send_mouse(viewer.graphics.viewport(), QEvent.Type.MouseMove, viewport_point(viewer, x + 0.5, y + 0.5))
    assert viewer.pixel_label.text().startswith(f"x {x}  y {y}  value {levels[y, x]}")


def test_rgba_png_loads_with_transparency_as_black(viewer, qtbot, xray, tmp_path):
    grey = read_grey(xray)
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :50] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([grey, grey, grey, alpha])).save(path)
    open_and_wait(viewer, qtbot, path)
    assert np.array_equal(viewer.image.grey[:, 50:], grey[:, 50:])
    assert not viewer.image.grey[:, :50].any()


@pytest.mark.parametrize("name, content", [
    ("garbage.png", b"this is not an image" * 10),
    ("empty.jpeg", b""),
    ("truncated.jpeg", None),
    ("garbage.dcm", b"not a DICOM file" * 10),
    ("no-pixels.dcm", b"\0" * 128 + b"DICM"),
])
def test_unreadable_file_gives_a_message_not_a_crash(viewer, qtbot, xray, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(xray.read_bytes()[:1500] if content is None else content)
    with qtbot.waitSignal(viewer.image_failed, timeout=TIMEOUT_MS) as blocker:
        viewer.open_image(str(path))
    assert name in blocker.args[0]
    assert viewer.message.isVisibleTo(viewer) and name in viewer.message.text()
    assert viewer.image is None

    open_and_wait(viewer, qtbot, xray)  # and the viewer carries on
    assert not viewer.message.isVisibleTo(viewer)


def test_unusable_checkpoint_gives_a_message(viewer, qtbot, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(viewer.checkpoint_failed, timeout=TIMEOUT_MS) as blocker:
        viewer.set_checkpoint(str(path))
    assert "model.pt" in blocker.args[0]
    assert viewer.message.isVisibleTo(viewer)


def test_dropped_file_opens(viewer, qtbot, xray):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(xray))])
    with qtbot.waitSignal(viewer.image_opened, timeout=TIMEOUT_MS) as blocker:
        viewer.dropEvent(QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                    Qt.KeyboardModifier.NoModifier))
    assert blocker.args == [str(xray)]


# ---------------------------------------------------------------------------------------------------------
# Display controls


def test_window_level_zoom_and_shortcuts(viewer, qtbot, xray):
    open_and_wait(viewer, qtbot, xray)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.activateWindow()
    qtbot.waitActive(viewer)
    viewport = viewer.graphics.viewport()
    viewer.graphics.setFocus()
    lowest, highest = viewer.image.value_range
    step = (highest - lowest) / WINDOW_DRAG_PIXELS

    low, high = viewer.window
    centre = viewport.rect().center()
    right_drag(qtbot, viewport, centre, centre + QPoint(80, 0))
    assert viewer.window[1] - viewer.window[0] == pytest.approx(high - low + 80 * step, rel=0.05)
    low, high = viewer.window
    right_drag(qtbot, viewport, centre, centre + QPoint(0, 40))  # down: a higher level, a darker picture
    assert sum(viewer.window) / 2 == pytest.approx((low + high) / 2 + 40 * step, rel=0.05)

    qtbot.keyClick(viewer.graphics, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert viewer.window == pytest.approx(viewer.image.percentile_window(1.0, 99.0))
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_I)
    assert viewer.inverted and viewer.display_inverted
    assert correlation(rendered_grey(viewer), viewer.image.grey) < -0.9

    ratio = viewer.graphics.devicePixelRatioF()
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_1)
    assert viewer.view_box.viewPixelSize()[0] * ratio == pytest.approx(1.0, rel=0.02)
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_Plus)
    assert viewer.view_box.viewPixelSize()[0] * ratio == pytest.approx(0.8, rel=0.02)
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_F)
    view = viewer.view_box.viewRect()
    assert view.contains(viewer.image_item.boundingRect().adjusted(0.5, 0.5, -0.5, -0.5))
    assert min(view.width() / viewer.image.width, view.height() / viewer.image.height) == pytest.approx(1.0, abs=0.02)

    qtbot.keyClick(viewer.graphics, Qt.Key.Key_R)
    assert not viewer.inverted and viewer.window == viewer.image.window


def test_prediction_with_grad_cam_overlay(viewer, qtbot, trained, demo_data):
    path = image_files([demo_data / "chest_xray" / "train" / "PNEUMONIA"])[0]
    viewer.set_checkpoint(str(trained["student"]))
    open_and_wait(viewer, qtbot, path, viewer.prediction_ready)
    result = viewer.classification
    assert result.cam.shape == (viewer.image.height, viewer.image.width)
    assert result.cam_class == result.predicted
    assert viewer.cam_class_combo.currentIndex() == result.predicted

    assert not viewer.cam_item.isVisible()
    viewer.set_cam_visible(True)
    assert viewer.cam_item.isVisible() and viewer.cam_action.isChecked()
    viewer.set_cam_opacity(0.3)
    assert viewer.cam_item.opacity() == pytest.approx(0.3)

    other = 1 - result.predicted
    with qtbot.waitSignal(viewer.prediction_ready, timeout=TIMEOUT_MS) as blocker:
        viewer.set_cam_class(other)
    moved = blocker.args[0]
    assert moved.cam_class == other
    np.testing.assert_array_equal(moved.probabilities, result.probabilities)
    assert np.abs(moved.cam - result.cam).mean() > 0.05
    assert np.array_equal(viewer.cam_item.image, moved.cam)


# ---------------------------------------------------------------------------------------------------------
# Folders


@pytest.fixture
def labelled_folder(demo_data, tmp_path) -> Path:
    """Four real images per class in CLASS/ sub-folders, one unlabelled image and one unreadable file."""
    root = tmp_path / "labelled"
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True)
        for path in image_files([demo_data / "chest_xray" / "train" / name])[-4:]:
            shutil.copy(path, root / name / path.name)
    shutil.copy(image_files([demo_data])[0], root / "unlabelled.jpeg")
    (root / "NORMAL" / "broken.png").write_bytes(b"not a png")
    return root


def test_folder_classification_matches_independent_predictions(viewer, qtbot, trained, labelled_folder, tmp_path):
    viewer.set_checkpoint(str(trained["student"]))
    viewer.show()
    qtbot.waitExposed(viewer)
    folder = viewer.folder_view
    with qtbot.waitSignal(folder.classification_finished, timeout=TIMEOUT_MS) as blocker:
        viewer.classify_folder(str(labelled_folder))
    summary = blocker.args[0]
    assert viewer.tabs.currentWidget() is folder
    assert (summary.count, summary.unreadable, summary.unlabelled) == (10, 1, 1)

    predictor = Predictor(trained["student"])
    classes = predictor.classes
    expected = np.zeros((2, 2), int)
    cells: dict[tuple[int, int], list[tuple[float, str]]] = {}
    for true_class, name in enumerate(classes):
        for p in predictor.predict_files(image_files([labelled_folder / name])):
            if p.error is None:
                predicted = classes.index(p.label)
                expected[true_class, predicted] += 1
                cells.setdefault((true_class, predicted), []).append((max(p.probabilities.values()), p.file))
    assert folder.confusion_matrix == expected.tolist()
    shown = [[int(folder.matrix_table.item(r, c).text()) for c in range(2)] for r in range(2)]
    assert shown == expected.tolist()
    assert summary.metrics["accuracy"] == pytest.approx(np.trace(expected) / expected.sum())

    # A click on the fullest cell lists its images, most confident first.
    cell = max(cells, key=lambda key: len(cells[key]))
    table = folder.matrix_table
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualItemRect(table.item(*cell)).center())
    assert folder.visible_paths() == [path for _, path in sorted(cells[cell], reverse=True)]
    assert folder.filter_bar.isVisible()

    # Every row is exported, with the probabilities the table shows.
    csv_path = tmp_path / "predictions.csv"
    folder.export_csv(str(csv_path))
    with open(csv_path, newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 10
    by_file = {row["file"]: row for row in exported}
    for confidence, path in cells[cell]:
        assert float(by_file[path]["confidence"]) == pytest.approx(confidence, abs=1e-6)
        assert by_file[path]["folder_class"] == classes[cell[0]]
    assert by_file[str(labelled_folder / "NORMAL" / "broken.png")]["error"]

    # A click on a row opens that image in the viewer tab.
    first = folder.table.visualRect(folder.proxy.index(0, 0)).center()
    with qtbot.waitSignal(viewer.image_opened, timeout=TIMEOUT_MS) as opened:
        qtbot.mouseClick(folder.table.viewport(), Qt.MouseButton.LeftButton, pos=first)
    assert opened.args == [folder.visible_paths()[0]]
    assert viewer.tabs.currentWidget() is viewer.image_page


def test_folder_labels_follow_the_checkpoint_classes(tmp_path):
    files = [tmp_path / "normal" / "a.jpeg", tmp_path / "PNEUMONIA" / "person1_virus_2.jpeg",
             tmp_path / "PNEUMONIA" / "person3_bacteria_4.jpeg", tmp_path / "top.jpeg", tmp_path / "other" / "b.jpeg"]
    assert folder_labels(files, tmp_path, ["NORMAL", "PNEUMONIA"], "binary") == [0, 1, 1, None, None]
    assert folder_labels(files, tmp_path, ["NORMAL", "BACTERIA", "VIRUS"], "three-class") == [0, 2, 1, None, None]


def test_cancelled_folder_job_stops_before_the_next_chunk(trained, labelled_folder):
    cancel = CancelToken()
    cancel.cancel()
    summary = run_folder_classification(Predictor(trained["student"]), labelled_folder, cancel,
                                        lambda rows, done, total: pytest.fail("no chunk should run"))
    assert summary.cancelled and summary.count == 0 and summary.metrics is None
