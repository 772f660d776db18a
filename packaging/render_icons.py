"""Render resources/icons/ikd-studio.svg to the PNG sizes desktops and installers ask for.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

Uses QtSvg from PySide6-Essentials, so it needs nothing beyond the project's own dependencies. Run it after
editing the SVG and commit the PNGs: packaging, the wheel and the app read the rendered files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SOURCE = ICONS / "ikd-studio.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # hicolor theme sizes; 256 and 512 feed Windows and macOS icons


def png_path(size: int) -> Path:
    return ICONS / f"ikd-studio-{size}.png"


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # QPainter needs a Gui application
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        print(f"cannot read {SOURCE}", file=sys.stderr)
        return 1
    for size in SIZES:
        if not render(renderer, size).save(str(png_path(size))):
            print(f"cannot write {png_path(size)}", file=sys.stderr)
            return 1
        print(png_path(size))
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
