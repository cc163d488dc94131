"""The run folder: what ``gsbench train`` leaves behind and how every other command reads it.

A run folder holds everything needed to understand and continue a run::

    recipe.yaml  command.txt  versions.json  seed.txt  log.csv  metrics.json (if validated)
    checkpoints/last.pt   (the full training state, every train.checkpoint_every iterations)
    checkpoints/final.pt  (the final weights)
    tensorboard/          (when the tensorboard package is installed)
    eval/<split>_<tag>/   (what ``gsbench eval RUN`` writes, see :mod:`gsbench.evaluation.setting`)
    provenance.json       (only in a run imported from released weights, :mod:`gsbench.weights`)
    init_from.json        (only in a run initialised by ``train.init_from``: file, sha256, what
                           was loaded and what was left as built)

A run is *finished* once ``checkpoints/final.pt`` exists and *interrupted* before that
(``gsbench train --resume`` continues it from ``checkpoints/last.pt``, or from iteration 0 when
it was stopped before its first checkpoint). The checkpoint files' contents are
:mod:`gsbench.engine.checkpoint`'s. This module loads no torch, so that the tables can look at
run folders without loading the models.

One process owns a run folder at a time: :func:`run_dir_lock` holds an OS lock (``flock``) on
``.gsbench.lock`` inside it, which records the holder's PID, for as long as a training or an
evaluation writes there. The operating system releases it when the process ends, however it
ends, so a killed run never leaves a stale lock; under torchrun rank 0 holds it for every rank.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from gsbench.errors import GsbenchError
from gsbench.recipes import Recipe, load_recipe, recipe_from_dict

RECIPE_FILE = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"
LAST_NAME = "last.pt"
FINAL_NAME = "final.pt"
#: Where an imported run (``gsbench import-weights``) says where its weights came from.
PROVENANCE_FILE = "provenance.json"
#: What ``train.init_from`` loaded into a run's model before its first iteration.
INIT_FROM_FILE = "init_from.json"
LOCK_FILE = ".gsbench.lock"


def is_finished(run_dir: Path) -> bool:
    """Whether the run reached its last iteration (its final weights are written)."""
    return (Path(run_dir) / CHECKPOINTS_DIR / FINAL_NAME).is_file()


def is_interrupted(run_dir: Path) -> bool:
    """Whether the run stopped part-way: ``--resume`` continues it from its last checkpoint,
    or from iteration 0 if it stopped before writing one."""
    return (Path(run_dir) / RECIPE_FILE).is_file() and not is_finished(run_dir)


def check_run_dir(run_dir: Path, resume: bool) -> str | None:
    """Why ``run_dir`` cannot be used (or None): a fresh run needs an empty or absent folder
    (its lock file aside), a resumed one a previous run's recipe; a run stopped before its
    first checkpoint resumes from iteration 0."""
    if not resume:
        if run_dir.exists() and not run_dir.is_dir():
            return f"{run_dir}: is a file, not a run folder; choose another --out"
        if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
            if is_interrupted(run_dir) and not (run_dir / CHECKPOINTS_DIR / LAST_NAME).is_file():
                return (f"{run_dir}: run folder holds a run stopped before its first checkpoint; "
                        "pass --resume to restart it from iteration 0 or choose another --out")
            return f"{run_dir}: run folder is not empty; pass --resume to continue it or choose another --out"
        return None
    if not (run_dir / RECIPE_FILE).is_file():
        return f"{run_dir}: cannot resume, {RECIPE_FILE} is missing"
    return None


#: Descriptors of the run-folder locks this process holds. A forked child (a data-loader
#: worker, a scoring worker) closes its copies at once: an ``flock`` lasts while any copy of
#: the descriptor is open, so a child outliving a killed parent would otherwise keep the
#: folder locked.
_HELD_LOCKS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Own ``run_dir`` for the ``with`` block: ``flock`` on its ``.gsbench.lock`` (created, with
    the folder if missing), the file holding this process's PID. A folder another process holds
    is a GsbenchError naming the folder and the holder's PID. On leaving, the lock file goes, and
    so do the folders this call created if nothing else was written into them."""
    run_dir = Path(run_dir)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()][::-1]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GsbenchError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc})") from None
    lock_path = run_dir / LOCK_FILE
    fd = _acquire(lock_path, run_dir)
    _HELD_LOCKS.add(fd)
    try:
        yield run_dir
    finally:
        # unlink while still holding the lock: a process waiting on the old file sees it gone
        with contextlib.suppress(OSError):
            lock_path.unlink()
        _HELD_LOCKS.discard(fd)
        os.close(fd)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing written is ever removed


@contextlib.contextmanager
def run_dir_locks(*paths: str | os.PathLike | None) -> Iterator[None]:
    """Hold :func:`run_dir_lock` of every run folder that one of ``paths`` (files or folders
    about to be written; None entries are skipped) lies in, for what ``gsbench eval`` writes."""
    folders = {folder for p in paths if p is not None
               and (folder := enclosing_run_dir(p)) is not None}
    with contextlib.ExitStack() as stack:
        for folder in sorted(folders):
            stack.enter_context(run_dir_lock(folder))
        yield


def enclosing_run_dir(path: str | os.PathLike) -> Path | None:
    """The run folder ``path`` lies in (the nearest folder, ``path`` itself included, that holds a
    recipe.yaml or a lock file), or None."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if (folder / RECIPE_FILE).is_file() or (folder / LOCK_FILE).is_file():
            return folder
    return None


def _acquire(lock_path: Path, run_dir: Path) -> int:
    """An open descriptor of ``lock_path`` holding its exclusive lock, with our PID written."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows has no flock
        raise GsbenchError("run-folder locking needs a POSIX system (fcntl.flock)") from None
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the holder removed the folder it had created: ours now
            run_dir.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as exc:
            raise GsbenchError(f"{run_dir}: cannot lock the run folder ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise GsbenchError(f"{run_dir}: run folder is in use by another gsbench process "
                               f"(PID {holder}); wait for it to end or choose another folder") from None
        except OSError as exc:  # a file system without flock, for one
            os.close(fd)
            raise GsbenchError(f"{run_dir}: cannot lock the run folder ({exc.strerror or exc})") from None
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            return fd
        os.close(fd)  # the previous holder unlinked this file after we opened it: try again


def load_run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe saved in a run folder."""
    path = Path(run_dir) / RECIPE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GsbenchError(f"{path}: cannot read the run's recipe ({exc})") from None
    return recipe_from_dict(raw, source=str(path))


def load_resumed_recipe(
    run_dir: Path, recipe: str | None = None, overrides: Sequence[str] = ()
) -> Recipe:
    """The recipe a resumed run continues with: its own. ``recipe`` and ``overrides`` (what
    ``--recipe`` / ``--set`` asked for) may only repeat it; the data root may differ, since
    the run records where its data was."""
    resolved = load_run_recipe(run_dir)
    if recipe is not None or overrides:
        requested = load_recipe(recipe if recipe is not None else run_dir / RECIPE_FILE, overrides)
        same_data = {"root": resolved.data.root}
        if requested.to_dict() | {"data": requested.to_dict()["data"] | same_data} != resolved.to_dict():
            raise GsbenchError(f"{run_dir}/{RECIPE_FILE}: --recipe/--set differ from the run's "
                               "recipe; a resumed run keeps its recipe (start a new --out instead)")
    return resolved


def find_checkpoint(target: str | os.PathLike) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) for a run folder (its final weights, else its
    last training checkpoint) or a checkpoint file (inside ``RUN/checkpoints/`` or anywhere)."""
    target = Path(target).expanduser()
    if target.is_dir():
        for name in (FINAL_NAME, LAST_NAME):
            candidate = target / CHECKPOINTS_DIR / name
            if candidate.is_file():
                return candidate, target
        raise GsbenchError(
            f"{target}: no {CHECKPOINTS_DIR}/{FINAL_NAME} or {CHECKPOINTS_DIR}/{LAST_NAME} "
            "(is it a run folder?)"
        )
    if not target.exists():
        raise GsbenchError(f"{target}: no such run folder or checkpoint")
    run_dir = target.parent.parent if target.parent.name == CHECKPOINTS_DIR else None
    if run_dir is not None and not (run_dir / RECIPE_FILE).is_file():
        run_dir = None
    return target, run_dir
