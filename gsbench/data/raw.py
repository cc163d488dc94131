"""Raw dataset input: what a dataset reader found on disk, and safe extraction of zip archives.

:class:`RawDataset` is the contract between a dataset reader (``cityscapes.py``, ``ade20k.py``:
find the files, check names and pairing) and ``prepare.py`` (convert, validate pixels, write).

:func:`extract_zip` unpacks the official archives. Every member name is checked before anything
is written (no absolute paths, no ``..`` components, no symlinks: the "zip-slip" attacks), each
member is extracted atomically (written to a temporary file, then renamed), and members already
on disk with the right size are skipped, so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from gsbench.errors import GsbenchError


@dataclass(frozen=True)
class RawSample:
    """One image of a raw dataset. Paths are absolute; ``label_out``/``edge_out`` are the
    outputs to write, relative to the prepared folder (None for splits without ground truth)."""

    split: str
    stem: str
    image: Path
    raw_label: Path | None
    instance: Path | None
    label_out: str | None
    edge_out: str | None

    @property
    def key(self) -> str:
        return f"{self.split}/{self.stem}"


@dataclass(frozen=True)
class RawDataset:
    """A raw dataset found on disk with its label table.

    ``label_to_train`` maps every raw label id (0..255) to a trainId; ``known_label_ids`` marks
    the raw ids that exist in the official table (any other id in a label file is an error).
    """

    name: str
    class_names: tuple[str, ...]
    label_to_train: np.ndarray
    known_label_ids: np.ndarray
    samples: tuple[RawSample, ...]


def files_with_suffix(folder: Path, suffix: str) -> dict[str, Path]:
    """``{name without suffix: path}`` of the files in ``folder`` whose name ends in ``suffix``."""
    return {
        entry.name[: -len(suffix)]: Path(entry.path)
        for entry in os.scandir(folder)
        if entry.name.endswith(suffix) and entry.is_file()
    }


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Relative path components of a member, or raise naming the unsafe member."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise GsbenchError(f"{archive}: refusing symlink member {name!r}")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise GsbenchError(f"{archive}: refusing member with an absolute path {name!r}")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise GsbenchError(f"{archive}: refusing member with a '..' component {name!r}")
    return parts


def extract_zip(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    only_under: Iterable[str] | None = None,
    progress: bool = False,
) -> Path:
    """Extract ``archive`` into ``dest`` safely; return ``dest``.

    ``only_under`` restricts extraction to members whose first path component is one of the
    given folder names (the Cityscapes archives also hold a README and license.txt each, with
    the same names). Members already present with the archive's size are not rewritten.
    """
    archive, dest = Path(archive), Path(dest)
    keep = None if only_under is None else set(only_under)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise GsbenchError(f"{archive}: file not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise GsbenchError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        # Check every member first, so an unsafe archive extracts nothing at all.
        members = [(info, _member_parts(archive, info)) for info in zf.infolist()]
        members = [(i, p) for i, p in members if p and (keep is None or p[0] in keep)]
        todo = []
        for info, parts in members:
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not (target.is_file() and target.stat().st_size == info.file_size):
                todo.append((info, target))
        total = sum(info.file_size for info, _ in todo)
        columns = (TextColumn(f"extract {archive.name}"), BarColumn(), DownloadColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, disable=not progress or not todo) as bar:
            task = bar.add_task("extract", total=total)
            for info, target in todo:
                _extract_member(zf, archive, info, target)
                bar.advance(task, info.file_size)
    return dest


def _extract_member(
    zf: zipfile.ZipFile, archive: Path, info: zipfile.ZipInfo, target: Path
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        _unlink_quietly(tmp)
        raise GsbenchError(f"{archive}: cannot extract member {info.filename!r} ({exc})") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
