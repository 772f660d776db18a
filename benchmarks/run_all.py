"""Run every benchmark and write docs/benchmarks.md (a table) and docs/benchmarks.json.

    python benchmarks/run_all.py [--quick] [--device cpu|cuda] [--only hybrid,notebook,...]

Each figure is a ratio against a baseline measured side by side in the same process (interleaved where the two
can be), with the machine's details. Benchmarks are never part of the test suite's pass/fail.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet18, resnet34

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hybrid import StaticTeacherBody, compare, step_timer  # noqa: E402

from ikd_gui.engine import data as data_mod  # noqa: E402
from ikd_gui.engine.hybrid import HybridNet, STAGES  # noqa: E402
from ikd_gui.engine.inference import Predictor  # noqa: E402
from ikd_gui.engine.preprocess import Normalisation, augment_batch, normalise, to_unit_grey  # noqa: E402
from ikd_gui.engine.training import TrainConfig, TrainingObserver, train  # noqa: E402
from ikd_gui.resources import demo_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("IKD_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> dict:
    info = {"date": datetime.date.today().isoformat(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --- 1, 2: routing overhead --------------------------------------------------------------------------------

def bench_hybrid(device, batch, size, repeats) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    student, teacher = resnet18(num_classes=2).to(device), resnet34(num_classes=2).to(device)
    hybrid = HybridNet(student, teacher).train()
    plain = resnet18(num_classes=2).to(device).train()
    static_student, static_teacher = resnet18(num_classes=2).to(device), resnet34(num_classes=2).to(device)
    static = StaticTeacherBody(static_student, static_teacher.eval().requires_grad_(False))
    ones, zeros = [1] * 8, [0] * 8
    r1 = compare("1. hybrid all-ones / plain resnet18", step_timer(lambda v: hybrid(v, ones), student.parameters(), x, y, device),
                 step_timer(plain, plain.parameters(), x, y, device), repeats)
    r2 = compare("2. hybrid all-zeros / static network", step_timer(lambda v: hybrid(v, zeros), student.parameters(), x, y, device),
                 step_timer(static, static_student.parameters(), x, y, device), repeats)
    return [
        {"id": 1, "what": "hybrid train step, all-ones mask / plain torchvision resnet18 step", "ratio": r1, "target": "<= 1.05"},
        {"id": 2, "what": "hybrid train step, all-zeros mask / static stem + frozen teacher body + head", "ratio": r2,
         "target": "<= 1.05"},
    ]


# --- 3: against the reference notebook's step ----------------------------------------------------------------

class NotebookHybrid(nn.Module):
    """A faithful re-creation of the reference notebook's hybrid step: the teacher's parameters stay trainable
    (gradients computed for nothing), its BatchNorm stays in train mode, and the partition is rebuilt from
    scratch every batch."""

    def __init__(self, student, teacher):
        super().__init__()
        self.student, self.teacher = student, teacher  # no freezing, no eval()

    def forward(self, x, mask):
        s = self.student
        layers = []
        for stage in STAGES:
            student_blocks = list(getattr(s, stage))
            groups = np.array_split(np.arange(len(getattr(self.teacher, stage))), len(student_blocks))
            for block, group in zip(student_blocks, groups):
                layers.append((block, nn.Sequential(*[getattr(self.teacher, stage)[i] for i in group])))
        body = nn.Sequential(*[blk if keep else grp for (blk, grp), keep in zip(layers, mask)])
        x = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        return s.fc(torch.flatten(s.avgpool(body(x)), 1))


def bench_notebook(device, batch, size, repeats) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    ours = HybridNet(resnet18(num_classes=2).to(device), resnet34(num_classes=2).to(device)).train()
    theirs = NotebookHybrid(resnet18(num_classes=2).to(device), resnet34(num_classes=2).to(device)).train()
    masks = [tuple(int(v) for v in (torch.rand(8, generator=torch.Generator().manual_seed(i)) < 0.5)) for i in range(1000)]
    counter = {"ours": 0, "theirs": 0}

    def next_mask(who):
        counter[who] += 1
        return masks[counter[who] % len(masks)]

    r = compare("3. our IKD step p=0.5 / notebook step", step_timer(lambda v: ours(v, next_mask("ours")),
                ours.student.parameters(), x, y, device),
                step_timer(lambda v: theirs(v, next_mask("theirs")), theirs.student.parameters(), x, y, device), repeats)
    return [{"id": 3, "what": "our IKD train step at p=0.5 / reference notebook's step (same masks)", "ratio": r,
             "target": "< 1 (faster)", "note": f"ours takes {r:.0%} of the notebook's time ({1 / r:.2f}x faster)"}]


# --- 4: input pipeline ---------------------------------------------------------------------------------------

def bench_input(device, quick) -> list[dict]:
    folder = SHARED / "chest_xray_fullres_sample"
    if not folder.is_dir():
        print("4. skipped: no full-resolution sample folder")
        return []
    paths = sorted(p for p in folder.rglob("*.jpeg"))[: 60 if quick else None]
    size, batch = 224, 32
    start = time.perf_counter()
    for p in paths:
        data_mod.decode_for_network(p, size)
    decode_rate = len(paths) / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as cache:
        data_mod.decode_all(paths, size, Path(cache))  # first pass fills the cache
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        decoded = data_mod.decode_all(paths, size, Path(cache))
        assert decoded.from_cache
        pixels = torch.from_numpy(decoded.pixels)
        order = torch.randperm(len(paths), generator=generator)
        for i in range(0, len(paths), batch):
            normalise(augment_batch(to_unit_grey(pixels[order[i:i + batch]], device), generator), Normalisation())
        if device.type == "cuda":
            torch.cuda.synchronize()
        cache_rate = len(paths) / (time.perf_counter() - start)

    model = resnet18(num_classes=2).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    xb, yb = torch.randn(batch, 3, size, size, device=device), torch.randint(0, 2, (batch,), device=device)
    times = []
    for _ in range(3 if quick else 6):
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    train_rate = batch / statistics.median(times[1:])
    print(f"4. input: decode {decode_rate:.0f} img/s, cache+augment {cache_rate:.0f} img/s, train step {train_rate:.0f} img/s")
    return [
        {"id": "4a", "what": f"input pipeline from the decode-once cache / decoding the originals every epoch "
                             f"({len(paths)} full-resolution JPEGs, {size} px)", "ratio": cache_rate / decode_rate,
         "target": ">= 5", "note": f"{cache_rate:.0f} vs {decode_rate:.1f} images/s"},
        {"id": "4b", "what": "input pipeline throughput / resnet18 train step throughput (224 px, batch 32)",
         "ratio": cache_rate / train_rate, "target": ">= 2", "note": f"{cache_rate:.0f} vs {train_rate:.1f} images/s"},
    ]


# --- 6: inference ---------------------------------------------------------------------------------------------

def bench_inference(workdir: Path) -> list[dict]:
    from ikd_gui.engine.models import checkpoint_payload, save_atomically

    checkpoint = workdir / "resnet18-224.pt"
    save_atomically(checkpoint_payload(resnet18(num_classes=2), {"arch": "resnet18", "classes": ["NORMAL", "PNEUMONIA"],
                                                               "image_size": 224}), checkpoint)
    image = sorted((demo_dataset() / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    predictor = Predictor(checkpoint)
    plain = resnet18(num_classes=2).eval()
    tensor = torch.randn(1, 3, 224, 224)
    ours, base = [], []
    for i in range(25):
        t = time.perf_counter()
        predictor.predict_files([image])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.inference_mode():
            plain(tensor)
        base.append(time.perf_counter() - t)
    warm, warm_base = statistics.median(ours[3:]), statistics.median(base[3:])

    def wall(cmd):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t
    cli = [sys.executable, "-m", "ikd_gui.cli", "predict", str(image), "--checkpoint", str(checkpoint)]
    baseline = [sys.executable, "-c", "import torch, torchvision; torchvision.models.resnet18()"]
    wall(cli)  # warm the file cache
    cold = statistics.median([wall(cli) for _ in range(3)])
    cold_base = statistics.median([wall(baseline) for _ in range(3)])
    print(f"6. warm single image {warm * 1e3:.1f} ms (plain forward {warm_base * 1e3:.1f} ms); "
          f"cold ikd predict {cold:.2f} s (import torch+torchvision {cold_base:.2f} s)")
    return [
        {"id": "6a", "what": "warm single-image prediction (decode + preprocess + forward), resnet18 224 px / plain "
                             "torchvision forward of a ready tensor", "ratio": warm / warm_base,
         "note": f"{warm * 1e3:.1f} ms vs {warm_base * 1e3:.1f} ms"},
        {"id": "6b", "what": "cold start of `ikd predict` (one image) / `python -c 'import torch, torchvision'`",
         "ratio": cold / cold_base, "note": f"{cold:.2f} s vs {cold_base:.2f} s"},
    ]


# --- 7: memory ------------------------------------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MemoryProbe(TrainingObserver):
    def __init__(self):
        self.after_epoch: list[float] = []

    def on_epoch(self, event):
        self.after_epoch.append(rss_mb())


def bench_memory(workdir: Path, quick) -> list[dict]:
    before = rss_mb()
    probe = MemoryProbe()
    epochs = 5
    train(TrainConfig(data=str(demo_dataset()), mode="student", arch="resnet18", epochs=epochs, patience=epochs,
                      batch_size=16, image_size=64, out=str(workdir), cache_dir=str(workdir / "cache")), probe)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = probe.after_epoch[4] - probe.after_epoch[1]
    print(f"7. memory: peak RSS {peak:.0f} MB; RSS after epochs {[round(m) for m in probe.after_epoch]} MB")
    return [{"id": 7, "what": "resident memory growth from epoch 2 to epoch 5 / resident memory after epoch 2 "
                              "(resnet18, 64 px, demo set)", "ratio": growth / probe.after_epoch[1],
             "target": "~0", "note": f"growth {growth:+.1f} MB; peak RSS {peak:.0f} MB (process at start {before:.0f} MB)"}]


def write_report(results: list[dict], info: dict, path: Path) -> None:
    lines = ["# Benchmarks", "",
             f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores, {info['threads']} torch threads)"
             + (f", GPU {info['gpu']}" if "gpu" in info else ", no GPU") + f"; Python {info['python']}, torch {info['torch']}.",
             "Each figure is a ratio against a baseline measured in the same process, side by side.", "",
             "Reproduce: `python benchmarks/run_all.py` (add `--device cuda` on a GPU). Raw numbers: `docs/benchmarks.json`.", "",
             "| # | measurement | ratio | target | detail |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['id']} | {r['what']} | {r['ratio']:.3f} | {r.get('target', '')} | {r.get('note', '')} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--only", help="comma-separated subset: hybrid,notebook,input,inference,memory,gui")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = 5 if args.quick else 15
    selected = set(args.only.split(",")) if args.only else {"hybrid", "notebook", "input", "inference", "memory", "gui"}
    info = machine()
    print(json.dumps(info))
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "hybrid" in selected:
            results += bench_hybrid(device, args.batch, args.size, repeats)
        if "notebook" in selected:
            results += bench_notebook(device, args.batch, args.size, repeats)
        if "input" in selected:
            results += bench_input(device, args.quick)
        if "gui" in selected:
            from bench_gui import bench_gui
            results += bench_gui(workdir, args.quick)
        if "inference" in selected:
            results += bench_inference(workdir)
        if "memory" in selected:
            results += bench_memory(workdir, args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps({"machine": info, "results": results}, indent=2))
    write_report(results, info, out / "benchmarks.md")
    print(f"wrote {out / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
