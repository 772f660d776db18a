"""The teacher/student partition and the routed forward pass."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18, resnet34

from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.hybrid import HybridNet, check_architectures, partition


def test_partition_follows_array_split():
    positions = partition([3, 4, 6, 3], [2, 2, 2, 2])
    assert [p.teacher_blocks for p in positions] == [(0, 1), (2,), (0, 1), (2, 3), (0, 1, 2), (3, 4, 5), (0, 1), (2,)]
    assert positions[5].label == "layer3.1 <-> teacher layer3.3-5"
    assert positions[1].label == "layer1.1 <-> teacher layer1.2"


def test_bottleneck_pairs_and_bad_pairs():
    assert len(check_architectures("resnet152", "resnet50")) == 16
    assert len(check_architectures("resnet101", "resnet50")) == 16
    with pytest.raises(IKDError, match=r"layer1.*64->64.*64->256"):
        check_architectures("resnet50", "resnet18")
    with pytest.raises(IKDError, match="teacher only"):
        check_architectures("resnet18", "resnet34")


@pytest.fixture
def pair():
    torch.manual_seed(0)
    student, teacher = resnet18(num_classes=2), resnet34(num_classes=2)
    # Non-trivial BatchNorm statistics, so that a mode mix-up would show.
    for module in list(student.modules()) + list(teacher.modules()):
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return student, teacher


def test_all_ones_is_the_plain_student_and_all_zeros_the_teacher_body(pair):
    student, teacher = pair
    net = HybridNet(student, teacher).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x, [1] * 8), student(x), atol=1e-6, rtol=0)
        s = student
        h = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        h = teacher.layer4(teacher.layer3(teacher.layer2(teacher.layer1(h))))
        expected = s.fc(torch.flatten(s.avgpool(h), 1))
        torch.testing.assert_close(net(x, [0] * 8), expected, atol=1e-6, rtol=0)


def test_teacher_stays_frozen_in_eval_mode_while_the_student_trains(pair):
    student, teacher = pair
    net = HybridNet(student, teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = student.layer1[0].bn1.running_mean.clone()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    net.train()
    assert student.training and not teacher.training
    assert all(not m.training for m in teacher.modules())
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        mask = (torch.rand(8, generator=generator) < 0.5).int().tolist()
        loss = net(torch.randn(4, 3, 64, 64), mask).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = teacher.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # bit-identical, BatchNorm statistics included
    assert not torch.equal(student_before, student.layer1[0].bn1.running_mean)
    assert all(p.grad is None for p in teacher.parameters())


def test_gradients_flow_through_teacher_groups_and_skip_swapped_out_blocks(pair):
    student, teacher = pair
    net = HybridNet(student, teacher).train()
    mask = [1, 0, 1, 1, 1, 1, 1, 1]  # layer1.1 swapped out for teacher layer1.2
    net(torch.randn(4, 3, 64, 64), mask).sum().backward()
    assert all(p.grad is None for p in student.layer1[1].parameters())
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0  # reached through the teacher block
    assert student.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_mask_length_is_checked(pair):
    net = HybridNet(*pair)
    with pytest.raises(ValueError, match="8 positions"):
        net(torch.randn(1, 3, 64, 64), [1, 0])
