"""Prediction with a trained checkpoint: the one code path of `ikd predict`, `ikd evaluate` and the viewer."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from .data import ImageDecodeError, decode_for_network, list_image_files, resize_grey, three_class_label
from .errors import IKDError
from .metrics import classification_metrics
from .models import Checkpoint, load_checkpoint
from .preprocess import Normalisation, to_network_input

if TYPE_CHECKING:
    from .training import CancelToken


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
        # A copy: np.asarray of a PIL image is read-only, which torch.from_numpy warns about.
        return torch.from_numpy(np.array(resize_grey(grey, self.image_size), copy=True))

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


# ---------------------------------------------------------------------------------------------------------
# Whole folders (the viewer's folder tab)

# Files per `predict_files` call: each chunk is one batch, one progress step, one table update and one
# cancellation check.
CHUNK_SIZE = 32


@dataclass(frozen=True)
class FolderRow:
    path: str
    true_class: int | None  # from the file's class sub-folder; None when unlabelled
    probabilities: np.ndarray | None  # per checkpoint class; None when the file could not be decoded
    error: str | None = None

    @property
    def predicted(self) -> int | None:
        return None if self.probabilities is None else int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())


@dataclass(frozen=True)
class FolderSummary:
    folder: str
    classes: tuple[str, ...]
    count: int
    unreadable: int
    unlabelled: int
    metrics: dict | None  # metrics.classification_metrics over the labelled, readable files
    cancelled: bool
    seconds: float


def folder_labels(files: Sequence[Path], folder: Path, classes: Sequence[str], label_scheme: str) -> list[int | None]:
    """Each file's class from the sub-folder holding it, as an index into the checkpoint's `classes`.

    Folder names match class names case-insensitively; a three-class checkpoint reads NORMAL/PNEUMONIA
    folders and file names as its training did. Files directly in `folder`, or in a folder that names none
    of the classes, are unlabelled (None).
    """
    index = {name.upper(): i for i, name in enumerate(classes)}
    labels: list[int | None] = []
    for path in files:
        if len(path.relative_to(folder).parts) < 2:
            labels.append(None)
            continue
        name = three_class_label(path, path.parent.name) if label_scheme == "three-class" else path.parent.name
        labels.append(index.get(name.upper()) if name else None)
    return labels


def run_folder_classification(predictor: Predictor, folder: str | os.PathLike, cancel: "CancelToken",
                              on_rows: Callable[[list[FolderRow], int, int], None]) -> FolderSummary:
    """Classify every image below `folder`, reporting rows as they come: on_rows(rows, done, total)."""
    started = time.perf_counter()
    folder = Path(folder)
    files = image_files([folder])
    meta = predictor.checkpoint.meta
    label_scheme = meta.get("label_scheme") or meta.get("config", {}).get("labels", "binary")
    labels = folder_labels(files, folder, predictor.classes, label_scheme)
    rows: list[FolderRow] = []
    for start in range(0, len(files), CHUNK_SIZE):
        if cancel.cancelled:
            break
        predictions = predictor.predict_files(files[start:start + CHUNK_SIZE], batch_size=CHUNK_SIZE)
        chunk = [FolderRow(p.file, label,
                           None if p.error else np.array([p.probabilities[c] for c in predictor.classes]), p.error)
                 for p, label in zip(predictions, labels[start:start + CHUNK_SIZE])]
        rows.extend(chunk)
        on_rows(chunk, len(rows), len(files))

    scored = [r for r in rows if r.true_class is not None and r.probabilities is not None]
    metrics = (classification_metrics([r.true_class for r in scored], np.stack([r.probabilities for r in scored]),
                                      predictor.classes) if scored else None)
    return FolderSummary(str(folder), tuple(predictor.classes), len(rows), sum(r.error is not None for r in rows),
                         sum(r.true_class is None for r in rows), metrics, cancel.cancelled,
                         time.perf_counter() - started)
