"""Hybrid train-step cost against the plain networks it stands for, side by side in one process.

    python benchmarks/bench_hybrid.py [--batch 16] [--size 112] [--repeats 15] [--device cpu]

Prints two ratios (median time per train step, interleaved measurements):
  all-ones mask  vs  plain torchvision student
  all-zeros mask vs  the equivalent static network (student stem + frozen teacher body + student head)
A ratio near 1.0 means the routing costs nothing beyond the blocks it runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torchvision.models import resnet18, resnet34

from ikd_gui.engine.hybrid import HybridNet


class StaticTeacherBody(nn.Module):
    """What an all-zeros mask computes, written out as a fixed network."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student, self.teacher = student, teacher

    def forward(self, x):
        s, t = self.student, self.teacher
        x = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        x = t.layer4(t.layer3(t.layer2(t.layer1(x))))
        return s.fc(torch.flatten(s.avgpool(x), 1))


def step_timer(forward, parameters, x, y, device):
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    return step


def compare(name, step_a, step_b, repeats, warmup=3):
    for _ in range(warmup):
        step_a(), step_b()
    a, b = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both equally
        a.append(step_a())
        b.append(step_b())
    ratio = statistics.median(a) / statistics.median(b)
    print(f"{name:<48} {statistics.median(a) * 1e3:8.1f} ms vs {statistics.median(b) * 1e3:8.1f} ms   ratio {ratio:.3f}")
    return ratio


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 2, (args.batch,), device=device)

    student, teacher = resnet18(num_classes=2).to(device), resnet34(num_classes=2).to(device)
    hybrid = HybridNet(student, teacher).train()
    plain = resnet18(num_classes=2).to(device).train()
    plain.load_state_dict(student.state_dict())
    ones, zeros = [1] * hybrid.num_positions, [0] * hybrid.num_positions

    static_student = resnet18(num_classes=2).to(device)
    static_teacher = resnet34(num_classes=2).to(device).eval().requires_grad_(False)
    static = StaticTeacherBody(static_student, static_teacher)
    static.student.train()

    print(f"device {device}, batch {args.batch}, {args.size} px, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    results = {
        "all_ones_vs_plain_student": compare(
            "hybrid all-ones vs plain resnet18", step_timer(lambda v: hybrid(v, ones), student.parameters(), x, y, device),
            step_timer(plain, plain.parameters(), x, y, device), args.repeats),
        "all_zeros_vs_static_network": compare(
            "hybrid all-zeros vs static stem+teacher body+head",
            step_timer(lambda v: hybrid(v, zeros), student.parameters(), x, y, device),
            step_timer(static, static_student.parameters(), x, y, device), args.repeats),
    }
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
