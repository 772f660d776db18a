"""Render the viewer (with its Grad-CAM overlay) and the folder view offscreen, to docs/images/.

    python docs/viewer_screenshots.py [--checkpoint CKPT] [--image IMAGE] [--folder FOLDER]

Without --checkpoint, a resnet18 is first trained for two epochs at 128 px on the bundled demo radiographs
(a few minutes on a laptop CPU): 128 px gives layer4 a 4 x 4 map, a more telling overlay than 64 px's 2 x 2.
The image defaults to a full-resolution radiograph of ../shared/data when it is there, else a demo image;
the folder defaults to the demo set, whose class folders give the confusion matrix.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEvent, QEventLoop, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ikd_gui.engine.inference import image_files  # noqa: E402
from ikd_gui.engine.training import TrainConfig, train  # noqa: E402
from ikd_gui.gui.widgets.viewer import ViewerWidget  # noqa: E402
from ikd_gui.resources import demo_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = REPO.parent / "shared" / "data" / "chest_xray_fullres_sample"
OUT = REPO / "docs" / "images"
SIZE = (1280, 800)


def wait_for(signal, timeout_s: float = 300.0) -> list:
    """Run the event loop until `signal` fires; its arguments."""
    loop, received = QEventLoop(), []
    signal.connect(lambda *args: (received.extend(args), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    if not received:
        raise TimeoutError(f"no {signal} within {timeout_s:.0f} s")
    return received


def settle(ms: int = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def train_screenshot_model(out: Path) -> Path:
    print("training a resnet18 at 128 px on the demo images for the screenshots…", file=sys.stderr)
    result = train(TrainConfig(data=str(demo_dataset()), mode="student", arch="resnet18", epochs=2, batch_size=16,
                               image_size=128, out=str(out), name="screenshots", seed=0, cache=False))
    return result.best_checkpoint


def default_image() -> Path:
    if SHARED_SAMPLES.is_dir():
        return image_files([SHARED_SAMPLES / "PNEUMONIA"])[0]
    return image_files([demo_dataset() / "chest_xray" / "train" / "PNEUMONIA"])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--image")
    parser.add_argument("--folder", default=str(demo_dataset()))
    args = parser.parse_args()

    app = QApplication(sys.argv[:1])  # noqa: F841 - must live while widgets do
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or str(train_screenshot_model(Path(scratch)))
        viewer = ViewerWidget()
        viewer.setWindowTitle("IKD Studio viewer")
        viewer.resize(*SIZE)
        viewer.show()
        viewer.set_checkpoint(checkpoint)
        viewer.open_image(args.image or str(default_image()))
        wait_for(viewer.prediction_ready)
        viewer.set_cam_visible(True)
        viewer.set_cam_opacity(0.5)
        viewer.fit()
        settle()
        # A cursor over the right lung, so that the status line shows its pixel readout.
        image = viewer.image
        where = viewer.graphics.mapFromScene(viewer.view_box.mapViewToScene(QPointF(image.width * 0.3,
                                                                                    image.height * 0.45)))
        viewport = viewer.graphics.viewport()
        QApplication.sendEvent(viewport, QMouseEvent(QEvent.Type.MouseMove, QPointF(where),
                                                     QPointF(viewport.mapToGlobal(where)), Qt.MouseButton.NoButton,
                                                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
        settle()
        OUT.mkdir(parents=True, exist_ok=True)
        viewer.grab().save(str(OUT / "viewer.png"))

        viewer.classify_folder(args.folder)
        summary = wait_for(viewer.folder_view.classification_finished)[0]
        if summary.metrics:
            # Show the images of the largest off-diagonal cell: what a user would look at first.
            matrix = summary.metrics["confusion_matrix"]
            errors = [(matrix[r][c], r, c) for r in range(len(matrix)) for c in range(len(matrix)) if r != c]
            count, true_class, predicted = max(errors)
            if count:
                viewer.folder_view.show_confusion_cell(true_class, predicted)
        settle()
        viewer.grab().save(str(OUT / "folder.png"))
        viewer.shutdown()
    print(f"wrote {OUT / 'viewer.png'} and {OUT / 'folder.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
