"""Architectures, safe checkpoint reading and writing, and compatibility checks.

A checkpoint is untrusted input: every read goes through `read_checkpoint_file`, which uses
`torch.load(weights_only=True)`, so a file whose pickle would run code is refused instead of executed.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torchvision import models as tv_models

from .errors import IKDError

# name -> (torchvision constructor, block type, blocks per stage)
ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], str, tuple[int, ...]]] = {}


def register_architecture(name: str, block: str, depths: tuple[int, ...]):
    def decorate(constructor):
        ARCHITECTURES[name] = (constructor, block, depths)
        return constructor
    return decorate


for _name, _block, _depths in (
    ("resnet18", "basic", (2, 2, 2, 2)),
    ("resnet34", "basic", (3, 4, 6, 3)),
    ("resnet50", "bottleneck", (3, 4, 6, 3)),
    ("resnet101", "bottleneck", (3, 4, 23, 3)),
    ("resnet152", "bottleneck", (3, 8, 36, 3)),
):
    register_architecture(_name, _block, _depths)(getattr(tv_models, _name))


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise IKDError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def build_model(arch: str, num_classes: int, imagenet: bool = False) -> nn.Module:
    """A torchvision ResNet with `num_classes` outputs; with `imagenet`, ImageNet weights from the local cache."""
    _check_arch(arch)
    constructor = ARCHITECTURES[arch][0]
    model = constructor(num_classes=num_classes)
    if imagenet:
        state = imagenet_state_dict(arch)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        model.load_state_dict(state, strict=False)
    return model


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from the torch hub cache only: this tool never downloads at run time."""
    weights = tv_models.get_model_weights(arch).DEFAULT
    filename = os.path.basename(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        raise IKDError(f"ImageNet weights for {arch} are not in the local torch cache ({cached}); download "
                       f"{weights.url} there on a machine with internet, or train without --imagenet")
    return read_checkpoint_file(cached)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Checkpoint:
    """A model read from disk: weights that load into torchvision's `arch`, plus what we know about them."""

    path: Path
    arch: str
    classes: list[str]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    raw: dict[str, Any]  # everything the file held (training state for resume, when it is ours)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.meta.get("image_size", 224))

    def build(self) -> nn.Module:
        model = build_model(self.arch, self.num_classes)
        model.load_state_dict(self.state_dict)
        return model


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """The only place this project unpickles: restricted to tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise IKDError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise IKDError(f"{path.name}: refused to load: the file holds objects other than weights, and "
                       "loading it could run code (only weights_only checkpoints are accepted)") from exc
    except Exception as exc:  # a damaged or foreign file makes the unpickler fail in many different ways
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise IKDError(f"{path.name}: not a PyTorch checkpoint or damaged ({first_line})") from exc


def _unwrap_state_dict(payload: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict):
        for key in ("state_dict", "model", "model_state_dict", "student"):
            inner = payload.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                payload = inner
                break
    if not (isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values())):
        raise IKDError(f"{name}: not a model checkpoint (no state_dict of tensors found)")
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in payload.items()}


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The registered ResNet whose block type and stage depths match the weights, if any."""
    depths = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in state_dict if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        depths.append(max(indices) + 1 if indices else 0)
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    for name, (_, arch_block, arch_depths) in ARCHITECTURES.items():
        if arch_block == block and tuple(depths) == arch_depths:
            return name
    return None


def load_checkpoint(path: str | os.PathLike, arch: str | None = None, classes: list[str] | None = None,
                    reinit_head: bool = False) -> Checkpoint:
    """Read and validate a checkpoint; raise IKDError with one line saying what is wrong.

    `arch`: the architecture the caller expects (default: the checkpoint's own or the one its keys show).
    `classes`: the classes of the data it will be used on; a different count is an error unless
    `reinit_head`, which drops the classifier so it is trained anew.
    """
    path = Path(path)
    payload = read_checkpoint_file(path)
    state_dict = _unwrap_state_dict(payload, path.name)
    meta = dict(payload.get("meta", {})) if isinstance(payload, dict) and isinstance(payload.get("meta"), dict) else {}

    found_arch = meta.get("arch") or infer_architecture(state_dict)
    arch = arch or found_arch
    if arch is None:
        raise IKDError(f"{path.name}: cannot tell the architecture from the weights; not a torchvision ResNet?")
    _check_arch(arch)

    if "fc.weight" not in state_dict:
        raise IKDError(f"{path.name}: no classifier weights (fc.weight); not a classification ResNet")
    stored_classes = list(meta.get("classes") or [f"class{i}" for i in range(state_dict["fc.weight"].shape[0])])
    if len(stored_classes) != state_dict["fc.weight"].shape[0]:
        stored_classes = [f"class{i}" for i in range(state_dict["fc.weight"].shape[0])]

    reference = build_model(arch, len(stored_classes)).state_dict()
    missing = [k for k in reference if k not in state_dict]
    unexpected = [k for k in state_dict if k not in reference]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            detail.append(f"unexpected {', '.join(unexpected[:3])}")
        guess = f" (the weights look like {found_arch})" if found_arch and found_arch != arch else ""
        raise IKDError(f"{path.name}: not a {arch} checkpoint{guess}: {'; '.join(detail)}")
    wrong_shape = [k for k, v in reference.items() if v.shape != state_dict[k].shape and not k.startswith("fc.")]
    if wrong_shape:
        k = wrong_shape[0]
        raise IKDError(f"{path.name}: {k} has shape {tuple(state_dict[k].shape)}, {arch} needs {tuple(reference[k].shape)}")

    if classes is not None and len(classes) != len(stored_classes):
        if not reinit_head:
            raise IKDError(f"{path.name}: trained for {len(stored_classes)} classes ({', '.join(stored_classes)}), "
                           f"the data has {len(classes)} ({', '.join(classes)}); use the option to "
                           "re-initialise the classifier head to fine-tune it anyway")
        head = build_model(arch, len(classes)).state_dict()
        state_dict = {**state_dict, "fc.weight": head["fc.weight"], "fc.bias": head["fc.bias"]}
        stored_classes = list(classes)
    elif classes is not None:
        stored_classes = list(classes)

    meta.setdefault("arch", arch)
    return Checkpoint(path, arch, stored_classes, state_dict, meta, payload if isinstance(payload, dict) else {})


def save_atomically(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash or a full disk during the write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(obj, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def checkpoint_payload(model: nn.Module, meta: dict[str, Any], **training_state: Any) -> dict[str, Any]:
    """The dict we write: `state_dict` loads into torchvision's `meta['arch']` as is."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": "ikd-studio/1", "state_dict": state, "meta": meta, **training_state}
