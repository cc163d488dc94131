"""File I/O shared by every part of gsbench: atomic writes and image reads with clear errors.

Every file gsbench writes goes through :func:`atomic_write_bytes` (write to a temporary file in
the same folder, then ``os.replace``), so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import struct
import tempfile
import warnings
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gsbench.errors import GsbenchError
from gsbench.native import NativeLibrary


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


#: The largest image gsbench decodes, in pixels (8192x8192) and along either side: the header is
#: read first, so a file that claims more is refused before any memory is allocated for it.
MAX_IMAGE_PIXELS = 1 << 26
MAX_IMAGE_SIDE = 65535

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # IHDR colour type of indexed-colour PNGs
#: The first bytes of the image formats gsbench names, whatever a file's suffix says.
_IMAGE_SIGNATURES = ((_PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"RIFF", "WebP"),
                     (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                     (b"GIF8", "GIF"), (b"P5", "PGM"), (b"P6", "PPM"))
_JPEG_SOI = b"\xff\xd8"
#: JPEG start-of-frame markers (ITU-T T.81 Table B.1): SOF0..SOF15 but DHT, JPG and DAC
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel label PNG unchanged (uint8 or uint16), or raise naming the file."""
    path = Path(path)
    return _single_channel(path, _decode(path, _checked_image_bytes(path), cv2.IMREAD_UNCHANGED))


def _single_channel(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2:
        raise GsbenchError(f"{path}: expected a single-channel label image, got shape {array.shape}")
    return array


def image_kind(path: str | os.PathLike) -> str | None:
    """The format of an image file told by its first bytes ("PNG", "JPEG", "WebP", ...), or
    None for a file of no format gsbench names; OSError when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(8)
    return next((name for magic, name in _IMAGE_SIGNATURES if head.startswith(magic)), None)


def png_header(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(height, width, colour type) from a PNG's IHDR (26 bytes read), or None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    return _png_ihdr(head)


def _png_ihdr(head: bytes) -> tuple[int, int, int] | None:
    """(height, width, colour type) of the IHDR chunk at the start of PNG bytes, or None."""
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
    path = Path(path)
    data = _checked_image_bytes(path)
    header = _png_ihdr(data)
    if header is None or header[2] != _PNG_PALETTE:
        return _single_channel(path, _decode(path, data, cv2.IMREAD_UNCHANGED))
    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as image:
            if image.mode != "P":
                raise GsbenchError(f"{path}: palette PNG decoded as mode {image.mode!r}, not 'P'")
            return np.array(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise GsbenchError(f"{path}: not a readable image ({exc})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image as HxWx3 uint8 RGB, or raise naming the file."""
    path = Path(path)
    array = _decode(path, _checked_image_bytes(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def _header_size(path: str | os.PathLike, data: bytes) -> tuple[int, int]:
    """(height, width) that the image bytes ``data`` of ``path`` declare in their header: the
    IHDR chunk of a PNG, the start-of-frame segment of a JPEG, Pillow's header parser for any
    other format. Raises naming the file when the header is missing or malformed."""
    if data.startswith(_PNG_SIGNATURE):
        header = _png_ihdr(data)
        if header is None:
            raise GsbenchError(f"{path}: not a readable image (PNG without an IHDR chunk first)")
        return header[:2]
    if data.startswith(_JPEG_SOI):
        return _jpeg_size(path, data)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError:
        raise GsbenchError(f"{path}: image header gives more than {MAX_IMAGE_PIXELS:,} "
                           f"pixels, gsbench's limit (gsbench.io.MAX_IMAGE_PIXELS)") from None
    except UnidentifiedImageError:
        raise GsbenchError(f"{path}: not a readable image (neither PNG nor JPEG, nor another "
                           f"format whose header Pillow reads)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise GsbenchError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None
    return height, width


def _jpeg_size(path: Path, data: bytes) -> tuple[int, int]:
    """(height, width) from the start-of-frame segment of JPEG bytes (ITU-T T.81 B.2.2)."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _JPEG_SOF:
            if length < 7 or position + 9 > len(data):
                break
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return height, width
        position += 2 + length
    raise GsbenchError(f"{path}: not a readable image (JPEG without a frame header)")


def _png_structure_error(data: bytes) -> str | None:
    """What is wrong with the chunk structure of PNG bytes (PNG spec. 5.3: length, type, data,
    CRC; IEND last), or None: a file cut short is refused here, in one line, rather than by
    libpng's own message on stderr. CRCs are not computed (that would add about a tenth to the
    decoding time); damage inside whole chunks is left to the decoder."""
    position, size = len(_PNG_SIGNATURE), len(data)
    while position + 12 <= size:
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        end = position + 12 + length
        if end > size:
            return (f"truncated: chunk {kind.decode('latin-1')!r} at byte {position} needs "
                    f"{end} bytes, the file has {size}")
        if kind == b"IEND":
            return None
        position = end
    return f"truncated: no IEND chunk in its {size} bytes"


def _checked_image_bytes(path: Path) -> bytes:
    """The bytes of the image file ``path``, once its header declares a size within
    :data:`MAX_IMAGE_PIXELS` and :data:`MAX_IMAGE_SIDE` and, for a PNG, its chunk structure is
    whole; otherwise raise naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GsbenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise GsbenchError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise GsbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    height, width = _header_size(path, data)
    if height < 1 or width < 1:
        raise GsbenchError(f"{path}: not a readable image (header gives a size of "
                           f"{width}x{height})")
    if height * width > MAX_IMAGE_PIXELS:
        raise GsbenchError(f"{path}: image header gives {width}x{height} = {width * height:,} "
                           f"pixels, above gsbench's limit of {MAX_IMAGE_PIXELS:,} pixels "
                           f"(8192x8192, gsbench.io.MAX_IMAGE_PIXELS)")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise GsbenchError(f"{path}: image header gives {width}x{height} pixels, above gsbench's "
                           f"limit of {MAX_IMAGE_SIDE:,} pixels per side "
                           f"(gsbench.io.MAX_IMAGE_SIDE)")
    if data.startswith(_PNG_SIGNATURE) and (problem := _png_structure_error(data)):
        raise GsbenchError(f"{path}: not a readable image (PNG {problem})")
    return data


def _decode(path: Path, data: bytes, flags: int) -> np.ndarray:
    """Decode the bytes that :func:`_checked_image_bytes` returned with OpenCV ``flags`` (grey
    PNGs read unchanged, the label maps, through :func:`_decode_grey_png` where it applies)."""
    if flags == cv2.IMREAD_UNCHANGED and data.startswith(_PNG_SIGNATURE):
        array = _decode_grey_png(path, data)
        if array is not None:
            return array
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise GsbenchError(f"{path}: not a readable image")
    return array


_UNFILTER_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One row of PNG scanline filtering undone (PNG spec. 9.2), for BPP bytes per pixel: dst =
   the row's bytes, prev = the row above (NULL for the first row). The bytes to the left
   (a, c) are carried in registers: a dependency through memory per byte would cost several
   times the arithmetic. Returns 0, or -1 for an unknown filter type. */
static inline int unfilter_row(int type, const uint8_t *src, uint8_t *dst, const uint8_t *prev,
                               int64_t n, const int bpp) {
    uint8_t a[2] = {0, 0}, c[2] = {0, 0};
    switch (type) {
    case 0: memcpy(dst, src, n); return 0;
    case 1:  /* Sub: dst = src + a */
        for (int64_t i = 0; i < n; i += bpp)
            for (int k = 0; k < bpp; k++) dst[i + k] = a[k] = (uint8_t)(src[i + k] + a[k]);
        return 0;
    case 2:  /* Up: dst = src + b */
        if (!prev) { memcpy(dst, src, n); return 0; }
        for (int64_t i = 0; i < n; i++) dst[i] = (uint8_t)(src[i] + prev[i]);
        return 0;
    case 3:  /* Average: dst = src + floor((a + b) / 2) */
        for (int64_t i = 0; i < n; i += bpp)
            for (int k = 0; k < bpp; k++) {
                int b = prev ? prev[i + k] : 0;
                dst[i + k] = a[k] = (uint8_t)(src[i + k] + ((a[k] + b) >> 1));
            }
        return 0;
    case 4:  /* Paeth: dst = src + whichever of a, b, c is nearest to a + b - c */
        for (int64_t i = 0; i < n; i += bpp)
            for (int k = 0; k < bpp; k++) {
                int b = prev ? prev[i + k] : 0, p = a[k] + b - c[k];
                int pa = abs(p - a[k]), pb = abs(p - b), pc = abs(p - c[k]);
                int predictor = pa <= pb && pa <= pc ? a[k] : pb <= pc ? b : c[k];
                dst[i + k] = a[k] = (uint8_t)(src[i + k] + predictor);
                c[k] = (uint8_t)b;
            }
        return 0;
    }
    return -1;
}

/* The rows of an inflated 8- or 16-bit greyscale PNG (height rows of 1 + rowbytes bytes: the
   filter type, then the row) unfiltered into `out` (height x rowbytes bytes; 16-bit samples
   stay big-endian). Returns -1, or the first row whose filter type is unknown. */
int64_t png_unfilter(const uint8_t *raw, uint8_t *out, int64_t height, int64_t rowbytes,
                     int bpp) {
    for (int64_t y = 0; y < height; y++) {
        const uint8_t *src = raw + y * (rowbytes + 1);
        uint8_t *dst = out + y * rowbytes;
        const uint8_t *prev = y ? dst - rowbytes : NULL;
        int bad = bpp == 1 ? unfilter_row(src[0], src + 1, dst, prev, rowbytes, 1)
                           : unfilter_row(src[0], src + 1, dst, prev, rowbytes, 2);
        if (bad) return y;
    }
    return -1;
}
"""


def _declare_unfilter(library: ctypes.CDLL) -> None:
    library.png_unfilter.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int]
    library.png_unfilter.restype = ctypes.c_int64


_UNFILTER = NativeLibrary("png_unfilter", _UNFILTER_SOURCE, _declare_unfilter,
                          purpose="PNG row unfiltering")
#: Chunks a label map's PNG may carry for :func:`_decode_grey_png`: the image's own and pure
#: metadata. Any other (transparency, gamma, significant bits, ...) leaves it to OpenCV.
_PLAIN_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"tEXt", b"zTXt", b"iTXt", b"tIME",
                               b"pHYs"})


def _decode_grey_png(path: Path, data: bytes) -> np.ndarray | None:
    """A non-interlaced 8- or 16-bit greyscale PNG (a label map, an instanceIds map) decoded
    as OpenCV's ``IMREAD_UNCHANGED`` decodes it, in about half its time: zlib's inflate of the
    image data, then the rows unfiltered by a compiled loop (libpng's row loop carries each
    byte's left neighbour through memory). The critical chunks' CRCs and the data's Adler-32 are
    checked, as libpng does. None for any other PNG, or where the loop cannot be compiled
    (:mod:`gsbench.native`): OpenCV decodes those. The chunk structure is whole
    (:func:`_png_structure_error`)."""
    library = _UNFILTER.get()
    if library is None:
        return None
    position, parts, header = len(_PNG_SIGNATURE), [], None
    while True:
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind not in _PLAIN_PNG_CHUNKS:
            return None
        body = data[position + 8:position + 8 + length]
        stored_crc = int.from_bytes(data[position + 8 + length:position + 12 + length], "big")
        # as libpng: a damaged critical chunk (upper-case first letter) is an error, a damaged
        # ancillary one (metadata here) is skipped
        if kind[:1].isupper() and zlib.crc32(kind + body) != stored_crc:
            raise GsbenchError(f"{path}: not a readable image (PNG chunk {kind.decode('latin-1')!r} "
                               f"at byte {position} fails its CRC)")
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            parts.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if colour != 0 or depth not in (8, 16) or compression or filtering or interlace:
        return None
    bpp = depth // 8
    rowbytes = width * bpp
    expected = height * (rowbytes + 1)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(parts), expected)
        whole = inflater.eof and not inflater.unconsumed_tail and len(raw) == expected
    except zlib.error as exc:
        raise GsbenchError(f"{path}: not a readable image (PNG image data: {exc})") from None
    if not whole:
        raise GsbenchError(f"{path}: not a readable image (PNG image data holds other than the "
                           f"{expected} bytes of {height} rows of {width} {depth}-bit pixels)")
    out = np.empty(height * rowbytes, np.uint8)
    bad_row = library.png_unfilter(raw, out.ctypes.data, height, rowbytes, bpp)
    if bad_row >= 0:
        raise GsbenchError(f"{path}: not a readable image (PNG row {bad_row} has the unknown "
                           f"filter type {raw[bad_row * (rowbytes + 1)]})")
    if depth == 8:
        return out.reshape(height, width)
    return out.view(">u2").reshape(height, width).astype(np.uint16)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
