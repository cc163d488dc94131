"""Hostile data: archives whose members collide, interrupted extractions, image headers that claim
huge sizes, damaged PNGs, symbolic links where gsbench writes generated folders.

Each test asserts the exit status (2), the one line naming the culprit, and that nothing was
written or changed: the whole tree is hashed before and after (:func:`snapshot`).
"""

import hashlib
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data import raw as raw_module
from gsbench.data.raw import extract_tar, extract_zip
from gsbench.data.synthetic.write import MARKER_FORMAT, MARKER_NAME
from gsbench.errors import GsbenchError
from gsbench.io import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, atomic_write_json, read_label, read_rgb
from test_prepare import H, W, make_ade20k, make_cityscapes, zip_folder

runner = CliRunner()


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root``, links not followed: a file's sha256 and mtime, a folder, a
    symbolic link's target."""
    entries: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = "folder"
            else:
                entries[key] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                path.stat().st_mtime_ns)
    return entries


def one_error_line(result, *words: str) -> str:
    """The CLI refused: exit status 2 and a single ``error:`` line holding every one of
    ``words``. Returns the line."""
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    line = result.output.strip()
    assert line.startswith("error: ")
    for word in words:
        assert word in line, (word, line)
    return line


def png_bytes(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit), with a little pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real JPEG whose start-of-frame segment is rewritten to claim ``width`` x ``height``."""
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# --- atomic writes ------------------------------------------------------------------------------

def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """Every file gsbench writes goes through io.atomic_write_bytes: a write cut short (here by
    a full disk) leaves the earlier file whole and nothing else in its folder."""
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"miou": 0.5})
    before = snapshot(tmp_path)

    class DiskFullHalfway:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: DiskFullHalfway(fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        atomic_write_json(target, {"miou": 0.7})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


# --- archives -----------------------------------------------------------------------------------

def write_archive(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A zip or tar (by suffix) with ``members`` in order: (name, data), data None for a folder."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                if data is None:
                    zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
                else:
                    zf.writestr(name, data)
    else:
        with tarfile.open(path, "w") as tf:
            for name, data in members:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tf.addfile(info)
                else:
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return path


def extract(archive: Path, dest: Path, **kwargs) -> Path:
    return (extract_zip if archive.suffix == ".zip" else extract_tar)(archive, dest, **kwargs)


def test_zip_with_a_file_where_a_later_member_needs_a_folder_extracts_nothing(tmp_path):
    """Issue 13, failure 6: a file ``leftImg8bit/train/zzz`` and a member ``zzz/a.png`` under it
    gave a FileExistsError after 11 members were extracted."""
    src = make_cityscapes(tmp_path / "src")
    root = tmp_path / "zips"
    root.mkdir()
    members = [(p.relative_to(src).as_posix(), p.read_bytes())
               for p in sorted((src / "leftImg8bit").rglob("*.png"))]
    members += [("leftImg8bit/train/zzz", b"a file"), ("leftImg8bit/train/zzz/a.png", b"x")]
    write_archive(root / "leftImg8bit_trainvaltest.zip", members)
    zip_folder(src / "gtFine", root / "gtFine_trainvaltest.zip")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["prepare-data", "cityscapes", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    one_error_line(result, str(root / "leftImg8bit_trainvaltest.zip"),
                   "member 'leftImg8bit/train/zzz' is a file where member "
                   "'leftImg8bit/train/zzz/a.png' needs a folder")
    assert snapshot(tmp_path) == before  # not one member extracted, no gsbench/ folder


@pytest.mark.parametrize("suffix", [".zip", ".tar"])
@pytest.mark.parametrize("members, words", [
    ([("d/ok.txt", b"1"), ("d/x", b"2"), ("d/x/y.txt", b"3")],
     "member 'd/x' is a file where member 'd/x/y.txt' needs a folder"),
    ([("d/ok.txt", b"1"), ("d/x/y.txt", b"3"), ("d/x", b"2")],
     "member 'd/x' is a file where member 'd/x/y.txt' needs a folder"),
    ([("d/ok.txt", b"1"), ("d/x", None), ("d/x", b"2")],
     "member 'd/x' is a file where member 'd/x"),
    ([("d/ok.txt", b"1"), ("d/twice.txt", b"2"), ("d/./twice.txt", b"3")],
     "members 'd/twice.txt' and 'd/./twice.txt' are the same file"),
])
def test_members_that_cannot_lie_side_by_side_are_refused_before_any_is_written(
        tmp_path, suffix, members, words):
    archive = write_archive(tmp_path / f"a{suffix}", members)
    with pytest.raises(GsbenchError) as err:
        extract(archive, tmp_path / "dest")
    message = str(err.value)
    assert message.startswith(f"{archive}: ") and words in message and "\n" not in message
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("suffix", [".zip", ".tar"])
@pytest.mark.parametrize("on_disk, words", [
    ("file", "member 'd/sub/b.txt' needs a folder where {dest}/d/sub is a file"),
    ("folder", "member 'd/a.txt' needs a file where {dest}/d/a.txt is a folder"),
    ("link", "member 'd/sub/b.txt' needs a folder where {dest}/d/sub is a symbolic link"),
    ("linked unit", "member 'd/a.txt' needs a folder where {dest}/d is a symbolic link"),
    ("linked staging", "member 'd/a.txt' needs a folder where {dest}/.a{suffix}.partial is a "
                       "symbolic link"),
])
def test_members_that_meet_something_else_on_disk_are_refused_naming_both(
        tmp_path, suffix, on_disk, words):
    archive = write_archive(tmp_path / f"a{suffix}",
                            [("d/a.txt", b"a"), ("d/sub/b.txt", b"b")])
    dest = tmp_path / "dest"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_bytes(b"not gsbench's")
    if on_disk == "linked unit":
        dest.mkdir()
        (dest / "d").symlink_to(elsewhere)
    elif on_disk == "linked staging":
        dest.mkdir()
        (dest / f".a{suffix}.partial").symlink_to(elsewhere)
    else:
        (dest / "d").mkdir(parents=True)
        if on_disk == "file":
            (dest / "d/sub").write_bytes(b"in the way")
        elif on_disk == "folder":
            (dest / "d/a.txt").mkdir()
        else:
            (dest / "d/sub").symlink_to(elsewhere)
    before = snapshot(tmp_path)
    with pytest.raises(GsbenchError) as err:
        extract(archive, dest)
    message = str(err.value)
    assert message == f"{archive}: " + words.format(dest=dest, suffix=suffix)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("suffix", [".zip", ".tar"])
def test_an_interrupted_extraction_leaves_no_folder_in_place_and_resumes(
        tmp_path, suffix, monkeypatch):
    members = [("top/d/a.txt", b"a" * 10), ("top/d/b.txt", b"b" * 20), ("top/d/c.txt", b"c"),
               ("top/README", b"outside only_under")]
    archive = write_archive(tmp_path / f"a{suffix}", members)
    dest = tmp_path / "dest"
    written = []
    original = raw_module._write_member_atomically

    def interrupted_after_two(archive, info, target, write, errors):
        if len(written) == 2:
            raise KeyboardInterrupt
        original(archive, info, target, write, errors)
        written.append(target.name)

    monkeypatch.setattr(raw_module, "_write_member_atomically", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract(archive, dest, only_under=["top/d"])
    assert not (dest / "top").exists()  # nothing where the finished folder belongs
    staging = dest / f".{archive.name}.partial"
    assert sorted(p.name for p in (staging / "top/d").iterdir()) == ["a.txt", "b.txt"]

    monkeypatch.setattr(raw_module, "_write_member_atomically", original)
    resumed = []
    monkeypatch.setattr(raw_module, "_write_member_atomically",
                        lambda archive, info, target, write, errors: (
                            resumed.append(target.name),
                            original(archive, info, target, write, errors)))
    assert extract(archive, dest, only_under=["top/d"]) == dest
    assert resumed == ["c.txt"]  # the two finished members are not written again
    assert {p.name: p.read_bytes() for p in (dest / "top/d").iterdir()} == {
        "a.txt": b"a" * 10, "b.txt": b"b" * 20, "c.txt": b"c"}
    assert sorted(os.listdir(dest)) == ["top"]  # the staging folder is gone
    assert not (dest / "top/README").exists()


# --- image headers ------------------------------------------------------------------------------

def cityscapes_label(root: Path) -> Path:
    return root / "gtFine/train/aachen/aachen_000000_000001_gtFine_labelIds.png"


def cityscapes_image(root: Path) -> Path:
    return root / "leftImg8bit/val/frankfurt/frankfurt_000000_000000_leftImg8bit.png"


@pytest.mark.parametrize("which", [cityscapes_label, cityscapes_image])
@pytest.mark.parametrize("width, height, words", [
    (60000, 60000, "image header gives 60000x60000 = 3,600,000,000 pixels, above gsbench's "
                   f"limit of {MAX_IMAGE_PIXELS:,} pixels"),
    (MAX_IMAGE_SIDE + 1, 1, f"image header gives {MAX_IMAGE_SIDE + 1}x1 pixels, above "
                            f"gsbench's limit of {MAX_IMAGE_SIDE:,} pixels per side"),
])
def test_a_png_header_claiming_a_huge_image_is_refused_before_decoding(
        tmp_path, which, width, height, words):
    """Issue 13, failure 4: a PNG whose header claims 60000x60000 (label or image) gave a
    traceback from OpenCV's pixel limit in prepare-data."""
    root = make_cityscapes(tmp_path / "cs")
    culprit = which(root)
    culprit.write_bytes(png_bytes(width, height))
    before = snapshot(root)
    result = runner.invoke(app, ["prepare-data", "cityscapes", "--root", str(root),
                                 "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    line = one_error_line(result, f"{culprit}: {words}", "gsbench.io.MAX_IMAGE_")
    assert "Traceback" not in line
    assert snapshot(root) == before
    assert not (tmp_path / "out/manifest.json").exists()


def test_a_jpeg_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    base = make_ade20k(tmp_path / "ade")
    culprit = base / "images/training/ADE_train_00000002.jpg"
    culprit.write_bytes(jpeg_with_size(60000, 60000))
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["prepare-data", "ade20k", "--root", str(base),
                                 "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    one_error_line(result, f"{culprit}: image header gives 60000x60000")
    after = snapshot(tmp_path)
    assert not (tmp_path / "out/manifest.json").exists()
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


def test_the_header_check_reads_the_real_size_of_every_image_kind(tmp_path):
    """The check must not refuse ordinary files: a JPEG's size comes from its frame header."""
    ok, jpeg = cv2.imencode(".jpg", np.zeros((H, W, 3), np.uint8))
    (tmp_path / "a.jpg").write_bytes(jpeg.tobytes())
    assert read_rgb(tmp_path / "a.jpg").shape == (H, W, 3)
    assert cv2.imwrite(str(tmp_path / "b.png"), np.full((H, W), 7, np.uint8))
    assert read_label(tmp_path / "b.png").shape == (H, W)
    assert cv2.imwrite(str(tmp_path / "c.bmp"), np.full((H, W), 7, np.uint8))
    assert read_label(tmp_path / "c.bmp").shape == (H, W)


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def cut_after_the_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:33])  # signature and IHDR: no pixel data, no IEND


@pytest.mark.parametrize("damage, words", [
    (cut_short, "not a readable image (PNG truncated: chunk 'IDAT' at byte 33 needs"),
    (cut_after_the_header, "not a readable image (PNG truncated: no IEND chunk in its 33 bytes)"),
])
def test_a_damaged_png_gives_gsbench_line_only_and_no_libpng_message(
        tmp_path, capfd, damage, words):
    """Issue 13, failure 10: libpng printed ``libpng error: Read Error`` on stderr before
    gsbench's own line (capfd captures the file descriptors, where libpng writes)."""
    root = make_cityscapes(tmp_path / "cs")
    culprit = cityscapes_label(root)
    damage(culprit)
    before = snapshot(root)
    result = runner.invoke(app, ["prepare-data", "cityscapes", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    one_error_line(result, f"{culprit}: {words}")
    captured = capfd.readouterr()
    assert "libpng" not in captured.err + captured.out and captured.err == ""
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not k.startswith("gsbench")} == before
    assert not (root / "gsbench/manifest.json").exists()


# --- synthetic output folder --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["leftImg8bit", "gtFine", "gsbench"])
@pytest.mark.parametrize("kind", ["link", "file"])
def test_synthetic_out_with_a_generated_folder_that_is_a_link_or_file_is_refused(
        tmp_path, name, kind):
    """Issue 13, failure 7: ``prepare-data synthetic --out D`` where ``D/leftImg8bit`` is a
    symlink gave a traceback (rmtree on a link); the other generated folders stay untouched."""
    out = tmp_path / "D"
    (out / "leftImg8bit/train").mkdir(parents=True)
    (out / "leftImg8bit/train/old.png").write_bytes(b"earlier output")
    (out / MARKER_NAME).write_text(json.dumps({"format": MARKER_FORMAT}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.png").write_bytes(b"data elsewhere")
    culprit = out / name
    if culprit.exists():
        import shutil

        shutil.rmtree(culprit)
    if kind == "link":
        culprit.symlink_to(elsewhere)
    else:
        culprit.write_bytes(b"a file")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["prepare-data", "synthetic", "--out", str(out), "--n-train", "1",
                                 "--n-val", "1", "--size", "64x64", "--workers", "1", "--quiet"])
    what = "a symbolic link" if kind == "link" else "not a folder"
    one_error_line(result, f"{culprit}: is {what}, where gsbench writes a generated folder")
    assert snapshot(tmp_path) == before
