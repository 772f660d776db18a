"""Exported models give the checkpoint's own probabilities on real radiographs, with no IKD Studio code."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import torch

from ikd_gui.engine.data import decode_for_network
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.export import METADATA_KEY, export_checkpoint
from ikd_gui.engine.inference import Predictor, image_files
from ikd_gui.export_cli import add_export_parser

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference(trained, demo_data):
    """The student checkpoint, 24 demo radiographs of every class at its resolution (uint8 [N, S, S]), and the
    probabilities `Predictor` (the code path of `ikd predict`) gives them."""
    predictor = Predictor(trained["student"])
    files = image_files([demo_data])[::7]
    pixels = torch.from_numpy(np.stack([decode_for_network(f, predictor.image_size) for f in files]))
    return trained["student"], pixels, predictor.probabilities(pixels), predictor


def exported_input(pixels: torch.Tensor) -> np.ndarray:
    """The documented input of an exported model: float32 [N, 1, S, S] grey in [0, 1]."""
    return (pixels.float() / 255.0).unsqueeze(1).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def check_metadata(metadata: dict, predictor: Predictor) -> None:
    assert metadata["classes"] == predictor.classes
    assert metadata["image_size"] == predictor.image_size
    assert metadata["arch"] == "resnet18"
    assert metadata["input"]["shape"] == ["N", 1, predictor.image_size, predictor.image_size]


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikd")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_through_the_cli_matches_the_checkpoint(reference, tmp_path, capsys):
    checkpoint, pixels, expected, predictor = reference
    out = tmp_path / "student.torchscript"
    out.write_bytes(b"an older export, to be replaced")
    args = export_parser().parse_args(["export", "--checkpoint", str(checkpoint), "--format", "torchscript",
                                       "--out", str(out), "--json"])

    assert args.func(args) == 0

    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # replaced in place, nothing temporary left
    extra = {METADATA_KEY: ""}
    model = torch.jit.load(str(out), _extra_files=extra)
    metadata = json.loads(extra[METADATA_KEY])
    assert metadata == json.loads(capsys.readouterr().out)
    check_metadata(metadata, predictor)
    with torch.inference_mode():
        logits = model(torch.from_numpy(exported_input(pixels))).numpy()
    np.testing.assert_allclose(softmax(logits), expected, atol=TOLERANCE)


def test_onnx_export_matches_the_checkpoint(reference, tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    checkpoint, pixels, expected, predictor = reference
    out = tmp_path / "student.onnx"

    export_checkpoint(checkpoint, "onnx", out)

    metadata = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    check_metadata(metadata, predictor)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"grey": exported_input(pixels)})
    np.testing.assert_allclose(softmax(logits), expected, atol=TOLERANCE)


def test_without_onnx_the_export_explains_what_to_install_and_leaves_nothing(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(IKDError, match=r"pip install 'ikd-gui\[export\]'"):
        export_checkpoint(trained["student"], "onnx", tmp_path / "student.onnx")
    assert list(tmp_path.iterdir()) == []


def test_user_errors_are_one_line_ikd_errors(trained, tmp_path):
    with pytest.raises(IKDError, match="unknown export format"):
        export_checkpoint(trained["student"], "tflite", tmp_path / "model.tflite")
    with pytest.raises(IKDError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "missing.pt", "torchscript", tmp_path / "model.pt")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(IKDError, match="could not write"):
        export_checkpoint(trained["student"], "torchscript", blocker / "model.pt")


def test_cli_refuses_an_unknown_format():
    with pytest.raises(SystemExit):
        export_parser().parse_args(["export", "--checkpoint", "c.pt", "--format", "tflite", "--out", "m"])
