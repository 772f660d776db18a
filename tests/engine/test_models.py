"""Checkpoints: our format, common wrappers, and one-line errors for everything else."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torchvision.models import resnet18, resnet34

from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.models import (build_model, checkpoint_payload, infer_architecture, load_checkpoint,
                                   save_atomically)


def test_our_checkpoint_loads_into_plain_torchvision(tmp_path):
    model = build_model("resnet18", 3)
    meta = {"arch": "resnet18", "classes": ["NORMAL", "BACTERIA", "VIRUS"], "image_size": 96}
    path = tmp_path / "model.pt"
    save_atomically(checkpoint_payload(model, meta), path)
    plain = resnet18(num_classes=3)
    plain.load_state_dict(torch.load(path, weights_only=True)["state_dict"])  # as is, no renaming
    ckpt = load_checkpoint(path)
    assert (ckpt.arch, ckpt.classes, ckpt.image_size) == ("resnet18", meta["classes"], 96)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix"])
def test_common_wrappers_are_accepted(tmp_path, wrap):
    state = resnet34(num_classes=2).state_dict()
    payload = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(payload, tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt.arch == "resnet34" and ckpt.num_classes == 2
    ckpt.build()


def test_errors_are_one_line(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(IKDError, match="not a PyTorch checkpoint") as info:
        load_checkpoint(tmp_path / "notes.pt")
    assert "\n" not in str(info.value)
    with pytest.raises(IKDError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pt")
    with pytest.raises(IKDError, match="no state_dict"):
        load_checkpoint(tmp_path / "odd.pt")


def test_wrong_architecture_names_the_keys(tmp_path):
    torch.save(resnet34(num_classes=2).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(IKDError, match=r"not a resnet18 checkpoint \(the weights look like resnet34\): unexpected layer1\.2"):
        load_checkpoint(tmp_path / "r34.pt", arch="resnet18")


def test_class_count_mismatch_and_head_reinitialisation(tmp_path):
    torch.save(resnet18(num_classes=2).state_dict(), tmp_path / "two.pt")
    with pytest.raises(IKDError, match="trained for 2 classes.*the data has 3"):
        load_checkpoint(tmp_path / "two.pt", classes=["A", "B", "C"])
    ckpt = load_checkpoint(tmp_path / "two.pt", classes=["A", "B", "C"], reinit_head=True)
    assert ckpt.build().fc.out_features == 3


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        pickle.dump({"state_dict": _RunsCode(marker)}, stream)
    torch.save({"state_dict": resnet18().state_dict(), "extra": _RunsCode(marker)}, tmp_path / "evil2.pt")
    for candidate in (path, tmp_path / "evil2.pt"):
        with pytest.raises(IKDError, match="refused|not a PyTorch checkpoint"):
            load_checkpoint(candidate)
    assert not marker.exists()


def test_imagenet_weights_offline_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(IKDError, match="not in the local torch cache"):
        build_model("resnet18", 2, imagenet=True)


def test_architecture_is_inferred_from_keys():
    assert infer_architecture(resnet34().state_dict()) == "resnet34"
    assert infer_architecture({"foo": torch.zeros(1)}) is None
