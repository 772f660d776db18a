"""`ikd-gui` and `python -m ikd_gui`: start the IKD Studio window.

    ikd-gui                          the window, with the last settings
    ikd-gui --demo                   the built-in demo dataset and settings filled in
    ikd-gui --view IMAGE [--checkpoint CKPT]   open an image in the viewer
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Sequence

from .. import __version__

if TYPE_CHECKING:
    from .main_window import MainWindow

APP_NAME = "IKD Studio"
DESKTOP_FILE_NAME = "io.github.ikdstudio.IKDStudio"  # packaging's .desktop file: Wayland finds the icon by it


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The app's options, and the remaining arguments for Qt (such as -platform or -style)."""
    parser = argparse.ArgumentParser(prog="ikd-gui", description=f"{APP_NAME}: interactive knowledge distillation "
                                                                  "for chest X-rays. Everything runs locally.")
    parser.add_argument("--demo", action="store_true", help="open with the built-in demo dataset and settings")
    parser.add_argument("--view", metavar="IMAGE", help="open IMAGE in the viewer tab")
    parser.add_argument("--checkpoint", metavar="CKPT", help="with --view: classify the image with CKPT")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args, qt_args = parser.parse_known_args(argv)
    if args.checkpoint and not args.view:
        parser.error("--checkpoint goes with --view IMAGE")
    return args, qt_args


def build_window(args: argparse.Namespace) -> MainWindow:
    from .main_window import MainWindow  # torch and Qt load here, not for --help and --version

    window = MainWindow()
    if args.demo:
        window.load_demo()
    if args.view:
        window.show_in_viewer(args.view, args.checkpoint)
    return window


def show_unexpected_errors(window: MainWindow) -> None:
    """Route exceptions that escape a slot or an event handler to an error dialog in `window`. PySide6 hands them
    to sys.excepthook and goes on; the default hook prints to a terminal that an app started from a desktop
    launcher does not have, so the user would see an action silently do nothing."""
    def hook(exc_type, exc, tb) -> None:
        sys.__excepthook__(exc_type, exc, tb)  # still printed, for bug reports
        window.report_unexpected_error(exc_type, exc, tb)

    sys.excepthook = hook


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(APP_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    window = build_window(args)
    show_unexpected_errors(window)
    window.show()
    return app.exec()
