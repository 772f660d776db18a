"""Pixels for display: the values a viewer windows, next to the uint8 grey the network sees.

`data.read_grey` is the one decoder of network input: 8-bit grey with the file's VOI window applied and
MONOCHROME1 inverted. A viewer needs more than those 256 levels to window a 15-bit radiograph or a 16-bit PNG,
the window the file recommends, and whether low values are bright. `read_display_image` adds these on top of
`read_grey`, which still decodes (and validates, and words the errors of) every file first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from . import data

# Pillow modes that hold more than 8 bits of grey; `read_grey` stretches them to uint8.
HIGH_PRECISION_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}

# Percentiles for window presets come from a strided sample of about this many pixels: enough for stable
# values, and fast on a 4k x 4k detector image.
PERCENTILE_SAMPLES = 250_000


@dataclass(frozen=True)
class DisplayImage:
    """One decoded image, for a viewer.

    `grey` is exactly `data.read_grey(path)`: what the network is given (after resizing). `values` has the same
    shape in the file's own units (DICOM modality values, 16-bit levels), for window/level and the pixel readout.
    """

    path: str
    grey: np.ndarray
    values: np.ndarray
    window: tuple[float, float]  # (low, high) values shown black to white: the file's VOI window or full range
    inverted: bool  # MONOCHROME1: low values are bright
    description: str

    @property
    def value_range(self) -> tuple[float, float]:
        return float(np.nanmin(self.values)), float(np.nanmax(self.values))

    @property
    def height(self) -> int:
        return int(self.grey.shape[0])

    @property
    def width(self) -> int:
        return int(self.grey.shape[1])

    def percentile_window(self, darkest: float, brightest: float) -> tuple[float, float]:
        """The window showing the pixels between two brightness percentiles black to white.

        Brightness, not value: on a MONOCHROME1 image the brightest pixels have the lowest values.
        """
        step = max(1, int(np.sqrt(self.values.size / PERCENTILE_SAMPLES)))
        sample = self.values[::step, ::step]
        if self.inverted:
            darkest, brightest = 100.0 - brightest, 100.0 - darkest
        low, high = np.nanpercentile(sample, [darkest, brightest])
        return float(low), float(max(high, low + 1e-6))


def read_display_image(path: str | os.PathLike) -> DisplayImage:
    """Decode a file for display. Raises data.ImageDecodeError with the same messages as `read_grey`."""
    path = Path(path)
    grey = data.read_grey(path)
    if data.is_dicom_file(path):
        high_precision = _dicom_values(path)
    else:
        high_precision = _raster_values(path)
    if high_precision is not None and high_precision[0].shape == grey.shape:
        values, window, inverted, description = high_precision
    else:
        # 8-bit files, and anything unusual (colour or multi-frame DICOM): the network's grey is the display.
        values, window, inverted = grey, (0.0, 255.0), False
        description = f"{path.suffix.lstrip('.').upper() or 'image'}, {grey.shape[1]} x {grey.shape[0]}, 8-bit grey"
    return DisplayImage(str(path), grey, values, window, inverted, description)


def _raster_values(path: Path):
    with Image.open(path) as image:
        if image.mode not in HIGH_PRECISION_MODES:
            return None
        image.load()
        depth = {"F": "floating-point", "I": "integer"}.get(image.mode, "16-bit")
        values = np.asarray(ImageOps.exif_transpose(image))
    if not np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.float32)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    # The network's grey is these values stretched over their range, so the full range is the same picture.
    window = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    kind = image.format or path.suffix.lstrip(".").upper()
    description = f"{kind}, {values.shape[1]} x {values.shape[0]}, {depth} grey"
    return values, window, False, description


def _dicom_values(path: Path):
    """Modality values, VOI window and photometric interpretation of a single-frame grey DICOM, else None.

    `read_grey` has already decoded this file, so decoding cannot fail here for reasons it did not report.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    if pixels.ndim != 2:
        return None
    values = apply_modality_lut(pixels, dataset)
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is not None and width is not None:
        # The standard's linear VOI has half-value offsets too small to see; centre +- width / 2 is the window.
        center, width = _first(center), max(_first(width), 1.0)
        window = (center - width / 2.0, center + width / 2.0)
    elif "VOILUTSequence" in dataset:
        # A lookup-table VOI has no centre and width to drag; show its output over its own range instead.
        values = apply_voi_lut(values, dataset, index=0)
        window = (float(values.min()), float(values.max()))
    else:
        window = (float(values.min()), float(values.max()))
    if values.dtype.kind == "f":
        values = values.astype(np.float32)
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    description = ", ".join(part for part in (
        f"DICOM {dataset.get('Modality', '')}".strip(), f"{values.shape[1]} x {values.shape[0]}",
        f"{dataset.get('BitsStored', '?')}-bit {photometric}".strip(), getattr(syntax, "name", None)) if part)
    return values, window, photometric == "MONOCHROME1", description


def _first(value) -> float:
    """WindowCenter and WindowWidth may hold several windows; the first is the file's default."""
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
