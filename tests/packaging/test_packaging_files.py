"""The PyInstaller spec, .desktop file, AppStream metainfo and icons are consistent and valid (nothing is built)."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "ikd-studio.spec"
ICONS = REPO / "resources" / "icons"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def spec_settings() -> dict:
    """The spec's top-level assignments of plain literals (APP_ID, EXECUTABLES, EXCLUDES, ...)."""
    settings = {}
    for node in ast.parse(SPEC.read_text(), filename=str(SPEC)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                settings[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # computed at build time (paths, PyInstaller objects)
                pass
    return settings


APP_ID = spec_settings()["APP_ID"]
DESKTOP_FILE = PACKAGING / f"{APP_ID}.desktop"
METAINFO_FILE = PACKAGING / f"{APP_ID}.metainfo.xml"


def first_statement_under_main_guard(script: Path) -> ast.stmt:
    tree = ast.parse(script.read_text(), filename=str(script))
    (guard,) = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    return guard.body[0]


def test_spec_entry_scripts_call_freeze_support_first_and_reach_existing_mains():
    executables = spec_settings()["EXECUTABLES"]
    targets = {"ikd-gui": "ikd_gui.gui.app", "ikd": "ikd_gui.cli"}
    assert {name for _, name, _ in executables} == set(targets)
    for script, name, console in executables:
        path = PACKAGING / script
        assert ast.unparse(first_statement_under_main_guard(path)) == "multiprocessing.freeze_support()"
        assert f"from {targets[name]} import main" in path.read_text()
        assert console == (name == "ikd")  # the window gets no console window on Windows
    from ikd_gui import cli
    from ikd_gui.gui import app

    assert callable(cli.main) and callable(app.main)


def test_spec_executables_are_named_like_the_pip_scripts():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_scripts = {**project["scripts"], **project["gui-scripts"]}
    assert {name for _, name, _ in spec_settings()["EXECUTABLES"]} == set(pip_scripts)


def test_spec_excludes_unused_qt_modules_and_no_module_the_code_imports():
    excludes = set(spec_settings()["EXCLUDES"])
    assert {"PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtNetwork", "PyQt5", "PyQt6"} <= excludes
    source = "\n".join(p.read_text() for p in (REPO / "ikd_gui").rglob("*.py"))
    dotted = re.findall(r"PySide6\.(Qt\w+)", source)  # import PySide6.QtX, from PySide6.QtX import ...
    listed = [name.strip() for names in re.findall(r"from PySide6 import ([\w, ]+)", source)
              for name in names.split(",")]
    used_qt = {f"PySide6.{name}" for name in dotted + listed}
    assert used_qt, "the app imports no PySide6 module? the pattern is out of date"
    assert not used_qt & excludes
    # pyqtgraph imports these (the OpenGL ones from its plot curves, by importlib); QtSvg renders the SVG icon.
    needed = {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets",
              "PySide6.QtSvg"}
    assert not needed & excludes


def test_app_uses_the_desktop_file_name():
    from ikd_gui.gui import app

    # Wayland shows the window's icon only when desktopFileName() matches the installed .desktop file.
    assert getattr(app, "DESKTOP_FILE_NAME", None) == APP_ID


def run_validator(*command: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_desktop_file_passes_desktop_file_validate():
    result = run_validator("desktop-file-validate", str(DESKTOP_FILE))
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout + result.stderr


def test_metainfo_passes_appstreamcli_validate():
    result = run_validator("appstreamcli", "validate", "--no-net", str(METAINFO_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_desktop_file_has_the_required_keys():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP_FILE, encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Name"] == spec_settings()["APP_NAME"]
    assert entry["Exec"].split()[0] == "ikd-gui"
    assert entry["Icon"] == APP_ID  # icons are installed under the application id
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";") and "Science" in entry["Categories"].split(";")


def test_metainfo_has_the_required_elements():
    root = ElementTree.parse(METAINFO_FILE).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == DESKTOP_FILE.name
    assert root.find("launchable").get("type") == "desktop-id"
    for element in ("metadata_license", "project_license", "name", "summary", "description", "content_rating"):
        assert root.find(element) is not None, element
    from ikd_gui import __version__

    assert root.find("releases/release").get("version") == __version__


def test_icons_exist_at_every_size():
    svg = ElementTree.parse(ICONS / "ikd-studio.svg").getroot()
    assert svg.get("viewBox") == "0 0 512 512"
    for size in ICON_SIZES:
        with Image.open(ICONS / f"ikd-studio-{size}.png") as image:
            assert image.format == "PNG" and image.size == (size, size) and image.mode == "RGBA"
            low, high = image.getchannel("A").getextrema()
            assert (low, high) == (0, 255)  # transparent corners around an opaque drawing
