"""Export a checkpoint to ONNX or TorchScript, for use without this project (or without Python).

The exported model has the preprocessing baked in, so a user needs nothing from IKD Studio to run it:

    input  "grey"    float32 [N, 1, S, S], the radiograph as grey values in [0, 1] (uint8 pixels / 255),
                     resized to S x S as IKD Studio does (bilinear, aspect ratio not kept),
                     S = the checkpoint's image size (metadata `image_size`)
    output "logits"  float32 [N, K], one column per class in the order of metadata `classes`;
                     softmax over dim 1 gives the probabilities `ikd predict` reports

N is free. The metadata (a JSON string under `ikd_export` — ONNX: a `metadata_props` entry; TorchScript: an
extra file of the archive, read with `torch.jit.load(path, _extra_files={"ikd_export": ""})`) repeats this
contract together with the architecture, classes and normalisation of the source checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .errors import IKDError
from .models import Checkpoint, load_checkpoint
from .preprocess import Normalisation

EXPORT_FORMATS = ("onnx", "torchscript")
METADATA_KEY = "ikd_export"
ONNX_OPSET = 17


class GreyClassifier(nn.Module):
    """A classifier that takes grey [N, 1, S, S] in [0, 1]: the normalisation of `preprocess.normalise`, then
    the network. Mean and std are buffers so that they travel with the exported graph as constants."""

    def __init__(self, network: nn.Module, normalisation: Normalisation):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(normalisation.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(normalisation.std).view(1, 3, 1, 1))

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return self.network((grey.expand(-1, 3, -1, -1) - self.mean) / self.std)


def export_metadata(checkpoint: Checkpoint, normalisation: Normalisation) -> dict:
    size = checkpoint.image_size
    return {
        "format": "ikd-studio-export/1",
        "source_checkpoint": checkpoint.path.name,
        "arch": checkpoint.arch,
        "classes": list(checkpoint.classes),
        "image_size": size,
        "input": {"name": "grey", "dtype": "float32", "shape": ["N", 1, size, size],
                  "values": "grey in [0, 1] (uint8 / 255), resized to image_size x image_size"},
        "output": {"name": "logits", "dtype": "float32", "shape": ["N", len(checkpoint.classes)],
                   "values": "logits; softmax over dim 1 gives the class probabilities"},
        "normalisation": {**normalisation.to_dict(), "applied": "inside the exported model"},
    }


def export_checkpoint(checkpoint_path: str | os.PathLike, format: str, out_path: str | os.PathLike) -> dict:
    """Write the checkpoint as `format` ("onnx" or "torchscript") to `out_path`; return the export metadata.

    The file appears complete or not at all: it is written next to `out_path` and renamed into place.
    """
    if format not in EXPORT_FORMATS:
        raise IKDError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    checkpoint = load_checkpoint(checkpoint_path)
    normalisation = Normalisation.from_dict(checkpoint.meta.get("normalisation"))
    model = GreyClassifier(checkpoint.build(), normalisation).eval()
    metadata = export_metadata(checkpoint, normalisation)
    example = torch.rand(2, 1, checkpoint.image_size, checkpoint.image_size)
    writer = _write_onnx if format == "onnx" else _write_torchscript
    _write_atomically(Path(out_path), lambda path: writer(model, example, metadata, path))
    return metadata


@contextmanager
def _quiet_deprecations():
    """torch deprecates torch.jit and the TorchScript-based ONNX exporter in favour of torch.export; they are
    still what produces files that libtorch and ONNX runtimes load, so the warnings would only alarm users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _write_torchscript(model: nn.Module, example: torch.Tensor, metadata: dict, path: Path) -> None:
    with torch.no_grad(), _quiet_deprecations():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: json.dumps(metadata)})


def _write_onnx(model: nn.Module, example: torch.Tensor, metadata: dict, path: Path) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise IKDError("ONNX export needs the onnx package: pip install 'ikd-gui[export]'") from exc
    # The TorchScript-based exporter (dynamo=False) needs only `onnx`; the dynamo one also needs onnxscript.
    with _quiet_deprecations():
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["grey"], output_names=["logits"],
                          dynamic_axes={"grey": {0: "N"}, "logits": {0: "N"}})
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(graph, str(path))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    # A private folder next to `path` (so the rename stays on one file system); the writers create the file
    # themselves, so it gets the user's usual permissions rather than a temporary file's 0600.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as folder:
            partial = Path(folder) / path.name
            write(partial)
            os.replace(partial, path)
    except OSError as exc:
        raise IKDError(f"could not write {path} ({exc.strerror or exc})") from exc
