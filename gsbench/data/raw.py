"""Raw dataset input: the samples a dataset reader finds on disk, safe extraction of the official
archives (zip and tar), reading raw label files (grey or palette PNG, SBD ``.mat``) and split
lists.

:class:`RawSample` is the contract between a dataset reader (``cityscapes.py``, ``ade20k.py``,
``voc.py``, ``context.py``, ``cocostuff.py``, ``cocostuff10k.py``: find the files, check names
and pairing) and ``prepare.py`` (convert, validate pixels, write); the reader returns them in a
:class:`~gsbench.data.description.RawDataset` with its dataset's description.

:func:`extract_zip` and :func:`extract_tar` unpack the official archives. Every member is checked
before anything is written (no absolute paths, no ``..`` components, no symlinks; tar archives
also no hard links, devices or fifos: the "zip-slip" attacks; no two members that cannot lie
side by side, and none that meets a file, folder or symbolic link of another kind on disk). Each
extracted folder is assembled in a staging folder and renamed into place when complete, each
member is written atomically (to a temporary file, then renamed), and members already on disk
with the right size are skipped, so an interrupted extraction resumes where it stopped and never
leaves a half-extracted folder where a finished one belongs.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from gsbench.errors import GsbenchError
from gsbench.io import read_label_indices


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


def flat_sample(split: str, stem: str, image: Path, raw_label: Path) -> RawSample:
    """A labelled sample of a dataset without city folders or instance maps (ADE20K, VOC,
    Context, COCO-Stuff): outputs labels/SPLIT/STEM_trainIds.png, edges/SPLIT/STEM_edge.png."""
    return RawSample(
        split=split, stem=stem, image=image, raw_label=raw_label, instance=None,
        label_out=f"labels/{split}/{stem}_trainIds.png", edge_out=f"edges/{split}/{stem}_edge.png",
    )


def listed_samples(split: str, listing: Path, stems: list[str], images: dict[str, Path],
                   labels: dict[str, Path], image_dir: Path, label_dir: Path) -> list[RawSample]:
    """The :func:`flat_sample` of each stem of a split list file (``ImageSets/.../val.txt``);
    raise naming the list and the expected file when a stem has no image or no label."""
    samples = []
    for stem in stems:
        if stem not in images:
            raise GsbenchError(f"{listing}: {stem} has no image in {image_dir}")
        if stem not in labels:
            raise GsbenchError(f"{listing}: {stem} has no label in {label_dir}")
        samples.append(flat_sample(split, stem, images[stem], labels[stem]))
    return samples


def paired_stems(images: dict[str, Path], labels: dict[str, Path]) -> list[str]:
    """The sorted stems of ``images`` (``.jpg``) once every image has its ``.png`` label and every
    label its image; otherwise raise naming the first file without its partner."""
    if unpaired := sorted(images.keys() - labels.keys()):
        raise GsbenchError(f"{images[unpaired[0]]}: image without its label {unpaired[0]}.png")
    if unpaired := sorted(labels.keys() - images.keys()):
        raise GsbenchError(f"{labels[unpaired[0]]}: label without its image {unpaired[0]}.jpg")
    return sorted(images)


def files_with_suffix(folder: Path, suffix: str) -> dict[str, Path]:
    """``{name without suffix: path}`` of the files in ``folder`` whose name ends in ``suffix``."""
    return {
        entry.name[: -len(suffix)]: Path(entry.path)
        for entry in os.scandir(folder)
        if entry.name.endswith(suffix) and entry.is_file()
    }


def _safe_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Relative path components of the member ``name``, or raise naming the unsafe member."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise GsbenchError(f"{archive}: refusing member with an absolute path {name!r}")
    parts = tuple(p for p in PurePosixPath(unified).parts if p not in ("", "."))
    if ".." in parts:
        raise GsbenchError(f"{archive}: refusing member with a '..' component {name!r}")
    return parts


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Relative path components of a zip member, or raise naming the unsafe member."""
    if stat.S_ISLNK(info.external_attr >> 16):
        raise GsbenchError(f"{archive}: refusing symlink member {info.filename!r}")
    return _safe_parts(archive, info.filename)


def _unit(parts: tuple[str, ...], only_under: Iterable[str] | None) -> tuple[str, ...] | None:
    """The unit of extraction the member ``parts`` belongs to: the first folder path of
    ``only_under`` it lies under (``"VOCdevkit"`` or ``"VOCdevkit/VOC2012/JPEGImages"``), or its
    top-level entry if there is no restriction; None for a member not to extract."""
    if not parts:
        return None
    if only_under is None:
        return parts[:1]
    for folder in only_under:
        prefix = tuple(p for p in PurePosixPath(folder).parts if p not in ("", "."))
        if parts[: len(prefix)] == prefix:
            return prefix
    return None


def extract_zip(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    only_under: Iterable[str] | None = None,
    progress: bool = False,
) -> Path:
    """Extract ``archive`` into ``dest`` safely; return ``dest``.

    ``only_under`` restricts extraction to members under the given folder paths, relative to
    the archive's top (the Cityscapes archives also hold a README and license.txt each, with
    the same names). Members already present with the archive's size are not rewritten.
    """
    archive, dest = Path(archive), Path(dest)
    keep = None if only_under is None else list(only_under)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise GsbenchError(f"{archive}: file not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise GsbenchError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        # Check every member first, so an unsafe archive extracts nothing at all.
        members = [_Member(info, _member_parts(archive, info), info.is_dir(), info.file_size)
                   for info in zf.infolist()]

        def write(info: zipfile.ZipInfo, out: BinaryIO) -> None:
            with zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)

        _extract_members(archive, dest, members, keep, progress, write,
                         (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError))
    return dest


@dataclass(frozen=True)
class _Member:
    """One checked archive member: the archive's own entry, its safe relative path components,
    whether it is a folder and its uncompressed size in bytes."""

    info: zipfile.ZipInfo | tarfile.TarInfo
    parts: tuple[str, ...]
    is_dir: bool
    size: int


def _extract_members(
    archive: Path,
    dest: Path,
    members: list[_Member],
    keep: list[str] | None,
    progress: bool,
    write: Callable[[zipfile.ZipInfo | tarfile.TarInfo, BinaryIO], None],
    errors: tuple[type[BaseException], ...],
) -> None:
    """Extract the already-checked ``members`` that are under ``keep`` into ``dest``, in archive
    order (a compressed tar stream is then read forwards only).

    Each folder of ``keep`` (each top-level entry without ``keep``) is a unit: a unit not yet in
    ``dest`` is extracted into the staging folder ``dest/.ARCHIVE.partial`` and renamed into
    place once all its members are there, so ``dest`` never holds a unit half extracted; an
    interrupted run resumes in the staging folder. A unit already in place is completed: its
    members missing or of another size are written there. Every collision (a file member where
    another member needs a folder, a member that meets a file, folder or symbolic link of
    another kind on disk) is refused, naming both, before anything is written. Files are written
    atomically with ``write(info, out)``; an exception in ``errors`` becomes a GsbenchError
    naming the archive and the member."""
    wanted = [(member, unit) for member in members
              if (unit := _unit(member.parts, keep)) is not None]
    _check_member_collisions(archive, [member for member, _ in wanted])
    staging = dest / f".{archive.name}.partial"
    units: dict[tuple[str, ...], Path] = {}  # unit -> the folder its members are written under
    for member, unit in wanted:
        if unit not in units:
            _check_no_collision(archive, member, dest, unit[:-1], want_dir=True)
            in_place = os.path.lexists(dest.joinpath(*unit))
            if not in_place:
                _check_no_collision(archive, member, dest, (staging.name,), want_dir=True)
            units[unit] = dest if in_place else staging
        _check_no_collision(archive, member, units[unit], member.parts, want_dir=member.is_dir)

    todo = []
    for member, unit in wanted:
        target = units[unit].joinpath(*member.parts)
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
        elif not (target.is_file() and target.stat().st_size == member.size):
            todo.append((member, target))
    total = sum(member.size for member, _ in todo)
    columns = (TextColumn(f"extract {archive.name}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not progress or not todo) as bar:
        task = bar.add_task("extract", total=total)
        for member, target in todo:
            _write_member_atomically(archive, member.info, target, write, errors)
            bar.advance(task, member.size)

    for unit, root in units.items():
        if root == staging:
            target = dest.joinpath(*unit)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging.joinpath(*unit), target)
    _remove_empty_folders(staging)


def _check_member_collisions(archive: Path, members: list[_Member]) -> None:
    """Refuse an archive whose members cannot all be extracted side by side: a file member at
    a path that another member needs as a folder, or two file members with the same path."""
    folders: dict[tuple[str, ...], str] = {}  # folder path -> the member that needs it
    files: dict[tuple[str, ...], str] = {}
    for member in members:
        name = _member_name(member.info)
        for depth in range(1, len(member.parts) + member.is_dir):
            folders.setdefault(member.parts[:depth], name)
        if not member.is_dir:
            if member.parts in files:
                raise GsbenchError(f"{archive}: members {files[member.parts]!r} and {name!r} "
                                   f"are the same file")
            files[member.parts] = name
    for parts, name in files.items():
        if parts in folders:
            raise GsbenchError(f"{archive}: member {name!r} is a file where member "
                               f"{folders[parts]!r} needs a folder")


def _check_no_collision(archive: Path, member: _Member, root: Path, parts: tuple[str, ...],
                        want_dir: bool) -> None:
    """Refuse ``member`` when ``root/parts`` or a folder on the way down from ``root`` exists on
    disk as something else than the member needs there (a symbolic link is never followed)."""
    for depth in range(1, len(parts) + 1):
        path = root.joinpath(*parts[:depth])
        folder_here = depth < len(parts) or want_dir
        if path.is_symlink():
            found = "a symbolic link"
        elif not path.exists():
            return
        elif path.is_dir() == folder_here:
            continue
        else:
            found = "a folder" if path.is_dir() else "a file"
        needs = "a folder" if folder_here else "a file"
        raise GsbenchError(f"{archive}: member {_member_name(member.info)!r} needs {needs} "
                           f"where {path} is {found}")


def _member_name(info: zipfile.ZipInfo | tarfile.TarInfo) -> str:
    return info.filename if isinstance(info, zipfile.ZipInfo) else info.name


def _remove_empty_folders(folder: Path) -> None:
    """Remove ``folder`` and the folders under it that hold no file (the staging folder once its
    units are renamed into place); anything else stays."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(path)
        except OSError:  # not empty
            pass


def _write_member_atomically(
    archive: Path,
    info: zipfile.ZipInfo | tarfile.TarInfo,
    target: Path,
    write: Callable[[zipfile.ZipInfo | tarfile.TarInfo, BinaryIO], None],
    errors: tuple[type[BaseException], ...],
) -> None:
    """Write one member to a temporary file beside ``target``, then rename it into place, so an
    interrupted extraction never leaves a partial file under the member's name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(info, out)
        os.replace(tmp, target)
    except errors as exc:
        _unlink_quietly(tmp)
        raise GsbenchError(f"{archive}: cannot extract member {_member_name(info)!r} "
                           f"({exc})") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _tar_member_parts(archive: Path, info: tarfile.TarInfo) -> tuple[str, ...]:
    """Relative path components of a tar member, or raise naming the unsafe member: only
    regular files and folders are extracted, so links can never point outside ``dest``."""
    if info.issym() or info.islnk():
        raise GsbenchError(f"{archive}: refusing link member {info.name!r}")
    if not (info.isfile() or info.isdir()):
        raise GsbenchError(f"{archive}: refusing special (device or fifo) member {info.name!r}")
    return _safe_parts(archive, info.name)


def extract_tar(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    only_under: Iterable[str] | None = None,
    progress: bool = False,
) -> Path:
    """Extract the tar archive ``archive`` (plain, gzip, bzip2 or xz) into ``dest`` safely, with
    the same rules as :func:`extract_zip`; return ``dest``.

    Every member of the archive is checked before anything is written, even members outside
    ``only_under``: an archive with an unsafe member is refused as a whole.
    """
    archive, dest = Path(archive), Path(dest)
    keep = None if only_under is None else list(only_under)
    try:
        tf = tarfile.open(archive, "r:*")
    except FileNotFoundError:
        raise GsbenchError(f"{archive}: file not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise GsbenchError(f"{archive}: not a readable tar archive ({exc})") from None
    with tf:
        try:
            infos = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise GsbenchError(f"{archive}: not a readable tar archive ({exc})") from None
        members = [_Member(info, _tar_member_parts(archive, info), info.isdir(), info.size)
                   for info in infos]

        def write(info: tarfile.TarInfo, out: BinaryIO) -> None:
            src = tf.extractfile(info)
            if src is None:
                raise tarfile.TarError("no data")
            with src:
                shutil.copyfileobj(src, out, 1 << 20)
            if out.tell() != info.size:
                raise EOFError(f"{out.tell()} of {info.size} bytes")

        _extract_members(archive, dest, members, keep, progress, write,
                         (tarfile.TarError, EOFError, OSError))
    return dest


# --- raw label files ----------------------------------------------------------------------------


def read_sbd_mat(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD class annotation (``benchmark_RELEASE/dataset/cls/*.mat``,
    Hariharan et al. 2011): class indices 0..20 as uint8 (values above 255 are refused)."""
    from scipy.io import loadmat

    try:
        document = loadmat(str(path), variable_names=["GTcls"])
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... for bad files
        raise GsbenchError(f"{path}: not a readable MATLAB file ({exc})") from None
    try:
        segmentation = document["GTcls"]["Segmentation"][0, 0]
    except (KeyError, ValueError, IndexError, TypeError):
        raise GsbenchError(f"{path}: no struct field GTcls.Segmentation") from None
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or segmentation.dtype.kind not in "ui":
        raise GsbenchError(
            f"{path}: GTcls.Segmentation must be a 2-D integer array, got "
            f"{segmentation.dtype} of shape {segmentation.shape}"
        )
    if segmentation.size and (segmentation.min() < 0 or segmentation.max() > 255):
        raise GsbenchError(f"{path}: GTcls.Segmentation values outside 0..255")
    return segmentation.astype(np.uint8)


def read_raw_label(path: str | os.PathLike) -> np.ndarray:
    """A raw label file as a 2-D array of label ids: ``.mat`` files are SBD annotations
    (:func:`read_sbd_mat`), palette PNGs give their indices, other images are read unchanged."""
    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: file not found")
    if path.suffix.lower() == ".mat":
        return read_sbd_mat(path)
    return read_label_indices(path)


# --- split lists --------------------------------------------------------------------------------

def read_split_list(path: Path, stem_pattern: re.Pattern[str]) -> list[str]:
    """The stems listed one per line in ``path`` (``ImageSets/Segmentation/train.txt``), in
    order; raise naming the file and line for a malformed or repeated stem."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GsbenchError(f"{path}: missing split list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GsbenchError(f"{path}: unreadable split list ({exc})") from None
    stems: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        stem = line.strip()
        if not stem:
            continue
        if stem_pattern.fullmatch(stem) is None:
            raise GsbenchError(
                f"{path}: line {number} {stem!r} does not match {stem_pattern.pattern}"
            )
        if stem in seen:
            raise GsbenchError(f"{path}: line {number} repeats {stem!r}")
        seen.add(stem)
        stems.append(stem)
    if not stems:
        raise GsbenchError(f"{path}: empty split list")
    return stems
