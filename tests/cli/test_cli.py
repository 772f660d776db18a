"""The `ikd` command end to end: teacher, then IKD student, then evaluate, predict and info."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from ikd_gui.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def labelled_copy(tmp_path_factory, demo_data):
    """About 100 real images in the Kermany layout with a small test split."""
    root = tmp_path_factory.mktemp("kermany") / "chest_xray"
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((demo_data / "chest_xray" / "train" / cls).glob("*.jpeg"))
        for split, chosen in (("train", files[:50]), ("test", files[50:58])):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, root / split / cls / f.name)
    return root.parent


def test_train_teacher_then_ikd_student_then_evaluate_and_predict(tmp_path, capsys, labelled_copy):
    common = ["--data", labelled_copy, "--epochs", 2, "--image-size", 64, "--batch-size", 16, "--out", tmp_path, "--quiet"]
    code, out, err = run_cli(capsys, "train", "--mode", "teacher", "--arch", "resnet34", *common)
    assert code == 0, err
    teacher_run = Path(out.strip().splitlines()[-1])
    assert (teacher_run / "checkpoints" / "best.pt").exists()

    code, out, err = run_cli(capsys, "train", "--mode", "ikd", "--arch", "resnet18", "--teacher",
                             teacher_run / "checkpoints" / "best.pt", "--schedule", "review", "--p0", 0.2,
                             "--cycles", 2, *common)
    assert code == 0, err
    student_run = Path(out.strip().splitlines()[-1])  # the run folder is the last line
    assert "test: accuracy" in err
    summary = json.loads((student_run / "summary.json").read_text())
    assert summary["test"]["count"] == 16
    assert len(summary["test"]["scores"]) == len(summary["test"]["labels"]) == 16  # for the ROC curve
    best = student_run / "checkpoints" / "best.pt"

    code, out, err = run_cli(capsys, "evaluate", "--data", labelled_copy, "--checkpoint", best, "--split", "test", "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert set(metrics) >= {"accuracy", "balanced_accuracy", "per_class", "confusion_matrix", "auc"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 16
    assert metrics["accuracy"] == pytest.approx(summary["test"]["accuracy"])

    code, out, _ = run_cli(capsys, "evaluate", "--data", labelled_copy, "--checkpoint", best, "--split", "val")
    assert code == 0 and "confusion matrix" in out
    val_count = int(out.split(":")[1].split()[0])
    assert val_count == 10  # re-created from the checkpoint's seed and fraction: 10% of 100

    images = sorted((labelled_copy / "chest_xray" / "test" / "NORMAL").glob("*.jpeg"))[:3]
    code, out, err = run_cli(capsys, "predict", *images, "--checkpoint", best, "--json")
    assert code == 0, err
    predictions = json.loads(out)
    assert [p["file"] for p in predictions] == [str(i) for i in images]
    for p in predictions:
        assert set(p["probabilities"]) == {"NORMAL", "PNEUMONIA"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)

    code, out, _ = run_cli(capsys, "info", best, "--json")
    info = json.loads(out)
    assert info["arch"] == "resnet18" and info["mode"] == "ikd" and info["image_size"] == 64


def test_user_errors_exit_non_zero_with_one_line(tmp_path, capsys, demo_data):
    torch.save(resnet50(num_classes=2).state_dict(), tmp_path / "r50.pt")
    (tmp_path / "junk.pt").write_text("junk")
    cases = [
        ["train", "--data", tmp_path / "missing", "--mode", "student"],
        ["train", "--data", demo_data, "--mode", "ikd", "--teacher", tmp_path / "junk.pt", "--out", tmp_path],
        ["train", "--data", demo_data, "--mode", "ikd", "--teacher", tmp_path / "r50.pt", "--out", tmp_path,
         "--image-size", 32],
        ["info", tmp_path / "junk.pt"],
        ["predict", tmp_path / "nope.png", "--checkpoint", tmp_path / "r50.pt"],
    ]
    for args in cases:
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.startswith("ikd: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert "cannot be paired at layer1" in run_cli(capsys, *cases[2])[2]


def test_predict_reports_undecodable_files(tmp_path, capsys, demo_data):
    from torchvision.models import resnet18
    torch.save(resnet18(num_classes=2).state_dict(), tmp_path / "r18.pt")
    (tmp_path / "broken.png").write_text("not a png")
    good = sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    code, out, _ = run_cli(capsys, "predict", good, tmp_path / "broken.png", "--checkpoint", tmp_path / "r18.pt", "--json")
    assert code == 1
    results = json.loads(out)
    assert results[0]["label"] in ("class0", "class1") and "error" in results[1]
