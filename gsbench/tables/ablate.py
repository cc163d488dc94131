"""``gsbench ablate``: train and evaluate the missing cells of a paper table.

A plan is built from the table (:func:`plan_ablation`): every cell that needs a trained run
(:attr:`~gsbench.tables.cells.Cell.reproduced_by_training`) asks, for each of its recipes
(the row's, and the baseline's for a difference cell) and each seed, for one run folder with one
evaluation (:attr:`~gsbench.tables.cells.Cell.evaluation`: split, test scales, flip, model
output). Cells sharing a run share one job (:class:`~gsbench.tables.jobs.RunJob`). A job is what
is still missing for its run, judged from the run folders under ``--runs`` exactly as
``gsbench report`` matches them (:class:`~gsbench.tables.runs.RunIndex`):

* no run folder: train, then evaluate;
* a run with ``checkpoints/last.pt`` but no ``checkpoints/final.pt`` (interrupted): resume, then
  evaluate;
* a finished run without the cell's ``eval/<split>_<tag>/metrics.json``: evaluate only;
* everything present: nothing (the cell is done).

A cell initialised from another row's run (``init_from`` in the table file, GFF Table 1's fusion
rows) trains after that row's run of the same seed, whose folder its train line gives as
``train.init_from``: that run's job is planned first (also when ``rows`` leaves its row out) and
the cell's job is :attr:`~gsbench.tables.jobs.RunJob.after` it.

At ``--scale smoke`` each recipe is replaced by its smoke stand-in
(:func:`~gsbench.tables.smoke.smoke_training`); ``gsbench report --scale smoke`` matches the
same runs. ``--seeds N`` trains seeds ``s, s+1, ..., s+N-1`` (``s`` the recipe's seed) in
separate folders; the report shows their mean +- std. Each job runs as ``gsbench``
subprocesses, its own processes, one job at a time per device (:func:`run_plan`), or its lines
are printed for a cluster scheduler (:func:`plan_commands`); each job trains and evaluates on the
prepared data of its cells' dataset (:class:`~gsbench.tables.jobs.DataRoots`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gsbench.commands import this_python
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_text
from gsbench.recipes import RECIPES_DIR
from gsbench.tables.cells import Table
from gsbench.tables.jobs import DataRoots, RunJob, data_roots, existing_job, new_run_dir
from gsbench.tables.runs import RunIndex, eval_metrics_file, recipe_fingerprint
from gsbench.tables.smoke import TrainingSpec, cell_evaluation, cell_training, check_scale


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


def plan_ablation(table: Table, runs_dir: Path = Path("runs"), *, scale: str = "full",
                  seeds: int = 1, rows: list[str] | None = None,
                  smoke_dir: Path = RECIPES_DIR) -> AblationPlan:
    """What training and evaluation the trainable cells of ``table`` (of the rows ``rows``, all
    when None) still need, given the run folders under ``runs_dir`` (at smoke scale, with the
    ``-smoke`` recipes of ``smoke_dir``)."""
    check_scale(scale)
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
        setting = cell_evaluation(cell, scale)
        cell_jobs = []
        for spec in specs:
            for offset in range(seeds):
                job = _plan_job(jobs, index, spec, spec.resolved.seed + offset, runs_dir, taken,
                                cell.dataset)
                if isinstance(job, str):
                    skipped.append((label, job))
                    break
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


def _plan_job(jobs: dict[tuple[str, int], RunJob], index: RunIndex, spec: TrainingSpec,
              seed: int, runs_dir: Path, taken: set[Path], dataset: str | None) -> RunJob | str:
    """The job of one (recipe, seed) on ``dataset`` (planned once, in ``jobs``), or why it
    cannot be planned. A run to train from another run (``spec.init_from``) comes after that
    run's job of the same seed, planned before it."""
    key = (recipe_fingerprint(spec.resolved.to_dict()), seed)
    if key in jobs:
        return jobs[key]
    job = existing_job(index, spec, seed, dataset)
    if job is None:
        after = None
        if spec.init_from is not None:
            after = _plan_job(jobs, index, spec.init_from, seed, runs_dir, taken, dataset)
            if isinstance(after, str):
                return after
        run_dir = new_run_dir(runs_dir, spec, seed)
        if run_dir in taken or (run_dir.exists() and (not run_dir.is_dir()
                                                      or any(run_dir.iterdir()))):
            return (f"{run_dir}: folder exists but holds no run of {spec.recipe} (seed {seed}) "
                    "with this recipe; move it away or pass another --runs")
        taken.add(run_dir)
        job = RunJob(run_dir, spec, seed, "train", dataset, after=after)
    jobs[key] = job
    return job


def plan_commands(plan: AblationPlan, data: str | DataRoots, *, device: str = "cpu",
                  nproc: int = 1, placeholders: bool = False) -> list[str]:
    """One shell line per pending job (``train ... && eval ...``), for a cluster scheduler.
    ``data``: one root for every dataset, or :class:`DataRoots`; a dataset without a root is a
    GsbenchError, or ``<dataset data>`` with ``placeholders``."""
    roots = data_roots(data)
    return [job.shell_line(roots.for_job(job, placeholders), device, nproc)
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
    returncode: int | None  # None: not run, the run it starts from failed (``log`` is that run's)
    log: Path


def clock(seconds: float) -> str:
    """A duration as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    seconds = int(round(max(seconds, 0.0)))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Tally:
    """How far a plan has come: cells done of all the plan's cells, and the time left estimated
    from the jobs finished so far (their mean duration, spread over the devices)."""

    def __init__(self, plan: AblationPlan, devices: int):
        self.devices = devices
        self.jobs_left = len(plan.pending)
        self.waiting = {cell: sum(cell in job.cells for job in plan.pending)
                        for job in plan.pending for cell in job.cells}
        self.done = len(plan.done)
        self.total = self.done + len(self.waiting)
        self.durations: list[float] = []

    def finished(self, job: RunJob, seconds: float | None, ok: bool) -> None:
        """``job`` ended after ``seconds`` (None: skipped without running)."""
        self.jobs_left -= 1
        if seconds is not None:
            self.durations.append(seconds)
        for cell in job.cells:
            self.waiting[cell] -= 1
            self.done += ok and self.waiting[cell] == 0

    def __str__(self) -> str:
        if not self.durations:
            left = "time left unknown until a run finishes"
        else:
            mean = sum(self.durations) / len(self.durations)
            left = f"about {clock(mean * self.jobs_left / self.devices)} left"
        return f"[{self.done}/{self.total} cells done, {left}]"


def run_plan(plan: AblationPlan, data: str | DataRoots, devices: list[str], *,
             on_event: Callable[[str], None] = lambda message: None) -> list[JobResult]:
    """Run the pending jobs as ``gsbench`` subprocesses: one worker per device takes the next job
    of the plan (on CPU: one job at a time). A job that comes :attr:`~RunJob.after` another
    pending job (a run initialised from that job's run) waits until it has succeeded, and is
    skipped when it failed. A job's output goes to ``<runs>/ablate-logs/<run folder>.log``; a
    failed job does not stop the others. A CUDA job
    sees only its GPU (``CUDA_VISIBLE_DEVICES``) and runs with ``--device cuda``. Every job's
    dataset must have a root in ``data`` (checked before the first job starts).

    ``on_event`` hears when a job starts (its run folder and cells) and ends (with how long it
    took), each line led by the progress: cells done of the table's cells and the time left."""
    roots = data_roots(data)
    roots.check(plan.pending, exist=False)
    waiting = list(plan.pending)
    planned = {job.run_dir for job in waiting}
    succeeded: dict[Path, bool] = {}  # run folder -> whether its job succeeded
    logs = plan.runs_dir / "ablate-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    lock = threading.Condition()
    tally = _Tally(plan, len(devices))

    def log_of(job: RunJob) -> Path:
        return logs / f"{job.run_dir.name}.log"

    def next_job(device: str) -> RunJob | None:
        """(holding ``lock``) The first waiting job whose run's source run is trained, skipping
        those whose source failed; None when no job is left."""
        while waiting:
            for job in waiting:
                after = job.after
                if after is None or after.run_dir not in planned or succeeded.get(after.run_dir):
                    waiting.remove(job)
                    return job
                if after.run_dir in succeeded:  # failed
                    waiting.remove(job)
                    results.append(JobResult(job, device, None, log_of(after)))
                    tally.finished(job, None, False)
                    succeeded[job.run_dir] = False
                    on_event(f"{tally} {device}: skipped {job.run_dir}: the run it starts from "
                             f"failed ({after.run_dir}, see {log_of(after)})")
                    lock.notify_all()
                    break
            else:
                lock.wait()
        return None

    def worker(device: str) -> None:
        env = dict(os.environ)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        while True:
            with lock:
                job = next_job(device)
                if job is None:
                    return
                what = f"cells {', '.join(job.cells)}" if job.cells else "initialises other runs"
                on_event(f"{tally} {device}: {job.action or 'eval'} {job.run_dir} ({what})")
            log = log_of(job)
            lines = []
            code = 0
            start = time.monotonic()
            root, on = roots.for_job(job), "cpu" if device == "cpu" else "cuda"
            # the log shows the lines as a person types them; the installed entry point may not
            # be on PATH, so they run with this interpreter, quietly
            for words, argv in zip(job.commands(root, on),
                                   job.commands(root, on, quiet=True, launcher=this_python())):
                proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                lines += [f"$ {shlex.join(words)}", proc.stdout]
                code = proc.returncode
                if code != 0:
                    break
            atomic_write_text(log, "\n".join(lines))
            took = time.monotonic() - start
            with lock:
                results.append(JobResult(job, device, code, log))
                tally.finished(job, took, code == 0)
                succeeded[job.run_dir] = code == 0
                lock.notify_all()
                state = "done" if code == 0 else f"FAILED (exit {code}, see {log})"
                on_event(f"{tally} {device}: {state} in {clock(took)}: {job.run_dir}")

    threads = [threading.Thread(target=worker, args=(device,), daemon=True) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


__all__ = ["AblationPlan", "JobResult", "clock", "parse_devices", "plan_ablation",
           "plan_commands", "run_plan"]
