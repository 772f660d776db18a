"""Datasets: finding images, labelling them, splitting, decoding and the decode-once cache.

Everything here is Qt-free and torch-light: decoding produces uint8 numpy arrays, and the cache hands the
training loop one uint8 tensor per split so that augmentation can run on whole batches (on the GPU when
there is one).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from .errors import IKDError

RASTER_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_EXTENSIONS = {".dcm", ".dicom"}
IMAGE_EXTENSIONS = RASTER_EXTENSIONS | DICOM_EXTENSIONS
SPLIT_NAMES = ("train", "val", "test")
LABEL_SCHEMES = ("binary", "three-class")
THREE_CLASS_NAMES = ("NORMAL", "BACTERIA", "VIRUS")

# Pixel budget for one image: far above any radiograph (a 4k x 4k detector is 16.8 MP) yet small enough that
# a forged header cannot make us allocate gigabytes.
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Normalisation of the grey image replicated to three channels: ImageNet statistics, so that ImageNet
# initialised networks see inputs in the range they were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A dataset's own val split is used only when it is at least this large (the public one has 16 images).
MIN_VAL_IMAGES = 50


class ImageDecodeError(IKDError):
    """A file that is not a decodable image."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DatasetScan:
    """What was found in a dataset folder."""

    root: Path
    layout: str  # "kermany" (train/val/test folders) or "folders" (one class per folder)
    label_scheme: str
    classes: list[str]
    splits: dict[str, list[Sample]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        table = {}
        for split, samples in self.splits.items():
            per_class = dict.fromkeys(self.classes, 0)
            for sample in samples:
                per_class[self.classes[sample.label]] += 1
            table[split] = per_class
        return table



def is_hidden(name: str) -> bool:
    return name.startswith(".") or name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def list_image_files(folder: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """Image files below `folder`, sorted; other files are reported in `skipped`.

    Symbolic links to folders are not followed, which also makes link loops harmless.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_hidden(name):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((path, f"not an image file type ({path.suffix or 'no extension'})"))
            elif not path.is_file():
                skipped.append((path, "not a regular file (broken link?)"))
            else:
                found.append(path)
    return found


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not is_hidden(p.name))


def _find_kermany_root(root: Path) -> Path | None:
    for candidate in (root, root / "chest_xray"):
        if (candidate / "train").is_dir():
            return candidate
    return None


def three_class_label(path: Path, folder_class: str) -> str | None:
    """NORMAL / BACTERIA / VIRUS from the dataset's file-name convention; None when the name says neither."""
    if folder_class.upper() == "NORMAL":
        return "NORMAL"
    name = path.name.lower()
    if "_bacteria_" in name:
        return "BACTERIA"
    if "_virus_" in name:
        return "VIRUS"
    return None


def scan_dataset(root: str | os.PathLike, label_scheme: str = "binary") -> DatasetScan:
    """Find the images of a dataset folder and label them.

    Accepts the Kermany layout (`root/{train,val,test}/{CLASS}/*`, also wrapped in `chest_xray/`) or a plain
    class-per-folder tree (everything then counts as train). Raises IKDError with one line when the folder
    cannot be used.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise IKDError(f"dataset folder not found: {root}")
    if label_scheme not in LABEL_SCHEMES:
        raise IKDError(f"unknown label scheme {label_scheme!r}; choose one of {', '.join(LABEL_SCHEMES)}")

    skipped: list[tuple[Path, str]] = []
    kermany = _find_kermany_root(root)
    if kermany is not None:
        layout = "kermany"
        split_dirs = {s: kermany / s for s in SPLIT_NAMES if (kermany / s).is_dir()}
    else:
        layout = "folders"
        split_dirs = {"train": root}

    files_by_split: dict[str, list[tuple[Path, str]]] = {}
    for split, split_dir in split_dirs.items():
        entries = []
        for class_dir in _class_folders(split_dir):
            entries.extend((path, class_dir.name) for path in list_image_files(class_dir, skipped))
        files_by_split[split] = entries

    # Classes are the folders holding images in any split, so a split missing one class still gets the same
    # labels, and an empty folder does not become a class nobody can learn.
    all_folders = sorted({p.name for d in split_dirs.values() for p in _class_folders(d)})
    folder_classes = sorted({name for entries in files_by_split.values() for _, name in entries})
    for name in sorted(set(all_folders) - set(folder_classes)):
        skipped.append((Path(name), "class folder holds no images; ignored"))
    if not folder_classes:
        raise IKDError(f"no images in class folders under {root}: expected {{train,val,test}}/CLASS/ or CLASS/ "
                       "sub-folders with image files")

    if label_scheme == "three-class":
        if {c.upper() for c in folder_classes} != {"NORMAL", "PNEUMONIA"}:
            raise IKDError("the three-class scheme needs NORMAL and PNEUMONIA folders "
                           f"(found {', '.join(folder_classes)})")
        classes = list(THREE_CLASS_NAMES)
    else:
        classes = folder_classes

    splits: dict[str, list[Sample]] = {}
    for split, entries in files_by_split.items():
        samples = []
        for path, folder_class in entries:
            name = three_class_label(path, folder_class) if label_scheme == "three-class" else folder_class
            if name is None:
                skipped.append((path, "file name says neither _bacteria_ nor _virus_ (three-class labels)"))
                continue
            samples.append(Sample(path, classes.index(name)))
        splits[split] = samples

    if not splits.get("train"):
        raise IKDError(f"no training images found in {root}")
    return DatasetScan(root, layout, label_scheme, classes, splits, skipped)


def stratified_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` of each class (at least one image of a class with two or more), seeded."""
    if not 0.0 < fraction < 1.0:
        raise IKDError(f"validation fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    labels = sorted({s.label for s in samples})
    for label in labels:
        members = [s for s in samples if s.label == label]
        order = rng.permutation(len(members))
        n_held = int(round(len(members) * fraction))
        if len(members) >= 2:
            n_held = min(max(n_held, 1), len(members) - 1)
        else:
            n_held = 0
        held.extend(members[i] for i in order[:n_held])
        keep.extend(members[i] for i in order[n_held:])
    keep.sort(key=lambda s: str(s.path))
    held.sort(key=lambda s: str(s.path))
    return keep, held


def resolve_splits(scan: DatasetScan, val_fraction: float = 0.1, seed: int = 0) -> tuple[dict[str, list[Sample]], str]:
    """Train/val/(test) lists for a run, and a sentence saying where the validation images came from.

    The test split is only ever reported on; model selection uses val.
    """
    train = scan.splits["train"]
    val = scan.splits.get("val", [])
    if len(val) >= MIN_VAL_IMAGES:
        splits = {"train": list(train), "val": list(val)}
        origin = f"the dataset's own val split ({len(val)} images)"
    else:
        # A tiny val split (the public dataset's has 16 images) is too noisy to select a model by; fold it
        # into train and carve a stratified validation set out of the whole.
        pool = list(train) + list(val)
        kept, held = stratified_split(pool, val_fraction, seed)
        splits = {"train": kept, "val": held}
        origin = (f"{val_fraction:.0%} of train, stratified, seed {seed} ({len(held)} images)"
                  + (f"; the dataset's {len(val)}-image val split was folded into train" if val else ""))
    if scan.splits.get("test"):
        splits["test"] = list(scan.splits["test"])
    if not splits["val"]:
        raise IKDError("not enough images for a validation split (each class needs at least two images)")
    return splits, origin


# ---------------------------------------------------------------------------------------------------------
# Decoding


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Stretch any numeric grey array to uint8 over its own range."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        return np.zeros(array.shape, np.uint8)
    lo, hi = float(array[finite].min()), float(array[finite].max())
    if hi <= lo:
        return np.zeros(array.shape, np.uint8)
    scaled = (np.where(finite, array, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _pil_to_grey(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become black, the background of a radiograph.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype=np.uint8)


def _read_raster(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat it as the error it is.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                image.load()
                return _pil_to_grey(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(f"{path.name}: image too large (over {MAX_IMAGE_PIXELS:,} pixels)") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(f"{path.name}: not a readable image ({exc})") from exc


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as exc:
        raise ImageDecodeError(f"{path.name}: DICOM support needs pydicom (pip install 'ikd-gui[dicom]')") from exc
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise ImageDecodeError(f"{path.name}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in dataset:
        raise ImageDecodeError(f"{path.name}: DICOM file holds no image")
    try:
        pixels = dataset.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown"
        raise ImageDecodeError(f"{path.name}: cannot decode DICOM transfer syntax '{name}' with the installed "
                               f"decoders ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and dataset.get("SamplesPerPixel", 1) > 1:
        pixels = pixels[..., :3].mean(axis=-1)
    elif pixels.ndim == 3:  # multi-frame: the first frame
        pixels = pixels[0]
    pixels = apply_modality_lut(pixels, dataset)
    pixels = apply_voi_lut(pixels, dataset, index=0)
    grey = _to_uint8(pixels)
    if dataset.get("PhotometricInterpretation", "") == "MONOCHROME1":
        grey = 255 - grey  # MONOCHROME1 stores bright as low values
    return grey


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file (raster or DICOM) to a 2-D uint8 grey array. Raises ImageDecodeError."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"{path.name}: file not found")
    if path.stat().st_size == 0:
        raise ImageDecodeError(f"{path.name}: empty file")
    if is_dicom_file(path):
        grey = _read_dicom(path)
    else:
        grey = _read_raster(path)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageDecodeError(f"{path.name}: unexpected image shape {grey.shape}")
    return grey


def is_dicom_file(path: Path) -> bool:
    """By extension, or by the DICM marker that DICOM files carry after their 128-byte preamble."""
    return path.suffix.lower() in DICOM_EXTENSIONS or _has_dicom_preamble(path)


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def resize_grey(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size (aspect not kept, like the public 224 px release of the dataset), antialiased."""
    if grey.shape == (size, size):
        return grey
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


def decode_for_network(path: str | os.PathLike, size: int) -> np.ndarray:
    """The one decoding used for training, evaluation and prediction: grey uint8, size x size."""
    return resize_grey(read_grey(path), size)


# ---------------------------------------------------------------------------------------------------------
# Decode-once cache

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """Where decoded pixels are kept between runs: $IKD_CACHE_DIR, else the user's cache folder."""
    if os.environ.get("IKD_CACHE_DIR"):
        return Path(os.environ["IKD_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ikd-studio" / "pixels"


def cache_key(paths: Iterable[Path], size: int) -> str:
    digest = hashlib.sha256(f"format={CACHE_FORMAT};size={size}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\n{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


@dataclass
class DecodedImages:
    """Pixels of a list of files at one resolution: uint8 [N, size, size], plus the files that failed."""

    pixels: np.ndarray
    ok: np.ndarray  # bool [N]: False where the file could not be decoded
    errors: dict[str, str]  # path -> reason
    from_cache: bool


def decode_all(paths: Sequence[Path], size: int, cache_dir: Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> DecodedImages:
    """Decode and resize every file once; with `cache_dir`, reuse (and store) the result on disk.

    The cache entry is keyed by the file list, each file's size and modification time, and the resolution,
    so any change to the data makes a new entry. Entries are written atomically.
    """
    paths = [Path(p) for p in paths]
    entry = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        entry = cache_dir / f"{cache_key(paths, size)}-{size}px"
        loaded = _load_cache_entry(entry, len(paths), size)
        if loaded is not None:
            pixels, ok, errors = loaded
            return DecodedImages(pixels, ok, errors, from_cache=True)

    pixels = np.zeros((len(paths), size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    errors: dict[str, str] = {}
    for index, path in enumerate(paths):
        try:
            pixels[index] = decode_for_network(path, size)
            ok[index] = True
        except ImageDecodeError as exc:
            errors[str(path)] = str(exc)
        if progress is not None:
            progress(index + 1, len(paths))

    if entry is not None:
        _store_cache_entry(entry, pixels, ok, errors)
    return DecodedImages(pixels, ok, errors, from_cache=False)


def _load_cache_entry(entry: Path, count: int, size: int):
    pixels_file, meta_file = entry.with_suffix(".npy"), entry.with_suffix(".json")
    try:
        meta = json.loads(meta_file.read_text())
        pixels = np.load(pixels_file, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if pixels.shape != (count, size, size) or pixels.dtype != np.uint8 or len(meta.get("ok", [])) != count:
        return None
    return pixels, np.asarray(meta["ok"], bool), dict(meta.get("errors", {}))


def _store_cache_entry(entry: Path, pixels: np.ndarray, ok: np.ndarray, errors: dict[str, str]) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(entry.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, pixels)
        os.replace(tmp, entry.with_suffix(".npy"))
        meta_tmp = entry.with_name(entry.name + f".{os.getpid()}.tmp.json")
        meta_tmp.write_text(json.dumps({"ok": ok.tolist(), "errors": errors}))
        os.replace(meta_tmp, entry.with_suffix(".json"))
    except OSError:
        # A cache that cannot be written only costs speed next time.
        pass
