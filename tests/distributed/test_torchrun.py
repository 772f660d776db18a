"""A real 2-process DDP run on the CPU (gloo) through torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ikd_gui.cli import main as cli
from ikd_gui.engine.models import load_checkpoint
from ikd_gui.engine.runs import read_metrics, read_routing


def test_two_ranks_route_identically_and_rank_zero_writes_a_usable_checkpoint(tmp_path, demo_data, trained, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ikd_gui.cli", "train", "--data", str(demo_data), "--mode", "ikd", "--teacher",
               str(trained["teacher"]), "--epochs", "2", "--image-size", "32", "--batch-size", "8",
               "--out", str(tmp_path), "--audit-routing", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1  # only rank 0 reports
    run = Path(lines[0])

    steps, epochs, ps, masks = read_routing(run)
    rank1 = tmp_path / run.name / "routing.rank1.csv"
    assert rank1.exists()
    # Each rank sees half the 144 training images: 72 / 8 = 9 steps per epoch.
    assert steps.tolist() == list(range(18))
    other = np.loadtxt(rank1, delimiter=",", skiprows=1, dtype=str)
    assert [row[3] for row in other] == ["".join(map(str, m)) for m in masks]  # identical masks, step by step
    assert not (run / "routing.rank0.csv").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert [int(r["epoch"]) for r in read_metrics(run)] == [1, 2]

    best = run / "checkpoints" / "best.pt"
    assert load_checkpoint(best).arch == "resnet18"
    assert cli(["evaluate", "--data", str(demo_data), "--checkpoint", str(best), "--split", "val", "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
