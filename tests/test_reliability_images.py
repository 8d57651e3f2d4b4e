"""Broken images are data, not crashes: each becomes a blank image and is counted in run.json.

Colour modes (greyscale, CMYK, palette, alpha) and EXIF rotation are in test_image.py.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comp.models._vision import open_rgb
from comp.project import Project
from tests.conftest import assert_store_intact, comp, finished_run


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _decompression_bomb() -> bytes:
    """A 100-byte PNG that claims 30000 × 30000 pixels (2.7 GB once decoded)."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0")) + _png_chunk(b"IEND", b""))


def _replace_with_folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


BROKEN = {
    "truncated": lambda path: path.write_bytes(_jpeg()[: len(_jpeg()) // 2]),
    "zero-bytes": lambda path: path.write_bytes(b""),
    "not-an-image": lambda path: path.write_text("<html>404 not found</html>"),
    "decompression-bomb": lambda path: path.write_bytes(_decompression_bomb()),
    "missing": lambda path: path.unlink(missing_ok=True),
    "a-folder": _replace_with_folder,
}
STATUS = {"missing": "missing", "a-folder": "missing"}  # the rest cannot be decoded


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_image_is_reported_not_raised(tmp_path, kind):
    path = tmp_path / "product.jpg"
    BROKEN[kind](path)
    assert open_rgb(str(path), size=32) == (None, STATUS.get(kind, "corrupt"))


@pytest.mark.parametrize("mode", ["I;16", "1", "F", "LAB"])
def test_unusual_colour_modes_load_as_rgb(tmp_path, mode):
    path = tmp_path / f"image.{'png' if mode in {'I;16', '1'} else 'tiff'}"
    Image.new(mode, (12, 10)).save(path)
    image, status = open_rgb(str(path))
    assert status == "ok" and image.mode == "RGB" and image.size == (12, 10)


def test_an_image_run_with_every_kind_of_broken_image_counts_them(tiny):
    competition = Project.open(tiny).competition
    paths = competition.train.image_paths
    readable = [Path(p) for p in paths if open_rgb(p)[1] == "ok"]
    before = {"missing": sum(open_rgb(p)[1] == "missing" for p in paths)}
    before["corrupt"] = len(paths) - len(readable) - before["missing"]
    for path, spoil in zip(readable, BROKEN.values(), strict=False):
        spoil(path)
    test_path = Path(competition.test.image_paths[0])
    shutil.copy(readable[0], test_path)  # the truncated JPEG

    comp("run", "image", "--set", "backbone=resnet10t", "--set", "image_size=16",
         "--set", "epochs=1", "--run-id", "broken", workspace=tiny)
    record, oof, _ = finished_run(tiny, "broken")
    assert np.isfinite(oof).all()
    stats = record["stats"]
    assert stats["missing_images"] == before["missing"] + 2
    assert stats["corrupt_images"] == before["corrupt"] + 4
    assert stats["test_corrupt_images"] >= 1
    assert [e["state"] for e in assert_store_intact(tiny)] == ["done"]
