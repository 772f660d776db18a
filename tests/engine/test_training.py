"""The training loop on real X-rays: run folder contents, modes, cancellation, resume, early stopping."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torchvision.models import resnet18

from helpers import tiny_config
from ikd_gui.engine import training
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.models import load_checkpoint
from ikd_gui.engine.runs import read_metrics, read_routing


class Recorder(training.TrainingObserver):
    def __init__(self, cancel_after_steps=None, cancel=None):
        self.batches, self.epochs, self.messages, self.started, self.finished = [], [], [], None, None
        self.cancel_after_steps, self.cancel = cancel_after_steps, cancel

    def on_start(self, event):
        self.started = event

    def on_batch(self, event):
        self.batches.append(event)
        if self.cancel_after_steps is not None and len(self.batches) >= self.cancel_after_steps:
            self.cancel.cancel()

    def on_epoch(self, event):
        self.epochs.append(event)

    def on_message(self, level, text):
        self.messages.append((level, text))

    def on_finish(self, event):
        self.finished = event


def test_ikd_run_writes_a_complete_run_folder(trained):
    run = trained["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["mode"] == "ikd" and config["balance"] == "weights"
    assert config["position_labels"][5] == "layer3.1 <-> teacher layer3.3-5"
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1]
    with open(run / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert "val_recall_NORMAL" in header
    steps, epochs, ps, masks = read_routing(run)
    assert len(steps) == rows[0]["step"] == 144 // 16
    assert masks.shape == (len(steps), 8) and set(masks.ravel().tolist()) <= {0, 1}
    assert ps[0] == pytest.approx(0.5) and ps[-1] == pytest.approx(1.0)  # linear from p0 to 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best_epoch"] == 1
    assert "10% of train" in summary["val_origin"]
    # The student checkpoint loads into a plain torchvision resnet18.
    payload = torch.load(trained["student"], weights_only=True)
    resnet18(num_classes=2).load_state_dict(payload["state_dict"])
    assert payload["meta"]["classes"] == ["NORMAL", "PNEUMONIA"] and payload["meta"]["image_size"] == 64


def test_events_reach_the_observer(tmp_path, demo_data, trained):
    recorder = Recorder()
    result = training.train(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(trained["teacher"]),
                                        schedule="fixed", mask=[1, 0, 1, 1, 1, 1, 1, 0]), recorder)
    assert result.status == "completed"
    assert recorder.started.position_labels[1] == "layer1.1 <-> teacher layer1.2"
    assert len(recorder.batches) == recorder.started.total_steps == 9
    assert all(b.mask == (1, 0, 1, 1, 1, 1, 1, 0) for b in recorder.batches)
    assert recorder.epochs[0].student_share == pytest.approx(0.75)
    assert recorder.finished is not None and recorder.finished.best_checkpoint.exists()
    assert any("validation set" in text for _, text in recorder.messages)


def test_teacher_is_untouched_by_ikd_training(tmp_path, demo_data, trained):
    trainer = training._Trainer(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(trained["teacher"]),
                                            p0=0.0, schedule="uniform"), None, None)
    trainer.build()
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.run(training.RunFolder.create(tmp_path, "frozen", {}, trainer.metric_columns))
    for key, value in trainer.teacher.state_dict().items():
        assert torch.equal(before[key], value), key


def test_kd_and_student_modes(tmp_path, demo_data, trained):
    kd = training.train(tiny_config(demo_data, tmp_path, mode="kd", teacher=str(trained["teacher"]), image_size=32))
    assert kd.status == "completed" and load_checkpoint(kd.best_checkpoint).meta["mode"] == "kd"
    with pytest.raises(IKDError, match="needs a teacher"):
        training.train(tiny_config(demo_data, tmp_path, mode="kd"))


def test_cancel_stops_within_a_batch(tmp_path, demo_data):
    cancel = training.CancelToken()
    recorder = Recorder(cancel_after_steps=3, cancel=cancel)
    result = training.train(tiny_config(demo_data, tmp_path, epochs=3), recorder, cancel)
    assert result.status == "cancelled"
    assert len(recorder.batches) == 3
    assert json.loads((result.run_dir / "summary.json").read_text())["status"] == "cancelled"


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, demo_data, trained):
    config = dict(mode="ikd", teacher=str(trained["teacher"]), epochs=2, image_size=32)
    full = training.train(tiny_config(demo_data, tmp_path / "full", **config))

    cancel = training.CancelToken()
    # Cancel in the middle of epoch 2: the run keeps epoch 1's checkpoint and resumes from there.
    partial = training.train(tiny_config(demo_data, tmp_path / "partial", **config),
                             Recorder(cancel_after_steps=13, cancel=cancel), cancel)
    assert partial.status == "cancelled"
    assert [r["epoch"] for r in read_metrics(partial.run_dir)] == [1]
    resumed = training.resume(partial.run_dir)
    assert resumed.status == "completed" and resumed.run_dir == partial.run_dir

    a = torch.load(full.run_dir / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed.run_dir / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    assert [r["epoch"] for r in read_metrics(resumed.run_dir)] == [1, 2]
    steps, *_ = read_routing(resumed.run_dir)
    assert steps.tolist() == list(range(18))  # no duplicated or missing steps
    full_routing, resumed_routing = read_routing(full.run_dir)[3], read_routing(resumed.run_dir)[3]
    assert (full_routing == resumed_routing).all()


def test_early_stopping_and_selection_on_validation(tmp_path, demo_data):
    recorder = Recorder()
    # A learning rate of ~0 cannot improve anything after the first epoch: patience 1 stops at epoch 2.
    result = training.train(tiny_config(demo_data, tmp_path, epochs=5, patience=1, lr=1e-12, min_delta=0.5),
                            recorder)
    assert result.status == "early_stopped" and len(recorder.epochs) == 2
    assert result.best_epoch == 1


def test_non_finite_loss_stops_the_run_and_keeps_the_best_checkpoint(tmp_path, demo_data):
    result = training.train(tiny_config(demo_data, tmp_path, optimizer="sgd", lr=1e12, epochs=3, warmup_epochs=0))
    assert result.status == "failed" and "loss became" in result.message
    if result.best_checkpoint is not None:
        state = load_checkpoint(result.best_checkpoint).state_dict
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_user_errors_are_raised_before_training(tmp_path, demo_data, trained):
    with pytest.raises(IKDError, match="swap positions"):
        training.train(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(trained["teacher"]),
                                   schedule="fixed", mask=[1, 0]))
    with pytest.raises(IKDError, match="cannot be paired"):
        training.train(tiny_config(demo_data, tmp_path, mode="ikd", arch="resnet50", teacher=str(trained["teacher"])))
    with pytest.raises(IKDError, match="not found"):
        training.train(tiny_config(tmp_path / "nothing", tmp_path))


def test_the_cuda_fast_path_runs_on_the_cpu_with_bf16_and_channels_last(tmp_path, demo_data, trained):
    """AMP and channels_last are what a GPU run uses; here they run through the same code on the CPU."""
    recorder = Recorder()
    result = training.train(tiny_config(demo_data, tmp_path, mode="ikd", teacher=str(trained["teacher"]),
                                        amp="bf16", channels_last=True, image_size=32), recorder)
    assert result.status == "completed"
    assert all(torch.isfinite(torch.tensor(b.loss)) for b in recorder.batches)
    state = load_checkpoint(result.best_checkpoint).state_dict
    assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())
    with pytest.raises(IKDError, match="fp16 mixed precision needs a CUDA"):
        training.train(tiny_config(demo_data, tmp_path, amp="fp16"))


def test_batchnorm_recalibration_describes_the_pure_student(demo_data):
    from torchvision.models import resnet18 as build_resnet18

    from ikd_gui.engine.data import decode_all
    from ikd_gui.engine.preprocess import Normalisation, to_network_input

    paths = sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:64]
    pixels = torch.from_numpy(decode_all(paths, 32).pixels)
    model = build_resnet18(num_classes=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training.recalibrate_batchnorm(model, pixels, torch.device("cpu"), Normalisation(), batch_size=32)
    assert not model.training
    with torch.no_grad():
        stem = model.conv1(to_network_input(pixels, torch.device("cpu"), Normalisation()))
    torch.testing.assert_close(model.bn1.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert model.bn1.momentum == 0.1  # restored
    for key, value in model.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(before[key], value), key  # weights untouched
