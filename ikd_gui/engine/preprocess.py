"""Turning uint8 grey pixels into network input, and batch augmentation on the device.

Training, evaluation, the CLI's predict and the app's viewer all go through `to_network_input`, so the
same image gives the same tensor everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return {"grey": "replicated to 3 channels", "scale": "1/255", "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Normalisation":
        if not values:
            return cls()
        return cls(tuple(values.get("mean", IMAGENET_MEAN)), tuple(values.get("std", IMAGENET_STD)))


def to_unit_grey(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W] -> float [N, 1, H, W] in [0, 1] on `device`."""
    return pixels.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)


def normalise(x: torch.Tensor, normalisation: Normalisation, channels_last: bool = False) -> torch.Tensor:
    """float [N, 1, H, W] in [0, 1] -> normalised [N, 3, H, W]."""
    mean = torch.tensor(normalisation.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(normalisation.std, device=x.device).view(1, 3, 1, 1)
    x = (x.expand(-1, 3, -1, -1) - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def to_network_input(pixels: torch.Tensor, device: torch.device, normalisation: Normalisation,
                     channels_last: bool = False) -> torch.Tensor:
    """uint8 [N, H, W] grey -> the normalised float [N, 3, H, W] the network takes."""
    return normalise(to_unit_grey(pixels, device), normalisation, channels_last)


def augment_batch(x: torch.Tensor, generator: torch.Generator, degrees: float = 7.0, zoom: float = 0.1,
                  shift: float = 0.05) -> torch.Tensor:
    """Small random rotation, zoom and shift per image of a [N, 1, H, W] batch in [0, 1], as one resampling.

    No flips: left and right matter on a chest radiograph. Parameters come from a CPU generator, so a run is
    reproducible whatever the device. Pixels from outside the image are black.
    """
    n = x.shape[0]
    params = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = params[:, 0] * math.radians(degrees)
    scale = 1.0 + params[:, 1] * zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, params[:, 2] * shift * 2], 1),
                         torch.stack([sin, cos, params[:, 3] * shift * 2], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
