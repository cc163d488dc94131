"""``gsbench ablate``: train and evaluate the missing cells of a paper table.

A plan is built from the table (:func:`plan_ablation`): every cell that needs a trained run
(:attr:`~gsbench.tables.cells.Cell.reproduced_by_training`) asks, for each of its recipes
(the row's, and the baseline's for a difference cell) and each seed, for one run folder with one
evaluation (:class:`~gsbench.engine.eval_setting.EvalSetting`: split, test scales, flip, model
output). Cells sharing a run share one job. A job is what
is still missing for its run, judged from the run folders under ``--runs`` exactly as
``gsbench report`` matches them (:class:`~gsbench.tables.runs.RunIndex`):

* no run folder: train, then evaluate;
* a run with ``checkpoints/last.pt`` but no ``checkpoints/final.pt`` (interrupted): resume, then
  evaluate;
* a finished run without the cell's ``eval/<split>_<tag>/metrics.json``: evaluate only;
* everything present: nothing (the cell is done).

At ``--scale smoke`` each recipe is replaced by its smoke stand-in
(:func:`~gsbench.tables.smoke.smoke_training`); ``gsbench report --scale smoke`` matches the
same runs. ``--seeds N`` trains seeds ``s, s+1, ..., s+N-1`` (``s`` the recipe's seed) in
separate folders; the report shows their mean +- std. Jobs run as ``gsbench`` subprocesses, one
at a time per device (:func:`run_plan`), or are printed for a cluster scheduler
(:func:`plan_commands`).

A table may mix datasets (RANet Table 4: Cityscapes, PASCAL Context and COCO-Stuff columns), so
the prepared data is given per dataset (:class:`DataRoots`: ``--data PATH`` for every dataset,
``--data DATASET=PATH`` for one); each job trains and evaluates on its cells' dataset.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from gsbench.engine.eval_setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_text
from gsbench.recipes import RECIPES_DIR
from gsbench.tables.cells import Table
from gsbench.tables.registry import KNOWN_DATASETS
from gsbench.tables.runs import RunIndex, eval_metrics_file, recipe_fingerprint, run_name
from gsbench.tables.smoke import TrainingSpec, cell_training


@dataclass
class RunJob:
    """One run folder of the plan and what it still needs."""

    run_dir: Path
    spec: TrainingSpec
    seed: int
    action: str | None  # "train", "resume" or None (trained already)
    dataset: str | None = None  # the dataset of its cells: what it trains and is scored on
    evals: list[EvalSetting] = field(default_factory=list)  # evaluations still missing
    cells: list[str] = field(default_factory=list)  # the cells it fills ("row.column")

    @property
    def pending(self) -> bool:
        return self.action is not None or bool(self.evals)

    def _seed_overrides(self) -> tuple[str, ...]:
        if self.seed == self.spec.resolved.seed:
            return self.spec.overrides
        return (*self.spec.overrides, f"seed={self.seed}")

    def commands(self, data: str, device: str = "cpu", nproc: int = 1) -> list[list[str]]:
        """The ``gsbench`` command lines (argument lists) of this job, in order. ``nproc`` > 1
        trains under ``torchrun`` with that many processes (one GPU each)."""
        device_words = [] if device == "cpu" else ["--device", device]
        out: list[list[str]] = []
        if self.action is not None:
            train = ["torchrun", f"--nproc_per_node={nproc}", "-m", "gsbench.cli", "train"] \
                if nproc > 1 else ["gsbench", "train"]
            if self.action == "resume":
                train += ["--resume"]
            else:
                train += ["--recipe", self.spec.recipe]
                for override in self._seed_overrides():
                    train += ["--set", override]
            out.append(train + ["--data", data, "--out", str(self.run_dir), *device_words])
        for setting in self.evals:
            out.append(["gsbench", "eval", str(self.run_dir), "--data", data,
                        *setting.cli_args(), *device_words])
        return out


@dataclass
class AblationPlan:
    table: Table
    scale: str
    runs_dir: Path
    jobs: list[RunJob]
    done: list[str]  # cells whose runs and evaluations all exist
    skipped: list[tuple[str, str]]  # (cell, why it cannot be trained at this scale)
    warnings: list[str]

    @property
    def pending(self) -> list[RunJob]:
        return [job for job in self.jobs if job.pending]


def _cell_label(cell) -> str:
    return f"{cell.row_id}.{cell.column}"


def _finished(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "final.pt").is_file()


def _interrupted(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last.pt").is_file() and not _finished(run_dir)


def plan_ablation(table: Table, runs_dir: Path = Path("runs"), *, scale: str = "full",
                  seeds: int = 1, rows: list[str] | None = None,
                  smoke_dir: Path = RECIPES_DIR) -> AblationPlan:
    """What training and evaluation the trainable cells of ``table`` (of the rows ``rows``, all
    when None) still need, given the run folders under ``runs_dir`` (at smoke scale, with the
    ``-smoke`` recipes of ``smoke_dir``)."""
    if seeds < 1:
        raise GsbenchError(f"--seeds must be at least 1, got {seeds}")
    row_ids = [rid for rid, _ in table.rows]
    for row in rows or ():
        if row not in row_ids:
            raise GsbenchError(f"{table.id}: no row {row!r} (rows: {', '.join(row_ids)})")
    runs_dir = Path(runs_dir)
    index = RunIndex(runs_dir)
    jobs: dict[tuple[str, int], RunJob] = {}
    taken: set[Path] = set()
    done, skipped, warnings = [], [], list(index.warnings)
    for cell in table.cells:
        if not cell.reproduced_by_training or (rows and cell.row_id not in rows):
            continue
        label = _cell_label(cell)
        try:
            specs = [cell_training(cell, baseline, scale, smoke_dir)
                     for baseline in ((False, True) if cell.baseline else (False,))]
        except GsbenchError as exc:
            skipped.append((label, str(exc)))
            continue
        setting = cell.evaluation
        cell_jobs = []
        for spec in specs:
            for offset in range(seeds):
                seed = spec.resolved.seed + offset
                key = (recipe_fingerprint(spec.resolved.to_dict()), seed)
                if key not in jobs:
                    job = _new_job(index, spec, seed, runs_dir, taken, cell.dataset)
                    if isinstance(job, str):
                        skipped.append((label, job))
                        break
                    jobs[key] = job
                job = jobs[key]
                if label not in job.cells:
                    job.cells.append(label)
                has_eval = job.action is None and \
                    eval_metrics_file(job.run_dir, setting) is not None
                if not has_eval and setting not in job.evals:
                    job.evals.append(setting)
                cell_jobs.append(job)
            else:
                continue
            break
        else:
            if not any(job.pending for job in cell_jobs):
                done.append(label)
    return AblationPlan(table, scale, runs_dir, list(jobs.values()), done, skipped, warnings)


def _new_job(index: RunIndex, spec: TrainingSpec, seed: int, runs_dir: Path,
             taken: set[Path], dataset: str | None) -> RunJob | str:
    """The job of one (recipe, seed) on ``dataset``, or why it cannot be planned."""
    existing = sorted((r for r in index.runs_for(spec.resolved) if r.seed == seed),
                      key=lambda r: (not _finished(r.path), str(r.path)))
    for run in existing:
        if _finished(run.path):
            return RunJob(run.path, spec, seed, None, dataset)
        if _interrupted(run.path):
            return RunJob(run.path, spec, seed, "resume", dataset)
    if existing:
        return (f"{existing[0].path}: run folder of {spec.recipe} (seed {seed}) has no checkpoint "
                "to resume from; delete it to train again")
    base = spec.folder if seed == spec.resolved.seed else run_name(spec.folder, (f"seed={seed}",))
    run_dir = runs_dir / base
    if run_dir in taken or (run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))):
        return (f"{run_dir}: folder exists but holds no run of {spec.recipe} (seed {seed}) with "
                "this recipe; move it away or pass another --runs")
    taken.add(run_dir)
    return RunJob(run_dir, spec, seed, "train", dataset)


# --- where each dataset's prepared data lives -----------------------------------------------------

_DATASET_KEY = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class DataRoots:
    """The prepared data of the datasets a table is scored on: ``default`` for every dataset
    (``--data PATH``) and ``by_dataset`` for single ones (``--data DATASET=PATH``, which wins)."""

    default: str | None = None
    by_dataset: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Iterable[str]) -> DataRoots:
        """From the ``--data`` values: at most one ``PATH`` and one ``DATASET=PATH`` per dataset
        (DATASET a key of :data:`~gsbench.tables.registry.KNOWN_DATASETS`). A value is read as
        ``DATASET=PATH`` when the part before its first ``=`` is a plain word; a path that holds
        a ``=`` can be given as ``./name=...``."""
        default, by_dataset = None, {}
        for value in values:
            key, sep, path = value.partition("=")
            if sep and _DATASET_KEY.fullmatch(key):
                if key not in KNOWN_DATASETS:
                    raise GsbenchError(f"--data {value}: unknown dataset {key!r} "
                                       f"(use one of {', '.join(KNOWN_DATASETS)})")
                if key in by_dataset:
                    raise GsbenchError(f"--data {key}=...: given twice")
                if not path:
                    raise GsbenchError(f"--data {value}: no path after {key}=")
                by_dataset[key] = path
            elif not value:
                raise GsbenchError("--data: empty path")
            elif default is not None:
                raise GsbenchError(f"--data {value}: a second path for every dataset (the first "
                                   f"is {default}); give DATASET=PATH for each dataset instead")
            else:
                default = value
        return cls(default, by_dataset)

    def root(self, dataset: str | None) -> str | None:
        """The root of ``dataset``, or None when none was given."""
        if dataset is not None and dataset in self.by_dataset:
            return self.by_dataset[dataset]
        return self.default

    def missing(self, jobs: Iterable[RunJob]) -> dict[str, list[str]]:
        """dataset -> the cells of ``jobs`` that are scored on it and have no root."""
        out: dict[str, list[str]] = {}
        for job in jobs:
            if self.root(job.dataset) is None:
                cells = out.setdefault(str(job.dataset), [])
                cells.extend(c for c in job.cells if c not in cells)
        return out

    def check(self, jobs: Iterable[RunJob], *, exist: bool = True) -> None:
        """A GsbenchError naming the datasets of ``jobs`` without a root (and their cells); with
        ``exist``, also for a root that is not a folder."""
        jobs = list(jobs)
        missing = self.missing(jobs)
        if missing:
            raise _no_root(missing)
        if exist:
            for dataset in dict.fromkeys(job.dataset for job in jobs):
                root = self.root(dataset)
                if not Path(root).is_dir():
                    raise GsbenchError(f"--data {root}: no such folder (the prepared {dataset} "
                                       "data)")

    def root_or_placeholder(self, dataset: str | None) -> str:
        """The root of ``dataset``, or ``<dataset data>`` when none was given."""
        root = self.root(dataset)
        return root if root is not None else placeholder_root(dataset)

    def for_job(self, job: RunJob, placeholder: bool = False) -> str:
        """The root of ``job``'s dataset; without one ``<dataset data>`` when ``placeholder``,
        else a GsbenchError."""
        root = self.root(job.dataset)
        if root is not None:
            return root
        if not placeholder:
            raise _no_root(self.missing([job]))
        return self.root_or_placeholder(job.dataset)


def _no_root(missing: dict[str, list[str]]) -> GsbenchError:
    parts = []
    for dataset, cells in missing.items():
        more = f" +{len(cells) - 3} more" if len(cells) > 3 else ""
        parts.append(f"{dataset} (cells {', '.join(cells[:3])}{more})")
    how = f"{next(iter(missing))}=PATH" if len(missing) == 1 else "DATASET=PATH for each"
    return GsbenchError(f"no --data for {'; '.join(parts)}: add --data {how} "
                        "(or one --data PATH for every dataset)")


def placeholder_root(dataset: str | None) -> str:
    """What a dry run prints for the data of a dataset that has no ``--data``."""
    return f"<{dataset} data>"


def _roots(data: str | DataRoots) -> DataRoots:
    return data if isinstance(data, DataRoots) else DataRoots(default=data)


def plan_commands(plan: AblationPlan, data: str | DataRoots, *, device: str = "cpu",
                  nproc: int = 1, placeholders: bool = False) -> list[str]:
    """One shell line per pending job (``train ... && eval ...``), for a cluster scheduler.
    ``data``: one root for every dataset, or :class:`DataRoots`; a dataset without a root is a
    GsbenchError, or ``<dataset data>`` with ``placeholders``."""
    roots = _roots(data)
    return [" && ".join(shlex.join(words) for words in
                        job.commands(roots.for_job(job, placeholders), device, nproc))
            for job in plan.pending]


def parse_devices(text: str) -> list[str]:
    """``cpu`` or a comma-separated list of ``cuda:N``: the devices jobs are spread over."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["cpu"]:
        return items
    if not items or any(not (item.startswith("cuda:") and item[5:].isdigit()) for item in items):
        raise GsbenchError(f"--devices {text!r}: use cpu or a list like cuda:0,cuda:1")
    if len(set(items)) != len(items):
        raise GsbenchError(f"--devices {text!r}: a device is listed twice")
    return items


@dataclass(frozen=True)
class JobResult:
    job: RunJob
    device: str
    returncode: int
    log: Path


def _argv(words: list[str]) -> list[str]:
    # the installed entry point may not be on PATH: run the package with this interpreter
    return [sys.executable, "-m", "gsbench.cli", *words[1:]] if words[0] == "gsbench" else words


def run_plan(plan: AblationPlan, data: str | DataRoots, devices: list[str], *,
             on_event: Callable[[str], None] = lambda message: None) -> list[JobResult]:
    """Run the pending jobs as ``gsbench`` subprocesses: one worker per device takes the next job
    from a shared queue (on CPU: one job at a time). A job's output goes to
    ``<runs>/ablate-logs/<run folder>.log``; a failed job does not stop the others. A CUDA job
    sees only its GPU (``CUDA_VISIBLE_DEVICES``) and runs with ``--device cuda``. Every job's
    dataset must have a root in ``data`` (checked before the first job starts)."""
    roots = _roots(data)
    roots.check(plan.pending, exist=False)
    jobs: queue.Queue[RunJob] = queue.Queue()
    for job in plan.pending:
        jobs.put(job)
    logs = plan.runs_dir / "ablate-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    lock = threading.Lock()

    def worker(device: str) -> None:
        env = dict(os.environ)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            log = logs / f"{job.run_dir.name}.log"
            lines = []
            code = 0
            with lock:
                on_event(f"{device}: {job.action or 'eval'} {job.run_dir} ({', '.join(job.cells)})")
            for words in job.commands(roots.for_job(job), "cpu" if device == "cpu" else "cuda"):
                proc = subprocess.run(_argv(words + ["--quiet"]), env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                lines += [f"$ {shlex.join(words)}", proc.stdout]
                code = proc.returncode
                if code != 0:
                    break
            atomic_write_text(log, "\n".join(lines))
            with lock:
                results.append(JobResult(job, device, code, log))
                state = "done" if code == 0 else f"FAILED (exit {code}, see {log})"
                on_event(f"{device}: {state}: {job.run_dir}")

    threads = [threading.Thread(target=worker, args=(device,), daemon=True) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


__all__ = ["AblationPlan", "DataRoots", "JobResult", "RunJob", "parse_devices", "placeholder_root",
           "plan_ablation", "plan_commands", "run_plan"]
