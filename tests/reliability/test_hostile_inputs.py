"""Untrusted checkpoints and hostile images, through the engine, training and `ikd predict`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from helpers import tiny_config
from faults import EXPECTED, IGNORED, write_fault_set
from ikd_gui.cli import main as cli
from ikd_gui.engine import data, training
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.inference import Predictor
from ikd_gui.engine.models import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


class CreatesMarker:
    """Unpickling this runs `touch marker`: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def malicious_checkpoint(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": resnet18(num_classes=2).state_dict(), "hook": CreatesMarker(marker)}, path)
    # Sanity: an unsafe load really would run the code.
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(pickle.dumps(CreatesMarker(tmp_path / "proof")))
    pickle.loads(legacy.read_bytes())
    assert (tmp_path / "proof").exists()
    return path, marker


def test_a_checkpoint_that_runs_code_is_refused_everywhere(malicious_checkpoint, demo_data, tmp_path, capsys):
    path, marker = malicious_checkpoint
    with pytest.raises(IKDError, match="refused to load"):
        load_checkpoint(path)
    with pytest.raises(IKDError, match="refused to load"):
        Predictor(path)
    with pytest.raises(IKDError, match="refused to load"):
        training.train(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(path)))
    assert cli(["info", str(path)]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_every_checkpoint_load_in_the_package_is_weights_only():
    offenders = []
    for source in (REPO / "ikd_gui").rglob("*.py"):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{source.relative_to(REPO)}:{number}")
    assert offenders == []


@pytest.fixture
def hostile_dataset(tmp_path, demo_data):
    """A class-per-folder dataset: real NORMAL and PNEUMONIA images plus the whole fault set, and an empty class."""
    root = tmp_path / "hostile"
    sources = {c: sorted((demo_data / "chest_xray" / "train" / c).glob("*.jpeg"))[:24] for c in ("NORMAL", "PNEUMONIA")}
    for cls, files in sources.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / cls / f.name)
    write_fault_set(root / "NORMAL", sources["NORMAL"][0])
    (root / "EMPTY").mkdir()
    (root / "notes.txt").write_text("a stray file at the top")
    return root


def test_every_fault_is_decoded_or_skipped_by_name(hostile_dataset):
    scan = data.scan_dataset(hostile_dataset)
    assert scan.classes == ["NORMAL", "PNEUMONIA"]  # the empty folder is no class
    assert any("holds no images" in reason for _, reason in scan.skipped)
    listed = {s.path.name for s in scan.splits["train"]}
    assert not listed & set(IGNORED)
    assert "loop.jpeg" not in listed and any(p.name == "loop.jpeg" for p, _ in scan.skipped)
    for name, expected in EXPECTED.items():
        if name == "loop.jpeg":
            continue
        path = hostile_dataset / "NORMAL" / name
        if expected == "decoded":
            assert data.decode_for_network(path, 64).shape == (64, 64), name
        else:
            with pytest.raises(data.ImageDecodeError) as info:
                data.read_grey(path)
            assert name in str(info.value)


def test_training_proceeds_past_bad_files_and_names_them(hostile_dataset, tmp_path):
    messages = []

    class Collect(training.TrainingObserver):
        def on_message(self, level, text):
            messages.append((level, text))

    result = training.train(tiny_config(hostile_dataset, tmp_path, image_size=32, val_fraction=0.2), Collect())
    assert result.status == "completed"
    warnings = " ".join(text for level, text in messages if level == "warning")
    for name, expected in EXPECTED.items():
        if expected == "skipped":
            assert name in warnings, name
    summary = json.loads((result.run_dir / "summary.json").read_text())
    decoded_normals = 24 + sum(1 for e in EXPECTED.values() if e == "decoded")
    assert summary["counts"]["train"]["NORMAL"] + summary["counts"]["val"]["NORMAL"] == decoded_normals


def test_a_dataset_with_one_class_stops_before_training(tmp_path, demo_data):
    root = tmp_path / "one-class" / "NORMAL"
    root.mkdir(parents=True)
    for f in sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:10]:
        shutil.copy(f, root / f.name)
    with pytest.raises(IKDError, match="at least two classes") as info:
        training.train(tiny_config(root.parent, tmp_path))
    assert "\n" not in str(info.value)
    assert not any(tmp_path.glob("*/config.json"))  # no run folder was started


def test_ikd_predict_handles_the_fault_set(tmp_path, demo_data, capsys):
    folder = tmp_path / "faults"
    write_fault_set(folder, sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0])
    torch.save(resnet18(num_classes=2).state_dict(), tmp_path / "model.pt")
    code = cli(["predict", str(folder), "--checkpoint", str(tmp_path / "model.pt"), "--json"])
    out = capsys.readouterr().out
    results = {Path(r["file"]).name: r for r in json.loads(out)}
    assert code == 1  # some files failed, and the exit status says so
    for name, expected in EXPECTED.items():
        if name == "loop.jpeg":
            assert name not in results  # a broken link is not an image file
            continue
        assert (results[name]["label"] is not None) == (expected == "decoded"), name
        if expected == "skipped":
            assert name in results[name]["error"]
    assert not set(results) & set(IGNORED)
