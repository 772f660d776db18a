"""The `ikd-gui` entry point and the window around the runs: flags, settings, shortcuts, tooltips, palettes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QSize, QStandardPaths
from PySide6.QtGui import QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QSlider,
                               QTabBar, QWidget)

from ikd_gui.gui.app import build_window, parse_args
from ikd_gui.gui.main_window import MainWindow
from ikd_gui.resources import demo_dataset



@pytest.fixture(autouse=True)
def user_settings_elsewhere(tmp_path):
    """`QSettings()` without arguments (what the app uses) writes under tmp_path, for a test organisation."""
    QStandardPaths.setTestModeEnabled(True)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qt-settings"))
    QCoreApplication.setOrganizationName("IKD Studio tests")
    QCoreApplication.setApplicationName("IKD Studio tests")
    return tmp_path / "qt-settings"


@pytest.fixture
def open_window(qtbot):
    def make(argv=()):
        window = build_window(parse_args(list(argv))[0])
        window.confirm_stop_on_close = lambda: True
        qtbot.addWidget(window)
        window.show()
        return window
    return make


def test_flags_are_parsed_and_qt_options_passed_through():
    args, qt_args = parse_args(["--view", "a.png", "--checkpoint", "b.pt", "-style", "fusion"])
    assert (args.view, args.checkpoint, args.demo) == ("a.png", "b.pt", False)
    assert qt_args == ["-style", "fusion"]
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "b.pt"])


def test_python_m_ikd_gui_is_the_app():
    result = subprocess.run([sys.executable, "-m", "ikd_gui", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--demo" in result.stdout and "--view" in result.stdout


def test_demo_flag_fills_in_the_demo(open_window, user_settings_elsewhere):
    window = open_window(["--demo"])
    config = window.setup_panel.config()
    assert config.data == str(demo_dataset()) and config.mode == "ikd" and config.image_size == 64
    assert window.tabs.currentWidget() is window.train_page
    assert window.settings.fileName().startswith(str(user_settings_elsewhere))


def test_view_flag_opens_the_image_in_the_viewer(open_window, qtbot, demo_data):
    image = sorted((demo_data / "chest_xray" / "train" / "NORMAL").iterdir())[0]
    window = open_window(["--view", str(image)])
    if window.viewer is None:
        pytest.skip("this build has no viewer")
    assert window.tabs.currentWidget() is window.viewer
    qtbot.waitUntil(lambda: image.name in window.viewer.info_label.text(), timeout=60_000)


def test_settings_persist_between_sessions(qtbot, demo_data, tmp_path):
    settings_file = str(tmp_path / "persist.ini")
    first = MainWindow(QSettings(settings_file, QSettings.Format.IniFormat))
    qtbot.addWidget(first)
    first.resize(640, 480)  # within the offscreen screen, which restoring clamps to
    first.setup_panel.set_dataset(str(demo_data))
    first.setup_panel.epochs_box.setValue(7)
    first.setup_panel.output_field.set_path(str(tmp_path / "my-runs"))
    first.close()

    second = MainWindow(QSettings(settings_file, QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    config = second.setup_panel.config()
    assert (config.data, config.epochs, config.out) == (str(demo_data), 7, str(tmp_path / "my-runs"))
    assert second.size() == QSize(640, 480)
    assert second.history.folder_field.path() == str(tmp_path / "my-runs")


def test_main_actions_have_shortcuts(open_window):
    window = open_window()
    shortcuts = {action.text(): [s.toString() for s in action.shortcuts()]
                 for action in (window.open_dataset_action, window.start_action, window.stop_action,
                                window.demo_action, window.open_run_action)}
    assert shortcuts == {"Open dataset…": [QKeySequence(QKeySequence.StandardKey.Open).toString()],
                         "Train": ["Ctrl+R", "F5"], "Stop": ["Esc", "Ctrl+."], "Try the demo": ["Ctrl+D"],
                         "Open run…": ["Ctrl+Shift+O"]}


def test_every_control_of_the_train_and_history_tabs_has_a_tooltip(open_window):
    window = open_window(["--demo"])
    controls = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QSlider)
    missing = []
    for page in (window.train_page, window.history):
        for widget in page.findChildren(QWidget):
            parent = widget.parentWidget()
            qt_internal = (widget.objectName().startswith(("qt_", "_q_"))
                           or isinstance(parent, (QTabBar, QLineEdit, QAbstractSpinBox)))
            if not isinstance(widget, controls) or qt_internal:
                continue  # parts Qt builds inside its own widgets: tab scroll arrows, clear buttons, editors
            if not (widget.toolTip() or parent.toolTip()):
                missing.append(f"{type(widget).__name__} {widget.objectName()!r} in {type(parent).__name__}")
    assert missing == []


def test_plots_follow_a_dark_palette(open_window, qtbot):
    window = open_window()
    area = window.run_view.heatmap._area
    light = area.backgroundBrush().color()
    dark = QPalette(QColor(45, 45, 48))
    original = QApplication.palette()
    try:
        QApplication.setPalette(dark)
        qtbot.waitUntil(lambda: area.backgroundBrush().color() == dark.color(QPalette.ColorRole.Base))
        assert area.backgroundBrush().color() != light
    finally:
        QApplication.setPalette(original)
