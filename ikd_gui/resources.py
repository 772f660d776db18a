"""Where the bundled resources (demo images, icons, style) live, installed or in a source checkout."""

from pathlib import Path


def resources_dir() -> Path:
    packaged = Path(__file__).with_name("resources")  # inside a wheel (see pyproject's package-dir)
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "resources"


def demo_dataset() -> Path:
    return resources_dir() / "demo"
