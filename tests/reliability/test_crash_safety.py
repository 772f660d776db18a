"""Nothing is lost: SIGKILL mid-run, unwritable folders, a full disk, a diverging loss, out of memory."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from ikd_gui.engine import models, training
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.models import load_checkpoint
from ikd_gui.engine.runs import read_metrics, read_routing

TRAIN_ARGS = ["--mode", "student", "--epochs", "3", "--image-size", "32", "--batch-size", "16", "--seed", "5", "--quiet"]


def ikd(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # deterministic, identical arithmetic in every process
    return subprocess.Popen([sys.executable, "-m", "ikd_gui.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path, demo_data):
    reference = ikd("train", "--data", demo_data, "--out", tmp_path / "reference", *TRAIN_ARGS)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    reference_run = Path(out.strip().splitlines()[-1])

    victim = ikd("train", "--data", demo_data, "--out", tmp_path / "victim", *TRAIN_ARGS)
    deadline = time.monotonic() + 600
    last = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "victim").glob("*/checkpoints/last.pt"))
        if found:
            last = found[0]
            break
        time.sleep(0.05)
    assert last is not None, "no checkpoint appeared"
    time.sleep(random.Random().uniform(0.0, 1.5))  # somewhere in epoch 2, possibly mid-save or mid-log-line
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run = last.parent.parent

    checkpoint = load_checkpoint(last)  # never truncated: written to a temporary file, then renamed
    assert checkpoint.raw["training"]["epoch"] >= 1
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows][: checkpoint.raw["training"]["epoch"]] == list(
        range(1, checkpoint.raw["training"]["epoch"] + 1))

    resumed = ikd("train", "--resume", run, "--quiet")
    out, err = resumed.communicate(timeout=600)
    if checkpoint.raw["training"]["epoch"] == 3:
        assert resumed.returncode == 2 and "already completed" in err
    else:
        assert resumed.returncode == 0, err
    a = torch.load(reference_run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    for key in a:
        # Same seeds, same data order, same single-threaded arithmetic: the weights agree to float rounding.
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    assert [int(r["epoch"]) for r in read_metrics(run)] == [1, 2, 3]
    assert read_routing(run)[0].tolist() == list(range(27))


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path, demo_data):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(IKDError, match="cannot write the run folder"):
        training.train(tiny_config(demo_data, blocker / "runs", image_size=32))


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, demo_data, monkeypatch):
    real_save = torch.save
    saves = {"count": 0}

    def save_then_fill_the_disk(obj, stream, *args, **kwargs):
        saves["count"] += 1
        if saves["count"] > 2:  # epoch 1 wrote best.pt and last.pt; the next write hits a full disk
            stream.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, stream, *args, **kwargs)

    monkeypatch.setattr(models.torch, "save", save_then_fill_the_disk)
    result = training.train(tiny_config(demo_data, tmp_path, image_size=32, epochs=3, patience=9, lr=1e-2))
    assert result.status == "failed"
    assert "No space left on device" in result.message and "previous checkpoint is intact" in result.message
    folder = result.run_dir / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no temporary debris
    assert load_checkpoint(folder / "last.pt").raw["training"]["epoch"] == 1


def test_a_diverging_loss_never_overwrites_the_best_checkpoint(tmp_path, demo_data, monkeypatch):
    real_cross_entropy = training.F.cross_entropy
    calls = {"count": 0}

    def diverge_in_epoch_two(logits, *args, **kwargs):
        loss = real_cross_entropy(logits, *args, **kwargs)
        if kwargs.get("reduction") != "sum":  # training batches only, not the evaluation
            calls["count"] += 1
            if calls["count"] > 12:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(training.F, "cross_entropy", diverge_in_epoch_two)
    result = training.train(tiny_config(demo_data, tmp_path, image_size=32, epochs=3))
    assert result.status == "failed" and "loss became nan" in result.message
    best = load_checkpoint(result.best_checkpoint)
    assert best.meta["metrics"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in best.state_dict.values() if v.is_floating_point())


def test_out_of_memory_is_reported_with_a_suggestion(tmp_path, demo_data, monkeypatch):
    def no_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training._Trainer, "_loss", no_memory)
    result = training.train(tiny_config(demo_data, tmp_path, image_size=32))
    assert result.status == "failed"
    assert "smaller batch or image size" in result.message
