"""gsbench.io's own decoder of greyscale PNGs (zlib + compiled unfiltering) against OpenCV on the
same bytes: every filter type, 8 and 16 bits, odd sizes, PNGs from OpenCV, Pillow and a
hand-made encoder, and damaged files refused in one line."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import cv2
import numpy as np
import pytest
from PIL import Image

from gsbench import io as gio
from gsbench.errors import GsbenchError
from gsbench.io import encode_png, read_label


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered(rows: np.ndarray, bpp: int, types: list[int]) -> bytes:
    """Each row of bytes filtered with its type (PNG spec. 9.2), the type byte first."""
    out, previous = [], np.zeros(rows.shape[1], np.int64)
    for row, kind in zip(rows.astype(np.int64), types):
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), previous[:-bpp]])
        if kind == 0:
            filtered = row
        elif kind == 1:
            filtered = row - left
        elif kind == 2:
            filtered = row - previous
        elif kind == 3:
            filtered = row - (left + previous) // 2
        else:
            p = left + previous - upper_left
            pa, pb, pc = abs(p - left), abs(p - previous), abs(p - upper_left)
            filtered = row - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, upper_left))
        out.append(bytes([kind]) + (filtered % 256).astype(np.uint8).tobytes())
        previous = row
    return b"".join(out)


def hand_made_png(array: np.ndarray, types: list[int], idat_parts: int = 3,
                  extra: tuple[tuple[bytes, bytes], ...] = ((b"tEXt", b"Comment\x00hand made"),)) -> bytes:
    """A greyscale PNG of ``array`` (uint8 or uint16) with the given filter type per row, its
    image data split over several IDAT chunks, and extra chunks after IHDR."""
    height, width = array.shape
    depth = 16 if array.dtype == np.uint16 else 8
    rows = np.frombuffer(array.astype(">u2" if depth == 16 else np.uint8).tobytes(), np.uint8)
    data = zlib.compress(_filtered(rows.reshape(height, -1), depth // 8, types))
    cut = np.linspace(0, len(data), idat_parts + 1).astype(int)
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0))]
    chunks += [_chunk(kind, body) for kind, body in extra]
    chunks += [_chunk(b"IDAT", data[a:b]) for a, b in zip(cut[:-1], cut[1:])]
    return gio._PNG_SIGNATURE + b"".join(chunks) + _chunk(b"IEND", b"")


def _maps(seed: int, shape: tuple[int, int], dtype) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 256 if dtype == np.uint8 else 65536
    smooth = np.repeat(rng.integers(0, top, (shape[0], 1)), shape[1], axis=1)
    noisy = rng.integers(0, top, shape)
    return np.where(rng.random(shape) < 0.3, noisy, smooth).astype(dtype)


def _opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _read(tmp_path, data: bytes, name: str = "map.png") -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(data)
    return read_label(path)


def _pillow_png(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    image = Image.fromarray(array) if array.dtype == np.uint8 else Image.fromarray(array.astype(np.int32), "I")
    if array.dtype == np.uint16:
        image = image.convert("I;16")
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 33), (40, 61)])
def test_every_filter_type_decodes_like_opencv(tmp_path, dtype, shape):
    array = _maps(shape[0] * shape[1], shape, dtype)
    types = [k % 5 for k in range(shape[0])]  # 0, 1, 2, 3, 4, 0, ...
    for start in range(5):  # each type also as the first row (no row above)
        data = hand_made_png(array, types[start:] + types[:start])
        got = _read(tmp_path, data)
        assert got.dtype == dtype and np.array_equal(got, array) and np.array_equal(got, _opencv(data))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_opencv_and_pillow_files_decode_alike(tmp_path, dtype):
    array = _maps(3, (37, 50), dtype)
    for data in (encode_png(array), _pillow_png(array)):
        assert gio._decode_grey_png(tmp_path / "x.png", data) is not None  # the fast path ran
        got = _read(tmp_path, data)
        assert got.dtype == dtype and np.array_equal(got, array)


def test_other_pngs_are_left_to_opencv(tmp_path, monkeypatch):
    array = _maps(4, (6, 9), np.uint8)
    with_gamma = hand_made_png(array, [1] * 6, extra=((b"gAMA", struct.pack(">I", 45455)),))
    assert gio._decode_grey_png(tmp_path / "x.png", with_gamma) is None
    assert np.array_equal(_read(tmp_path, with_gamma), array)
    rgb = encode_png(np.dstack([array] * 3))
    assert gio._decode_grey_png(tmp_path / "x.png", rgb) is None
    monkeypatch.setattr(gio._UNFILTER, "get", lambda: None)  # no compiler: OpenCV throughout
    plain = hand_made_png(array, [4] * 6)
    assert gio._decode_grey_png(tmp_path / "x.png", plain) is None
    assert np.array_equal(_read(tmp_path, plain), array)


def test_damaged_files_are_refused_in_one_line(tmp_path):
    array = _maps(5, (8, 12), np.uint8)
    data = bytearray(hand_made_png(array, [1] * 8, idat_parts=1))
    idat = data.index(b"IDAT")
    flipped = bytearray(data)
    flipped[idat + 6] ^= 0xFF  # inside the image data: its chunk's CRC no longer holds
    with pytest.raises(GsbenchError, match=r"map\.png: not a readable image \(PNG chunk 'IDAT' "
                                           r"at byte \d+ fails its CRC\)"):
        _read(tmp_path, bytes(flipped))

    def with_image_data(raw: bytes) -> bytes:
        start = data.index(b"IDAT") - 4
        length = int.from_bytes(data[start:start + 4], "big")
        return bytes(data[:start]) + _chunk(b"IDAT", raw) + bytes(data[start + 12 + length:])

    with pytest.raises(GsbenchError, match=r"not a readable image \(PNG image data: .*\)"):
        _read(tmp_path, with_image_data(b"not a zlib stream"))
    short = zlib.compress(_filtered(array[:-1], 1, [1] * 7))
    with pytest.raises(GsbenchError, match=r"holds other than the 104 bytes of 8 rows of 12 "
                                           r"8-bit pixels"):
        _read(tmp_path, with_image_data(short))
    unknown = bytearray(_filtered(array, 1, [1] * 8))
    unknown[3 * 13] = 7  # row 3's filter type
    with pytest.raises(GsbenchError, match=r"PNG row 3 has the unknown filter type 7"):
        _read(tmp_path, with_image_data(zlib.compress(bytes(unknown))))


def test_a_damaged_text_chunk_is_skipped_as_libpng_skips_it(tmp_path):
    array = _maps(6, (5, 9), np.uint8)
    data = bytearray(hand_made_png(array, [2] * 5))
    text = data.index(b"tEXt")
    data[text + 6] ^= 0xFF  # the text's CRC no longer holds; the pixels are untouched
    assert np.array_equal(_opencv(bytes(data)), array)
    assert gio._decode_grey_png(tmp_path / "x.png", bytes(data)) is not None
    assert np.array_equal(_read(tmp_path, bytes(data)), array)
