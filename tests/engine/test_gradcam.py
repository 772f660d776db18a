"""Grad-CAM of the trained student on a real radiograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ikd_gui.engine.data import read_grey
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.gradcam import DEFAULT_LAYER, grad_cam
from ikd_gui.engine.inference import Predictor, image_files


@pytest.fixture(scope="module")
def student(trained) -> Predictor:
    return Predictor(trained["student"])


@pytest.fixture(scope="module")
def radiograph(demo_data) -> np.ndarray:
    """A real X-ray cropped to 224 x 150, so that a map ignoring the image's aspect would show."""
    grey = read_grey(image_files([demo_data / "chest_xray" / "train" / "PNEUMONIA"])[0])
    return np.ascontiguousarray(grey[:, 37:187])


def test_map_has_the_image_shape_and_is_not_constant(student, radiograph):
    target = int(student.probabilities(student.prepare(radiograph).unsqueeze(0))[0].argmax())
    cam = grad_cam(student, radiograph, target)
    assert cam.shape == radiograph.shape
    assert cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    assert cam.max() - cam.min() > 0.2


def test_map_moves_when_the_target_class_changes(student, radiograph):
    maps = [grad_cam(student, radiograph, k) for k in range(len(student.classes))]
    assert np.abs(maps[0] - maps[1]).mean() > 0.05
    # Each class's evidence comes from other places, not only from the same place with a different strength.
    assert not np.allclose(maps[0] / max(maps[0].max(), 1e-6), maps[1] / max(maps[1].max(), 1e-6), atol=0.05)


def test_leaves_the_model_as_it_was(student, radiograph):
    pixels = student.prepare(radiograph).unsqueeze(0)
    before = student.probabilities(pixels)
    with torch.inference_mode():  # as a caller holding inference mode would
        grad_cam(student, radiograph, 0)
    assert np.array_equal(student.probabilities(pixels), before)
    assert all(p.grad is None for p in student.model.parameters())
    assert not student.model.get_submodule(DEFAULT_LAYER)._forward_hooks
    assert not student.model.training


def test_wrong_class_or_layer_is_a_user_error(student, radiograph):
    with pytest.raises(IKDError, match="out of range"):
        grad_cam(student, radiograph, len(student.classes))
    with pytest.raises(IKDError, match="no layer"):
        grad_cam(student, radiograph, 0, layer="layer9")
