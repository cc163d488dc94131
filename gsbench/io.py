"""File I/O shared by every part of gsbench: atomic writes and image reads with clear errors.

Every file gsbench writes goes through :func:`atomic_write_bytes` (write to a temporary file in
the same folder, then ``os.replace``), so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gsbench.errors import GsbenchError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GsbenchError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GsbenchError(f"{path}: not valid JSON ({exc})") from None


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 HxW, HxWx3 (RGB) or HxWx4 (RGBA) array."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA if array.shape[2] == 4
                             else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise GsbenchError(f"could not encode an array of shape {array.shape} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically write a label map (HxW) or an RGB image (HxWx3) as PNG."""
    atomic_write_bytes(path, encode_png(array))


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel label PNG unchanged (uint8 or uint16), or raise naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: file not found")
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise GsbenchError(f"{path}: not a readable image")
    if array.ndim != 2:
        raise GsbenchError(f"{path}: expected a single-channel label image, got shape {array.shape}")
    return array


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of indexed-colour PNGs


def png_header(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(height, width, colour type) from a PNG's IHDR (26 bytes read), or None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), head[25]


def png_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from a PNG header, or None for other files."""
    header = png_header(path)
    return None if header is None else header[:2]


def read_label_indices(path: str | os.PathLike) -> np.ndarray:
    """A label map as stored: indexed-colour PNGs (PASCAL VOC ``SegmentationClass``,
    mmsegmentation's palette predictions) give their palette indices, not the colours OpenCV
    would expand them to; every other image is read unchanged (:func:`read_label`)."""
    header = png_header(path)
    if header is None or header[2] != _PNG_PALETTE:
        return read_label(path)
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode != "P":
                raise GsbenchError(f"{path}: palette PNG decoded as mode {image.mode!r}, not 'P'")
            return np.array(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise GsbenchError(f"{path}: not a readable image ({exc})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image as HxWx3 uint8 RGB, or raise naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: file not found")
    array = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if array is None:
        raise GsbenchError(f"{path}: not a readable image")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
