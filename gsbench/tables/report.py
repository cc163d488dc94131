"""The papers' tables joined with our runs: what ``gsbench report`` prints.

For every trained cell the report finds the run folders whose resolved recipe is the cell's
recipe with its ``--set`` overrides (:mod:`gsbench.tables.runs`; at ``scale="smoke"`` the
cell's smoke stand-in, :mod:`gsbench.tables.smoke`, which ``gsbench ablate --scale smoke``
trains), reads the cell's metric from each run's ``eval/<split>_<tag>/metrics.json`` (the
folder ``gsbench eval`` writes for the cell's :attr:`~gsbench.tables.cells.Cell.evaluation`)
and reports the mean and standard deviation over the runs (one per seed), the difference to the
paper and the runs used; runs trained from scratch are counted in the cell's note. A cell with
no run (or no evaluation) gets the exact ``gsbench train ... && gsbench eval ...`` command that
fills it: the job ``gsbench ablate`` would run (:class:`~gsbench.tables.jobs.RunJob`), one job
per run folder with every evaluation its cells need, as ``gsbench ablate --dry-run`` lists them;
a cell initialised from another row's run (GFF Table 1) has that run's training first when it
is missing.
A smoke-scale number is "filled at smoke scale", never "reproduced", and has no difference to
the paper: a toy run shows the format, not the paper's result (:data:`SMOKE_NOTE`). Tables
computed on the spot come from :mod:`gsbench.tables.static`; :mod:`gsbench.tables.render`
writes the result as a rich table, Markdown, CSV or LaTeX.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gsbench.engine.run_dir import is_interrupted
from gsbench.errors import GsbenchError
from gsbench.recipes import RECIPES_DIR
from gsbench.tables.cells import Cell, Table
from gsbench.evaluation.setting import EvalSetting
from gsbench.tables.jobs import DataRoots, RunJob, data_roots, existing_job, new_run_dir
from gsbench.tables.runs import RunIndex, eval_metrics_file
from gsbench.tables.smoke import TrainingSpec, cell_evaluation, cell_training, check_scale
from gsbench.tables.static import StaticResult, compute_static

#: What a smoke-scale report says above its tables.
SMOKE_NOTE = ("Smoke scale: every number of ours comes from a toy run (tiny backbone, small crops, "
              "a few iterations) and is not comparable to the paper's.")

CELL_STATES = {
    "reproduced": "our value from run folders",
    "filled-smoke": "our value from toy smoke-scale runs: the format, not the paper's number",
    "computed": "computed on the spot",
    "missing-run": "no run yet: the command fills it",
    "missing-eval": "runs exist but not this evaluation: the command fills it",
    "not-computed": "a figure the on-the-spot computation cannot give (see the note)",
    "not-reproducible": "needs data gsbench cannot have (see the reason)",
    "missing-recipe": "the recipe that reproduces it is not written yet",
    "quoted": "another paper's number, quoted for comparison",
}


@dataclass(frozen=True)
class CellReport:
    """One cell of the report: the paper's number, ours (mean +- std over runs) and where it
    comes from, or the command / reason for its absence."""

    cell: Cell
    state: str
    ours: float | None = None
    std: float | None = None
    runs: tuple[str, ...] = ()
    detail: str = ""  # the run folders, the reason, the note
    commands: tuple[str, ...] = ()  # what fills a missing cell

    @property
    def delta(self) -> float | None:
        """Ours minus the paper's; None without both, and at smoke scale (not comparable)."""
        if self.ours is None or self.cell.paper_value is None or self.state == "filled-smoke":
            return None
        return self.ours - self.cell.paper_value

    @property
    def run_dirs(self) -> tuple[Path, ...]:
        """The run folders our value comes from (the baseline's too)."""
        return tuple(Path(run.removeprefix("-")) for run in self.runs)


@dataclass(frozen=True)
class TableReport:
    table: Table
    cells: tuple[CellReport, ...]
    static_method: str | None = None
    scale: str = "full"  # the runs' scale (see gsbench.tables.smoke)

    @property
    def commands(self) -> list[str]:
        """Every distinct command that fills a missing cell, in table order."""
        seen: dict[str, None] = {}
        for cell in self.cells:
            for command in cell.commands:
                seen.setdefault(command, None)
        return list(seen)


# --- a cell's number in a run's metrics -----------------------------------------------------------


def metric_value(metrics: dict[str, Any], cell: Cell) -> float | None:
    """The cell's metric (percent) from a metrics.json dict; None when it was not computed."""
    try:
        if cell.metric == "boundary_f":
            value = metrics["boundary_f"][str(cell.radius)]
        elif cell.metric == "crop_miou":
            value = metrics["crop_miou"][str(cell.crop_factor)]
        elif cell.metric == "class_iou":
            value = metrics["per_class_iou"][cell.class_name]
        elif cell.metric == "class_boundary_f":
            value = metrics["boundary_f_per_class"][str(cell.radius)][cell.class_name]
        else:
            value = metrics[cell.metric]
    except (KeyError, TypeError):
        return None
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GsbenchError(f"{path}: cannot read the metrics ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise GsbenchError(f"{path}: metrics.json must hold a mapping")
    return data


# --- the report ---------------------------------------------------------------------------------


@dataclass
class _Scores:
    values: list[float] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    jobs: list[RunJob] = field(default_factory=list)
    missing_eval: bool = False
    from_scratch: int = 0  # runs among ``runs`` without pretrained backbone weights
    released: int = 0  # runs among ``runs`` imported from released weights


def _training_jobs(index: RunIndex, spec: TrainingSpec, seed: int, dataset: str | None,
                   evals: list[EvalSetting], cells: list[str]) -> list[RunJob]:
    """The jobs that train a new run of ``spec`` and ``seed`` (then evaluate ``evals``), as
    ablate plans them: a run initialised from another run (``spec.init_from``) comes after that
    run's job of the same seed, which comes first unless that run is finished."""
    jobs, after = [], None
    if spec.init_from is not None:
        after = existing_job(index, spec.init_from, seed, dataset)
        if after is None:
            jobs = _training_jobs(index, spec.init_from, seed, dataset, [], [])
            after = jobs[-1]
        elif after.pending:
            jobs = [after]
    return [*jobs, RunJob(new_run_dir(index.runs_dir, spec, seed), spec, seed, "train", dataset,
                          evals, cells, after=after)]


def _scores(index: RunIndex, cell: Cell, baseline: bool, scale: str, smoke_dir: Path) -> _Scores:
    spec = cell_training(cell, baseline, scale, smoke_dir)
    evaluation = cell_evaluation(cell, scale)
    label = f"{cell.row_id}.{cell.column}"
    out = _Scores()
    # what fills the cell is the job ablate would run for it
    runs = index.runs_for(spec.resolved)
    if not runs:
        out.jobs = _training_jobs(index, spec, spec.resolved.seed, cell.dataset, [evaluation],
                                  [label])
        return out
    for run in sorted(runs, key=lambda r: (r.seed, str(r.path))):
        path = eval_metrics_file(run.path, evaluation)
        value = metric_value(_read_metrics(path), cell) if path is not None else None
        if value is None:
            out.missing_eval = True
            action = "resume" if is_interrupted(run.path) else None
            out.jobs.append(RunJob(run.path, spec, run.seed, action, cell.dataset, [evaluation],
                                   [label]))
            continue
        out.values.append(value)
        out.runs.append(str(run.path))
        out.from_scratch += not run.pretrained and not run.released
        out.released += run.released
    return out


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def report_cell(cell: Cell, index: RunIndex, static: StaticResult, data: str | DataRoots = "DATA",
                scale: str = "full", *, smoke_dir: Path = RECIPES_DIR) -> CellReport:
    """Our value of one cell, or why there is none (at ``scale``: the runs of the papers' recipes,
    or of their smoke variants from ``smoke_dir``, see :func:`cell_training`)."""
    report, jobs = _report_cell(cell, index, static, scale, smoke_dir)
    return _with_commands(report, jobs, data_roots(data))


def _report_cell(cell: Cell, index: RunIndex, static: StaticResult, scale: str,
                 smoke_dir: Path) -> tuple[CellReport, list[RunJob]]:
    """:func:`report_cell` without the commands: the report and the jobs that fill the cell."""
    note = cell.note or ""
    if cell.kind == "static":
        value = static.values.get(cell.row_id, {}).get(cell.metric)
        row_note = static.notes.get(cell.row_id, "")
        detail = "; ".join(x for x in (row_note, note) if x)
        if value is None:
            return CellReport(cell, "not-computed", detail=detail), []
        return CellReport(cell, "computed", ours=float(value), detail=detail), []
    if not cell.reproducible:
        return CellReport(cell, "not-reproducible", detail=cell.reason or ""), []
    if cell.status == "missing-recipe":
        missing = [n for n in (cell.recipe, cell.baseline) if n is not None]
        return CellReport(cell, "missing-recipe",
                          detail=f"recipe {' / '.join(missing)} is not written yet"), []
    if cell.recipe is None:
        return CellReport(cell, "quoted", detail=f"quoted from {cell.quoted_from}"), []
    try:
        main = _scores(index, cell, False, scale, smoke_dir)
        parts = [main] + ([_scores(index, cell, True, scale, smoke_dir)] if cell.baseline
                          else [])
    except GsbenchError as exc:
        if scale == "full":
            raise
        return CellReport(cell, "missing-recipe", detail=str(exc)), []
    jobs = [job for p in parts for job in p.jobs]
    if any(not p.values for p in parts):
        state = "missing-eval" if any(p.missing_eval for p in parts) else "missing-run"
        return CellReport(cell, state, detail=note), jobs
    mean, std = _mean_std(main.values)
    runs = tuple(main.runs)
    scratch = sum(p.from_scratch for p in parts)
    if scratch:
        # the papers start from ImageNet weights: say so when a run did not
        note = "; ".join(x for x in (f"{scratch} run(s) trained from scratch (no pretrained "
                                     "backbone)", note) if x)
    released = sum(p.released for p in parts)
    if released:
        note = "; ".join(x for x in (f"released weights ({released} run(s) imported from the "
                                     "official checkpoints)", note) if x)
    if cell.baseline:
        base_mean, base_std = _mean_std(parts[1].values)
        mean -= base_mean
        std = math.hypot(std, base_std) if std is not None and base_std is not None else None
        runs += tuple(f"-{r}" for r in parts[1].runs)
    state = "reproduced" if scale == "full" else "filled-smoke"
    return CellReport(cell, state, ours=mean, std=std, runs=runs, detail=note), jobs


def _with_commands(report: CellReport, jobs: list[RunJob], roots: DataRoots) -> CellReport:
    if not jobs:
        return report
    lines = dict.fromkeys(job.shell_line(roots.root_or_placeholder(job.dataset)) for job in jobs)
    return replace(report, commands=tuple(lines))


def _merge_jobs(jobs: list[RunJob], merged: dict[Path, RunJob]) -> list[RunJob]:
    """One job per run folder, as ``gsbench ablate`` plans them: a second job of the same folder
    adds its evaluations and cells to the first. Returns ``jobs`` replaced by the merged ones."""
    out = []
    for job in jobs:
        first = merged.setdefault(job.run_dir, job)
        if first is not job:
            first.evals.extend(e for e in job.evals if e not in first.evals)
        first.cells.extend(c for c in job.cells if c not in first.cells)
        out.append(first)
    return out


def build_report(table: Table, index: RunIndex, data: str | DataRoots = "DATA",
                 scale: str = "full", *, smoke_dir: Path = RECIPES_DIR) -> TableReport:
    """Every cell of ``table`` with our value (from ``index``'s runs at ``scale``, or computed
    on the spot); a missing cell's command is its run folder's one job, every evaluation
    of the table that folder still needs included."""
    check_scale(scale)
    static = compute_static(table)
    merged: dict[Path, RunJob] = {}
    found = []
    for cell in table.cells:
        report, jobs = _report_cell(cell, index, static, scale, smoke_dir)
        found.append((report, _merge_jobs(jobs, merged)))
    roots = data_roots(data)
    cells = tuple(_with_commands(report, jobs, roots) for report, jobs in found)
    return TableReport(table, cells, static_method=static.method or None, scale=scale)
