"""``prepare-data``: turn a raw dataset into trainId labels, edge targets and ``manifest.json``.

For every sample with ground truth it validates the raw files (readable PNG/JPEG, SBD or COCO-Stuff
10k ``.mat``, label the size of its image, 8-bit ids that exist in the official table), writes
``labels/{split}/.../{stem}_trainIds.png`` (uint8 trainIds, 255 = ignore) and
``edges/{split}/.../{stem}_edge.png`` (uint8 0/1, :func:`gsbench.data.edges.edge_map`), and
records sha256 checksums and the image size. Raw files are only read, never written.

Re-runs and interruptions:

* every output is written atomically, and each finished sample is appended to the journal
  ``OUT/.prepare-journal.jsonl`` (one JSON line with its manifest entry and the size and mtime
  of every file it names), so an interrupted run resumes with the unfinished samples only;
* ``manifest.json`` is written last, atomically, with the same size+mtime fingerprints under its
  ``"prepare"`` key; a re-run whose files all still match it is a no-op ("up to date");
* when anything must be redone, the old manifest is folded into the journal and removed first,
  so a failed run never leaves a manifest that describes stale outputs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gsbench.data.description import RawDataset
from gsbench.data.edges import DEFAULT_EDGE_RADIUS, disk_kernel, edge_map
from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import (
    DEFAULT_PREPARED_DIRNAME, MANIFEST_FORMAT, MANIFEST_NAME, Manifest, Sample,
)
from gsbench.data.raw import RawSample, read_raw_label
from gsbench.data.registry import get_dataset
from gsbench.errors import GsbenchError
from gsbench.io import (
    atomic_write_bytes, atomic_write_json, encode_png, read_label, read_rgb, sha256_file,
)

JOURNAL_NAME = ".prepare-journal.jsonl"
#: Bump when the content of the outputs changes, so that older prepared folders are rebuilt.
PREPARE_VERSION = 1
SPLIT_ORDER = ("train", "val", "test")

Fingerprints = dict[str, list[int]]  # relative path -> [size, mtime_ns]


@dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_dataset` did: the manifest, and how many samples it (re)built."""

    manifest: Manifest
    out: Path
    prepared: int  # samples processed in this run
    reused: int  # samples taken over from an earlier (possibly interrupted) run
    up_to_date: bool  # nothing to do: manifest.json already matched every file


def prepare_raw(
    dataset: str,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    workers: int = 2,
    progress: bool = True,
    edge_radius: float = DEFAULT_EDGE_RADIUS,
    options: Mapping[str, Any] | None = None,
) -> PrepareResult:
    """Find the raw files of ``dataset`` (a name of :data:`gsbench.data.registry.DATASETS`) and
    prepare them into ``out`` (default ``root/gsbench``). ``options`` are keyword arguments of
    the dataset's reader (Cityscapes: ``coarse``)."""
    find = get_dataset(dataset).find
    root = Path(root).expanduser()
    out = root / DEFAULT_PREPARED_DIRNAME if out is None else Path(out).expanduser()
    raw = find(root, out, progress=progress, **(options or {}))
    return prepare_dataset(raw, out, workers=workers, progress=progress, edge_radius=edge_radius)


def prepare_dataset(
    raw: RawDataset,
    out: str | os.PathLike,
    *,
    workers: int = 2,
    progress: bool = True,
    edge_radius: float = DEFAULT_EDGE_RADIUS,
) -> PrepareResult:
    """Validate and convert every sample of ``raw`` into ``out`` and write ``manifest.json``.

    Raises :class:`GsbenchError` naming the file for an unreadable image or label, a label
    whose size differs from its image, or label ids outside the official table; no manifest is
    written then (outputs of samples finished before the error stay, and a re-run reuses them).
    """
    if workers < 1:
        raise GsbenchError(f"--workers must be >= 1, got {workers}")
    disk_kernel(edge_radius)  # rejects a bad radius before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = raw.dataset
    settings = {"version": PREPARE_VERSION, "dataset": dataset.name,
                "edge_radius": float(edge_radius)}
    by_key = {sample.key: sample for sample in raw.samples}
    manifest_file = out / MANIFEST_NAME
    previous = _read_previous_manifest(manifest_file, settings)

    if previous is not None and _all_current(previous, by_key, out):
        return PrepareResult(Manifest.load(out), out, prepared=0, reused=len(by_key),
                             up_to_date=True)

    journal = out / JOURNAL_NAME
    done = {
        key: record for key, record in _earlier_records(previous, journal, settings)
        if key in by_key and _record_is_current(record, by_key[key], out)
    }
    # The journal now carries everything reusable; drop the manifest before touching outputs.
    _write_journal(journal, settings, done.values())
    manifest_file.unlink(missing_ok=True)
    reused = len(done)

    todo = [sample for key, sample in by_key.items() if key not in done]
    jobs = [(sample, str(out), dataset.labels.to_train, dataset.labels.known, float(edge_radius),
             dataset.label_reader) for sample in todo]
    columns = (TextColumn(f"prepare {dataset.name}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar, \
            open(journal, "a", encoding="utf-8") as log:
        task = bar.add_task("prepare", total=len(todo))
        for record in _run_jobs(jobs, workers):
            log.write(json.dumps(record) + "\n")
            log.flush()
            done[record["key"]] = record
            bar.advance(task)

    manifest = Manifest(
        dataset=dataset.name,
        num_classes=dataset.num_classes,
        class_names=list(dataset.class_names),
        ignore_index=IGNORE_INDEX,
        splits=_splits(raw, done),
        root=out.resolve(),
    )
    document = manifest.to_json()
    document["prepare"] = {**settings, "files": {key: done[key]["files"] for key in by_key}}
    atomic_write_json(manifest_file, document)
    journal.unlink()
    return PrepareResult(manifest, out, prepared=len(todo), reused=reused, up_to_date=False)


# --- the work on one sample (runs in the worker processes) -------------------------------------

def prepare_sample(
    sample: RawSample,
    out: Path,
    label_to_train: np.ndarray,
    known_label_ids: np.ndarray,
    edge_radius: float = DEFAULT_EDGE_RADIUS,
    label_reader: Callable[[Path], np.ndarray] = read_raw_label,
) -> dict[str, Any]:
    """Validate one raw sample, write its outputs and return its journal record
    (``label_reader`` reads the raw label file, see
    :class:`~gsbench.data.description.DatasetDescription`)."""
    image = read_rgb(sample.image)
    height, width = image.shape[:2]
    named = {"image": sample.image}
    if sample.raw_label is not None:
        raw = label_reader(sample.raw_label)
        if raw.dtype != np.uint8:
            raise GsbenchError(f"{sample.raw_label}: expected 8-bit label ids, got {raw.dtype}")
        if raw.shape != (height, width):
            raise GsbenchError(
                f"{sample.raw_label}: label is {raw.shape[1]}x{raw.shape[0]} but its image "
                f"{sample.image.name} is {width}x{height}"
            )
        unknown = cv2.LUT(raw, (~known_label_ids).astype(np.uint8))  # cheaper than bincount
        if cv2.countNonZero(unknown):
            ids = np.unique(raw[unknown > 0]).tolist()
            raise GsbenchError(f"{sample.raw_label}: label ids {ids} are not in the official table")
        train_ids = cv2.LUT(raw, label_to_train)
        outputs = {"label": (sample.label_out, train_ids),
                   "edge": (sample.edge_out, edge_map(train_ids, edge_radius))}
        named["raw_label"] = sample.raw_label
        if sample.instance is not None:
            instance = read_label(sample.instance)
            if instance.shape != (height, width):
                raise GsbenchError(
                    f"{sample.instance}: instance map is {instance.shape[1]}x{instance.shape[0]} "
                    f"but its image {sample.image.name} is {width}x{height}"
                )
            named["instance"] = sample.instance
    else:
        outputs = {}

    sha256 = {name: sha256_file(path) for name, path in named.items()}
    for name, (relative, array) in outputs.items():
        data = encode_png(array)
        atomic_write_bytes(out / relative, data)
        sha256[name] = hashlib.sha256(data).hexdigest()
        named[name] = out / relative

    entry = Sample(
        stem=sample.stem,
        image=_relative(sample.image, out),
        label=sample.label_out,
        edge=sample.edge_out,
        instance=None if sample.instance is None else _relative(sample.instance, out),
        height=int(height),
        width=int(width),
        sha256=sha256,
    )
    return {"key": sample.key, "split": sample.split, "sample": asdict(entry),
            "files": _fingerprints(named.values(), out)}


def _prepare_job(job: tuple) -> dict[str, Any]:
    sample, out, label_to_train, known_label_ids, edge_radius, label_reader = job
    return prepare_sample(sample, Path(out), label_to_train, known_label_ids, edge_radius,
                          label_reader)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe


def _run_jobs(jobs: list[tuple], workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _prepare_job(job)
        return
    # forkserver: children do not inherit the parent's threads (torch, OpenCV) as fork would.
    context = multiprocessing.get_context("forkserver")
    chunksize = max(1, min(16, len(jobs) // (8 * workers)))
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_prepare_job, jobs, chunksize=chunksize)


# --- manifest, journal and fingerprints ---------------------------------------------------------

def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out)).as_posix()


def _fingerprints(paths, out: Path) -> Fingerprints:
    result = {}
    for path in paths:
        st = os.stat(path)
        result[_relative(Path(path), out)] = [st.st_size, st.st_mtime_ns]
    return result


def _expected_files(sample: RawSample, out: Path) -> set[str]:
    paths = [sample.image, sample.raw_label, sample.instance]
    names = {_relative(p, out) for p in paths if p is not None}
    names.update(p for p in (sample.label_out, sample.edge_out) if p is not None)
    return names


def _files_are_current(files: Any, sample: RawSample, out: Path) -> bool:
    """True if ``files`` fingerprints exactly the files of ``sample`` and none changed since."""
    if not isinstance(files, dict) or set(files) != _expected_files(sample, out):
        return False
    for relative, fingerprint in files.items():
        try:
            st = os.stat(out / relative)
        except OSError:
            return False
        if [st.st_size, st.st_mtime_ns] != fingerprint:
            return False
    return True


def _record_is_current(record: dict[str, Any], sample: RawSample, out: Path) -> bool:
    """True if the journal ``record`` is a well-formed entry for ``sample`` with current files."""
    try:
        Sample(**record["sample"])
    except (KeyError, TypeError):  # a line from another gsbench version, or hand-edited
        return False
    return _files_are_current(record.get("files"), sample, out)


def _read_previous_manifest(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The earlier manifest document if it was written by this preparation with ``settings``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        return None
    stamp = document.get("prepare")
    if not isinstance(stamp, dict) or any(stamp.get(k) != v for k, v in settings.items()):
        return None
    return document


def _all_current(document: dict[str, Any], by_key: dict[str, RawSample], out: Path) -> bool:
    files = document["prepare"].get("files")
    if not isinstance(files, dict) or set(files) != set(by_key):
        return False
    return all(_files_are_current(files[key], by_key[key], out) for key in by_key)


def _earlier_records(
    document: dict[str, Any] | None, journal: Path, settings: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records of samples finished earlier: the old manifest's, then the journal's (newer)."""
    if document is not None:
        files = document["prepare"].get("files", {})
        for split, entries in document.get("splits", {}).items():
            for entry in entries:
                key = f"{split}/{entry.get('stem')}"
                if key in files:
                    yield key, {"key": key, "split": split, "sample": entry, "files": files[key]}
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    try:
        header_ok = lines and json.loads(lines[0]) == {"settings": settings}
    except ValueError:
        header_ok = False
    if not header_ok:
        return
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by the interruption
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            yield record["key"], record


def _write_journal(path: Path, settings: dict[str, Any], records) -> None:
    lines = [json.dumps({"settings": settings})] + [json.dumps(r) for r in records]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _splits(raw: RawDataset, done: dict[str, dict[str, Any]]) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {}
    for sample in raw.samples:
        splits.setdefault(sample.split, []).append(Sample(**done[sample.key]["sample"]))
    order = {name: i for i, name in enumerate(SPLIT_ORDER)}
    return dict(sorted(splits.items(), key=lambda item: order.get(item[0], len(order))))
