"""The five papers' results tables beside our runs: ``gsbench report`` and ``gsbench ablate``.

This module only gathers the names callers use; each lives in one module, from the table files
up (each imports only those above it in this list):

- :mod:`~gsbench.tables.cells`: a loaded table - :class:`Table`, its :class:`Cell` s (the
  paper's number and the recipe, evaluation and metric that reproduce it), :data:`PAPERS`;
- :mod:`~gsbench.tables.static`: the tables computed on the spot (parameters, FLOPs, memory,
  receptive fields);
- :mod:`~gsbench.tables.registry`: the table files ``recipes/tables/*.yaml``, read and
  validated into tables;
- :mod:`~gsbench.tables.runs`: the run folders under ``runs/``, by the recipe they trained;
- :mod:`~gsbench.tables.smoke`: what trains a cell at each scale (its recipe, or the toy
  ``-smoke`` stand-in);
- :mod:`~gsbench.tables.jobs`: one run folder's ``gsbench train`` / ``gsbench eval`` command
  lines (:mod:`gsbench.commands` writes them) and the prepared data they are given;
- :mod:`~gsbench.tables.ablate`: the plan of the missing runs of a table, and running it;
- :mod:`~gsbench.tables.report`: each cell's number of ours, or the command that fills it;
- :mod:`~gsbench.tables.render` and :mod:`~gsbench.tables.html`: the report as a terminal
  table, Markdown, CSV, LaTeX, plots and one HTML page (import them from there).
"""

from __future__ import annotations

from gsbench.tables.ablate import (
    AblationPlan, JobResult, parse_devices, plan_ablation, plan_commands, run_plan,
)
from gsbench.tables.cells import PAPERS, Cell, Column, Table
from gsbench.tables.jobs import DataRoots, RunJob, placeholder_root
from gsbench.tables.registry import load_all_tables, load_table_file, select_tables
from gsbench.tables.report import (
    CELL_STATES, SMOKE_NOTE, CellReport, TableReport, build_report, metric_value,
    report_cell,
)
from gsbench.tables.runs import (
    RUN_MATCH_IGNORED, RunIndex, RunInfo, eval_metrics_file, recipe_fingerprint, run_name,
)
from gsbench.tables.smoke import (
    RUN_SCALES, SMOKE_SUFFIX, TrainingSpec, cell_training, smoke_families, smoke_training,
)

__all__ = [
    "CELL_STATES", "PAPERS", "RUN_MATCH_IGNORED", "RUN_SCALES", "SMOKE_NOTE", "SMOKE_SUFFIX",
    "AblationPlan", "Cell", "CellReport", "Column", "DataRoots", "JobResult", "RunIndex",
    "RunInfo", "RunJob", "Table", "TableReport", "TrainingSpec", "build_report", "cell_training",
    "eval_metrics_file", "load_all_tables", "load_table_file", "metric_value", "parse_devices",
    "placeholder_root", "plan_ablation", "plan_commands", "recipe_fingerprint", "report_cell",
    "run_name", "run_plan", "select_tables", "smoke_families", "smoke_training",
]
