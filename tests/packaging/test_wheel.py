"""`pip install .` gives working `ikd` and `ikd-gui` that find every bundled resource.

The wheel is built offline, without build isolation (the test venv's setuptools), from a copy of the source
tree, so that neither the repository nor stale `build/` output of an earlier build takes part.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a clean checkout would not have (.gitignore) and what a build must not depend on.
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                           ".pytest_cache", "runs")
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("setuptools") is None:  # venvs of Python 3.12+ come without it
        pytest.skip("building the wheel offline needs setuptools in this environment (the test extra has it)")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_IN_A_CHECKOUT)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--quiet", "--wheel-dir", str(root / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = (root / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed on its own into a folder (`pip install --target`): no editable finder involved."""
    target = tmp_path_factory.mktemp("installed")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                              "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return target


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if not n.endswith("/")}


def test_wheel_holds_every_resource(wheel):
    resources = REPO / "resources"
    expected = {"ikd_gui/resources/" + p.relative_to(resources).as_posix() for p in resources.rglob("*") if p.is_file()}
    packaged = {n for n in names(wheel) if n.startswith("ikd_gui/resources/")}
    assert packaged == expected
    assert sum(n.endswith(".jpeg") and "/demo/" in n for n in packaged) >= 100
    assert "ikd_gui/resources/icons/ikd-studio.svg" in packaged
    assert {f"ikd_gui/resources/icons/ikd-studio-{s}.png" for s in ICON_SIZES} <= packaged


def test_wheel_holds_every_module_and_nothing_else(wheel):
    in_wheel = names(wheel)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "ikd_gui").rglob("*.py")}
    assert modules <= in_wheel  # a sub-package missing from pyproject's package list shows up here
    top_levels = {n.split("/")[0] for n in in_wheel}
    assert top_levels == {"ikd_gui", next(t for t in top_levels if t.endswith(".dist-info"))}


def test_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (entry_points_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(entry_points_file).decode())
    assert dict(entry_points["console_scripts"]) == {"ikd": "ikd_gui.cli:main"}
    assert dict(entry_points["gui_scripts"]) == {"ikd-gui": "ikd_gui.gui.app:main"}


def test_installed_package_finds_its_own_resources(installed):
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    report = ("from ikd_gui.resources import resources_dir, demo_dataset; "
              "print(resources_dir()); print(len(list(demo_dataset().rglob('*.jpeg'))))")
    found = subprocess.run([sys.executable, "-c", report], capture_output=True, text=True, env=environment,
                           timeout=60, cwd=installed.parent)
    assert found.returncode == 0, found.stderr
    folder, demo_images = found.stdout.split()
    assert Path(folder) == installed / "ikd_gui" / "resources"  # the packaged copy, not the source checkout
    assert int(demo_images) >= 100


def test_installed_scripts_start(installed):
    from ikd_gui import __version__

    environment = {**os.environ, "PYTHONPATH": str(installed), "QT_QPA_PLATFORM": "offscreen"}
    scripts = installed / "bin"  # where pip --target puts them on Linux and macOS
    for script in ("ikd", "ikd-gui"):
        run = subprocess.run([str(scripts / script), "--version"], capture_output=True, text=True,
                             env=environment, timeout=120, cwd=installed.parent)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"{script} {__version__}"
