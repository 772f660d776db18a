"""The fault-injection image set: every kind of file a user's downloaded folder may hold."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# name -> what must happen: "decoded" or "skipped"
EXPECTED = {
    "zero-byte.jpeg": "skipped",
    "truncated.jpeg": "skipped",
    "random-bytes.jpeg": "skipped",
    "text.png": "skipped",
    "sixteen-bit.png": "decoded",
    "rgba.png": "decoded",
    "palette.png": "decoded",
    "cmyk.jpeg": "decoded",
    "one-pixel.png": "decoded",
    "bomb.png": "skipped",
    "exif-rotated.jpeg": "decoded",
    "röntgen bild ü.jpeg": "decoded",
    "loop.jpeg": "skipped",
}
IGNORED = (".hidden.jpeg", ".DS_Store", "Thumbs.db")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels: a decompression bomb if anyone believed it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def write_fault_set(folder: Path, real_xray: Path) -> dict[str, str]:
    """Write every fault of EXPECTED (plus ignored hidden files) into `folder`, made from a real X-ray."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = real_xray.read_bytes()
    grey = np.asarray(Image.open(real_xray).convert("L"))
    (folder / "zero-byte.jpeg").write_bytes(b"")
    (folder / "truncated.jpeg").write_bytes(raw[: len(raw) // 3])
    (folder / "random-bytes.jpeg").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "text.png").write_text("this is a text file with a picture's name")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "sixteen-bit.png")
    Image.fromarray(grey).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(grey).convert("P").save(folder / "palette.png")
    Image.fromarray(grey).convert("CMYK").save(folder / "cmyk.jpeg")
    Image.new("L", (1, 1), 128).save(folder / "one-pixel.png")
    (folder / "bomb.png").write_bytes(png_header_only(60000, 60000))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(grey[:, :150]).save(folder / "exif-rotated.jpeg", exif=exif)
    (folder / "röntgen bild ü.jpeg").write_bytes(raw)
    os.symlink(folder / "loop.jpeg", folder / "loop-partner.jpeg")
    os.symlink(folder / "loop-partner.jpeg", folder / "loop.jpeg")
    os.symlink(folder, folder / "folder-loop")  # a link to its own folder
    (folder / ".hidden.jpeg").write_bytes(raw)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\0")
    return EXPECTED
