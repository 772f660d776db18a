"""Dataset discovery, labelling, splitting, decoding and the decode-once cache, on real X-rays."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ikd_gui.engine import data
from ikd_gui.engine.errors import IKDError


def _real_xray(demo_data: Path) -> Path:
    return sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]


def test_demo_set_is_found_in_the_kermany_layout(demo_data):
    scan = data.scan_dataset(demo_data)
    assert scan.layout == "kermany"
    assert scan.classes == ["NORMAL", "PNEUMONIA"]
    assert scan.counts() == {"train": {"NORMAL": 80, "PNEUMONIA": 80}}
    assert scan.skipped == []


def test_three_class_labels_come_from_file_names(demo_data):
    scan = data.scan_dataset(demo_data, "three-class")
    assert scan.classes == ["NORMAL", "BACTERIA", "VIRUS"]
    assert scan.counts()["train"] == {"NORMAL": 80, "BACTERIA": 40, "VIRUS": 40}
    for sample in scan.splits["train"]:
        name = sample.path.name
        expected = "NORMAL" if sample.path.parent.name == "NORMAL" else ("BACTERIA" if "_bacteria_" in name else "VIRUS")
        assert scan.classes[sample.label] == expected


def test_class_per_folder_tree_and_other_files_reported(tmp_path, demo_data):
    source = _real_xray(demo_data)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            shutil.copy(source, tmp_path / cls / f"{i}.jpeg")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "dogs" / ".DS_Store").write_bytes(b"\0")
    scan = data.scan_dataset(tmp_path)
    assert scan.layout == "folders"
    assert scan.classes == ["cats", "dogs"]
    assert scan.counts() == {"train": {"cats": 3, "dogs": 3}}
    assert [p.name for p, _ in scan.skipped] == ["notes.txt"]


def test_missing_and_empty_folders_are_one_line_errors(tmp_path):
    with pytest.raises(IKDError, match="not found"):
        data.scan_dataset(tmp_path / "nope")
    with pytest.raises(IKDError, match="no images in class folders"):
        data.scan_dataset(tmp_path)


def test_validation_split_is_stratified_seeded_and_disjoint(demo_data):
    scan = data.scan_dataset(demo_data)
    splits, origin = data.resolve_splits(scan, 0.1, seed=3)
    again, _ = data.resolve_splits(scan, 0.1, seed=3)
    other, _ = data.resolve_splits(scan, 0.1, seed=4)
    assert "10% of train" in origin
    val = {s.path for s in splits["val"]}
    train = {s.path for s in splits["train"]}
    assert not val & train
    assert val | train == {s.path for s in scan.splits["train"]}
    assert [s.label for s in splits["val"]].count(0) == 8 and [s.label for s in splits["val"]].count(1) == 8
    assert val == {s.path for s in again["val"]}
    assert val != {s.path for s in other["val"]}
    assert "test" not in splits


def _kermany_copy(tmp_path: Path, demo_data: Path, n_val: int, n_test: int) -> Path:
    root = tmp_path / "chest_xray"
    sources = {c: sorted((demo_data / "chest_xray" / "train" / c).glob("*.jpeg")) for c in ("NORMAL", "PNEUMONIA")}
    for cls, files in sources.items():
        layout = {"train": files[:20], "val": files[20:20 + n_val], "test": files[60:60 + n_test]}
        for split, chosen in layout.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, root / split / cls / f.name)
    return tmp_path


def test_tiny_val_split_is_folded_into_train_and_test_is_only_reported(tmp_path, demo_data):
    root = _kermany_copy(tmp_path, demo_data, n_val=8, n_test=5)
    scan = data.scan_dataset(root)
    assert set(scan.splits) == {"train", "val", "test"}
    splits, origin = data.resolve_splits(scan)
    assert "folded into train" in origin
    assert len(splits["train"]) + len(splits["val"]) == 56
    assert {s.path for s in splits["test"]} == {s.path for s in scan.splits["test"]}
    assert not {s.path for s in splits["test"]} & ({s.path for s in splits["train"]} | {s.path for s in splits["val"]})


def test_a_large_enough_val_split_is_used_as_is(tmp_path, demo_data):
    root = _kermany_copy(tmp_path, demo_data, n_val=30, n_test=0)
    scan = data.scan_dataset(root)
    splits, origin = data.resolve_splits(scan)
    assert "own val split" in origin
    assert {s.path for s in splits["val"]} == {s.path for s in scan.splits["val"]}


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "P", "CMYK", "LA"])
def test_every_image_mode_decodes_to_the_same_grey_picture(tmp_path, demo_data, mode):
    reference = np.asarray(Image.open(_real_xray(demo_data)).convert("L"))
    if mode == "I;16":
        image = Image.fromarray(reference.astype(np.uint16) * 257)
    elif mode in ("RGBA", "LA"):
        image = Image.fromarray(reference).convert(mode)  # fully opaque
    else:
        image = Image.fromarray(reference).convert(mode)
    suffix = ".jpeg" if mode == "CMYK" else (".tiff" if mode == "I;16" else ".png")
    path = tmp_path / f"image{suffix}"
    image.save(path)
    grey = data.read_grey(path)
    assert grey.dtype == np.uint8 and grey.shape == reference.shape
    tolerance = 12 if mode in ("CMYK", "P") else 1
    assert np.corrcoef(grey.ravel(), reference.ravel())[0, 1] > 0.97
    if mode not in ("CMYK", "P", "I;16"):
        assert np.abs(grey.astype(int) - reference).max() <= tolerance


def test_exif_rotation_is_applied(tmp_path, demo_data):
    reference = Image.open(_real_xray(demo_data)).convert("L").crop((0, 0, 224, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpeg"
    reference.save(path, exif=exif)
    assert data.read_grey(path).shape == (224, 150)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_hostile_files_raise_decode_errors_naming_the_file(tmp_path, demo_data):
    real = _real_xray(demo_data).read_bytes()
    cases = {
        "empty.jpeg": b"",
        "truncated.jpeg": real[: len(real) // 3],
        "random.jpeg": np.random.default_rng(0).bytes(4096),
        "text.png": b"hello, I am not a picture",
        "bomb.png": _png_header_only(60000, 60000),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(data.ImageDecodeError, match=name.replace(".", r"\.")):
            data.read_grey(tmp_path / name)
    with pytest.raises(data.ImageDecodeError, match="too large"):
        data.read_grey(tmp_path / "bomb.png")


def test_decode_all_skips_bad_files_and_caches_the_rest(tmp_path, demo_data):
    files = sorted((demo_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    work = tmp_path / "images"
    work.mkdir()
    paths = [Path(shutil.copy(f, work / f.name)) for f in files]
    bad = work / "bad.jpeg"
    bad.write_bytes(b"broken")
    paths.append(bad)
    cache = tmp_path / "cache"

    first = data.decode_all(paths, 48, cache)
    assert not first.from_cache
    assert first.ok.tolist() == [True, True, True, True, False]
    assert list(first.errors) == [str(bad)]
    assert first.pixels.shape == (5, 48, 48) and first.pixels.dtype == np.uint8
    np.testing.assert_array_equal(first.pixels[0], data.decode_for_network(paths[0], 48))

    second = data.decode_all(paths, 48, cache)
    assert second.from_cache
    np.testing.assert_array_equal(first.pixels, second.pixels)
    assert second.errors == first.errors

    # A changed file, or another resolution, is a different cache entry.
    assert not data.decode_all(paths, 32, cache).from_cache
    import os
    os.utime(paths[0], ns=(1_000_000_000, 1_000_000_000))
    assert not data.decode_all(paths, 48, cache).from_cache


def test_real_dicom_files_decode(shared_data):
    dicom_dir = shared_data / "dicom"
    pytest.importorskip("pydicom")
    for path in sorted(dicom_dir.glob("*.dcm")):
        grey = data.read_grey(path)
        assert grey.dtype == np.uint8 and grey.ndim == 2 and min(grey.shape) >= 1000
        assert grey.std() > 10  # a real picture, not a flat field


def test_full_resolution_originals_decode_to_the_network_size(shared_data):
    paths = sorted((shared_data / "chest_xray_fullres_sample" / "PNEUMONIA").glob("*.jpeg"))[:3]
    for path in paths:
        assert data.decode_for_network(path, 224).shape == (224, 224)
