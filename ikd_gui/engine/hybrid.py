"""The hybrid teacher/student network: partition and routed forward pass.

Stage i of the teacher is split into len(student stage i) contiguous groups with `numpy.array_split`
semantics; swap position k is either student block k or teacher group k. Stem, pooling and head are
always the student's. The teacher is frozen and permanently in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .errors import IKDError

STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class SwapPosition:
    stage: str
    student_block: int
    teacher_blocks: tuple[int, ...]

    @property
    def label(self) -> str:
        first, last = self.teacher_blocks[0], self.teacher_blocks[-1]
        blocks = f"{first}" if first == last else f"{first}-{last}"
        return f"{self.stage}.{self.student_block} <-> teacher {self.stage}.{blocks}"

    @property
    def student_name(self) -> str:
        return f"{self.stage}.{self.student_block}"


def partition(teacher_depths: Sequence[int], student_depths: Sequence[int]) -> list[SwapPosition]:
    """Swap positions for a teacher/student pair given blocks per stage."""
    if len(teacher_depths) != len(student_depths):
        raise IKDError(f"teacher has {len(teacher_depths)} stages, student {len(student_depths)}")
    positions = []
    for stage, (n_teacher, n_student) in enumerate(zip(teacher_depths, student_depths)):
        if n_student > n_teacher:
            raise IKDError(f"{STAGES[stage]}: student has {n_student} blocks, teacher only {n_teacher}; "
                           "each student block needs at least one teacher block")
        for block, group in enumerate(np.array_split(np.arange(n_teacher), n_student)):
            positions.append(SwapPosition(STAGES[stage], block, tuple(int(i) for i in group)))
    return positions


def _block_widths(block: nn.Module) -> tuple[int, int]:
    """(input channels, output channels) of a torchvision BasicBlock or Bottleneck."""
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    return block.conv1.in_channels, last_bn.num_features


def _block_stride(block: nn.Module) -> int:
    conv = block.conv2  # torchvision puts the stride on conv2 in both block types
    return conv.stride[0]


def check_pairing(teacher: nn.Module, student: nn.Module) -> list[SwapPosition]:
    """The swap positions, or IKDError naming the stage and widths that do not fit."""
    teacher_depths = [len(getattr(teacher, s)) for s in STAGES]
    student_depths = [len(getattr(student, s)) for s in STAGES]
    positions = partition(teacher_depths, student_depths)
    for pos in positions:
        s_block = getattr(student, pos.stage)[pos.student_block]
        t_group = [getattr(teacher, pos.stage)[i] for i in pos.teacher_blocks]
        s_in, s_out = _block_widths(s_block)
        t_in, t_out = _block_widths(t_group[0])[0], _block_widths(t_group[-1])[1]
        if (s_in, s_out) != (t_in, t_out):
            raise IKDError(f"teacher and student cannot be paired at {pos.stage}: student block "
                           f"{pos.student_name} maps {s_in}->{s_out} channels, teacher blocks "
                           f"{pos.label.split('teacher ')[1]} map {t_in}->{t_out}")
        t_stride = int(np.prod([_block_stride(b) for b in t_group]))
        if _block_stride(s_block) != t_stride:
            raise IKDError(f"teacher and student cannot be paired at {pos.stage}: strides differ "
                           f"({_block_stride(s_block)} vs {t_stride})")
    return positions


class HybridNet(nn.Module):
    """Student ResNet whose blocks can each be replaced, per forward pass, by a group of teacher blocks."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.positions = check_pairing(teacher, student)
        self.student = student
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        # Flat per-position module lists, so the forward pass does no name lookups.
        self._student_blocks = [getattr(student, p.stage)[p.student_block] for p in self.positions]
        self._teacher_groups = [[getattr(teacher, p.stage)[i] for i in p.teacher_blocks] for p in self.positions]

    @property
    def num_positions(self) -> int:
        return len(self.positions)

    def train(self, mode: bool = True) -> "HybridNet":
        super().train(mode)
        self.teacher.eval()  # teacher BatchNorm statistics never change
        return self

    def forward(self, x: torch.Tensor, mask: Sequence[int] | None = None) -> torch.Tensor:
        """`mask[k]` truthy runs student block k, else teacher group k; None means the pure student."""
        s = self.student
        if mask is None:
            return s(x)
        if len(mask) != len(self.positions):
            raise ValueError(f"mask has {len(mask)} entries, the network has {len(self.positions)} positions")
        x = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        for use_student, block, group in zip(mask, self._student_blocks, self._teacher_groups):
            if use_student:
                x = block(x)
            else:
                for teacher_block in group:
                    x = teacher_block(x)
        x = torch.flatten(s.avgpool(x), 1)
        return s.fc(x)


def check_architectures(teacher_arch: str, student_arch: str) -> list[SwapPosition]:
    """Swap positions of two registered architectures, or IKDError saying why they cannot be paired.

    Builds both on the meta device: no memory, no time, so the app can check on every change.
    """
    from .models import build_model

    with torch.device("meta"):
        teacher, student = build_model(teacher_arch, 2), build_model(student_arch, 2)
    return check_pairing(teacher, student)
