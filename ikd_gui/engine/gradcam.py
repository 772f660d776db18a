"""Grad-CAM (Selvaraju et al. 2017): where in the image a class's score came from.

Qt-free, like the rest of the engine. The map is computed on exactly the network input the prediction used
(`Predictor.prepare` + `to_network_input`), then stretched back over the whole image, so an overlay lines up
with the picture whatever its aspect ratio.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import IKDError
from .inference import Predictor
from .preprocess import to_network_input

# The last residual stage of the torchvision ResNets this project trains: the finest features that still see
# the whole class decision (only pooling and the classifier follow).
DEFAULT_LAYER = "layer4"


def grad_cam(predictor: Predictor, grey: np.ndarray, target_class: int, layer: str = DEFAULT_LAYER) -> np.ndarray:
    """Grad-CAM of `target_class` for a decoded grey image, as float32 in [0, 1] with the image's shape.

    `grey` is the full-size uint8 image (`data.read_grey`); it is resized to the checkpoint's input exactly as
    for prediction. The map is the ReLU of the stage's activations weighted by the spatially averaged
    gradients of the class logit, upsampled bilinearly and divided by its maximum; where nothing in the image
    raised the class score it is zero everywhere.
    """
    if not 0 <= target_class < len(predictor.classes):
        raise IKDError(f"class index {target_class} out of range: the model has {len(predictor.classes)} classes")
    try:
        stage = predictor.model.get_submodule(layer)
    except AttributeError as exc:
        raise IKDError(f"the model has no layer {layer!r} for Grad-CAM") from exc

    pixels = predictor.prepare(grey).unsqueeze(0)
    captured: list[torch.Tensor] = []
    hook = stage.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        # Callers may hold inference mode (which no enable_grad can undo); leave it for this one pass.
        with torch.inference_mode(False), torch.enable_grad():
            x = to_network_input(pixels, predictor.device, predictor.normalisation)
            # Gradients must reach the activations even if the model's parameters are frozen.
            x.requires_grad_(True)
            logits = predictor.model(x)
            activation = captured[0]
            (gradient,) = torch.autograd.grad(logits[0, target_class], activation)
    finally:
        hook.remove()

    with torch.no_grad():
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * activation).sum(dim=1, keepdim=True)).float()
        cam = F.interpolate(cam, size=tuple(grey.shape), mode="bilinear", align_corners=False)[0, 0]
        peak = cam.max()
        if peak > 0:
            cam /= peak
        return cam.clamp_(0.0, 1.0).cpu().numpy()
