"""Prediction with a trained checkpoint: the one code path of `ikd predict`, `ikd evaluate` and the viewer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data import ImageDecodeError, decode_for_network, list_image_files, resize_grey
from .errors import IKDError
from .models import Checkpoint, load_checkpoint
from .preprocess import Normalisation, to_network_input


@dataclass
class Prediction:
    file: str
    label: str | None
    probabilities: dict[str, float]
    error: str | None = None

    def to_dict(self) -> dict:
        data = {"file": self.file, "label": self.label, "probabilities": self.probabilities}
        if self.error:
            data["error"] = self.error
        return data


class Predictor:
    """A checkpoint ready to classify images, with the preprocessing it was trained with."""

    def __init__(self, checkpoint: str | os.PathLike | Checkpoint, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.device = torch.device(device)
        self.model = self.checkpoint.build().to(self.device).eval()
        self.classes = self.checkpoint.classes
        self.image_size = self.checkpoint.image_size
        self.normalisation = Normalisation.from_dict(self.checkpoint.meta.get("normalisation"))

    def prepare(self, grey: np.ndarray) -> torch.Tensor:
        """A decoded full-size grey image -> the network's uint8 input at the checkpoint's resolution."""
        return torch.from_numpy(np.ascontiguousarray(resize_grey(grey, self.image_size)))

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        """uint8 [N, S, S] at the checkpoint's resolution -> class probabilities [N, K]."""
        with torch.inference_mode():
            logits = self.model(to_network_input(pixels, self.device, self.normalisation))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predict_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 32) -> list[Prediction]:
        """One Prediction per file, in order; a file that cannot be decoded gets `error` instead of a label."""
        results: list[Prediction | None] = [None] * len(paths)
        batch, where = [], []

        def flush():
            if batch:
                probs = self.probabilities(torch.from_numpy(np.stack(batch)))
                for i, p in zip(where, probs):
                    results[i] = self._prediction(str(paths[i]), p)
                batch.clear()
                where.clear()

        for i, path in enumerate(paths):
            try:
                batch.append(decode_for_network(path, self.image_size))
                where.append(i)
            except ImageDecodeError as exc:
                results[i] = Prediction(str(path), None, {}, error=str(exc))
            if len(batch) >= batch_size:
                flush()
        flush()
        return results  # type: ignore[return-value]

    def _prediction(self, file: str, probs: np.ndarray) -> Prediction:
        return Prediction(file, self.classes[int(np.argmax(probs))],
                          {name: float(p) for name, p in zip(self.classes, probs)})


def image_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand folders (recursively, sorted, links to folders not followed) into their image files."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(list_image_files(item, skipped=[]))
        elif item.exists():
            files.append(item)
        else:
            raise IKDError(f"no such file or folder: {item}")
    return files
