"""The registry of the five papers' results tables: one YAML file per table, validated into cells.

Each file ``recipes/tables/<paper>_table<n>.yaml`` holds one table of one paper as data: the
paper's number for every cell, and how gsbench reproduces it - the recipe (plus ``--set``
overrides) to train, the evaluation setting (dataset, split, single / multi-scale and the
multi-scale list, flip, the paper's test protocol and where it is stated, the model output
scored, boundary radius, crop factor, class) and the metric. Settings cascade: the table's
top-level keys are the defaults, a column refines them (its metric, radius, class ...), a row
names the model (recipe) and may refine them again, and ``overrides`` (``ROW`` or
``ROW.COLUMN``) refine single rows or cells. The resolved
:class:`~gsbench.tables.cells.Cell` is what ``gsbench report`` and ``gsbench ablate`` consume.

Layout of a file (every key is checked; an unknown key, a recipe that does not exist, a bad
metric name is a one-line :class:`~gsbench.errors.GsbenchError` naming the file and the key)::

    paper: psanet                  # psanet | gscnn | gff | gpsnet | ranet
    table: 5                       # the paper's table number
    caption: "..."                 # the paper's caption
    dataset: cityscapes            # defaults for every cell ...
    split: val
    scales: ss                     # ss | ms (multi-scale inference)
    flip: false                    # default: the protocol's procedure's
    protocol: {procedure: psanet-caffe, mode: slide, base_size: [2048]}
    protocol_source: "Caffe release evaluation/eval_all.m:31-43"
    # ms_scales: [0.75, 1.0, 1.25, 1.5, 1.75]  # the test scales of ms cells (default 0.5..1.75)
    # output: coarse               # score this model output instead of the prediction "out"
    columns:
      - {key: ss_miou, label: "SS mIoU", metric: miou}
      - {key: ms_miou, label: "MS mIoU", metric: miou, scales: ms}
    rows:
      - {method: Res50-Baseline, recipe: fcn50, ss_miou: 71.93, ms_miou: 72.99}

Rows are a list (each with ``method``, and an optional ``id``; the id defaults to a slug of the
method) or a mapping from row id to a row with ``label``. A row's value keys are the column
keys; ``null`` is a cell the paper leaves empty. ``protocol`` is the paper's test protocol of
the cell (:class:`~gsbench.protocol.TestProtocol` without its scales and flip, which are the
cell's ``scales`` / ``ms_scales`` and ``flip``: ``procedure``, ``mode``, ``crop_size`` (null: the
run's training crop), ``stride``, ``base_size``, ``align_corners``); the mappings of the levels
are merged key by key, so a column may refine the table's; without one a cell is tested with
gsbench's own whole-image protocol. ``protocol_source`` says where the protocol is stated: the
paper's section or the official file, or that neither states it and what gsbench assumes (every
built-in table names one for each cell scored from runs). ``ms_scales`` (only on ``ms`` cells;
default
:data:`~gsbench.evaluation.setting.DEFAULT_MS_SCALES`) and ``output`` (an auxiliary class-logit
map of the model, e.g. RANet's ``coarse``) choose the evaluation folder of a run, see
:mod:`gsbench.evaluation.setting`. Cells that cannot be reproduced say why:
``reproducible: false`` with a ``reason`` (a test server, a dataset gsbench does not prepare),
``quoted_from`` (another paper's number, quoted for comparison; with a ``recipe`` gsbench still
reproduces it), or ``status: missing-recipe`` (the named recipe is not written yet). A ``baseline``
recipe makes a cell a difference: our value is the row recipe's score minus the baseline's (the
papers' "+1.7" columns). ``init_from: ROW`` (a row id) initialises the cell's run from the run of
that row's cell in the same column (``train.init_from``), as GFF Table 1's fusion rows start from
the trained PSPNet: ablate trains that row's run first, of the same seed. Tables with ``compute`` are computed on the spot (parameters, FLOPs,
memory, receptive fields): their columns whose metric is one of that computation's figures need
no training (see :mod:`gsbench.tables.static`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml

from gsbench.data.registry import DATASETS
from gsbench.engine.outputs import MAIN_OUTPUT
from gsbench.errors import GsbenchError
from gsbench.evaluation.setting import DEFAULT_MS_SCALES, SINGLE_SCALE
from gsbench.protocol import PROTOCOL_KEYS, TestProtocol
from gsbench.recipes import RECIPES_DIR, list_recipes
from gsbench.tables.cells import PAPERS, Cell, Column, Table, resolved_recipe, slug, table_id
from gsbench.tables.static import STATIC_TABLES

#: The folder of the table files.
TABLES_DIR = RECIPES_DIR / "tables"

#: Datasets gsbench prepares (``gsbench prepare-data``); cells on any other dataset, or on a
#: split without public ground truth, must be marked ``reproducible: false``.
PREPARED_DATASETS = tuple(DATASETS)
#: Every dataset a table may name; all of them are prepared today.
KNOWN_DATASETS = PREPARED_DATASETS
#: Splits whose ground truth is public (a test split is scored by the benchmark's server).
SCORED_SPLITS = ("train", "val")

#: Metrics read from a run's ``eval/<split>_<tag>/metrics.json`` (:class:`EvalSetting`) and the
#: setting each needs: boundary F needs ``radius`` (px), crop mIoU ``crop_factor``, per-class
#: ones ``class``.
TRAINED_METRICS: dict[str, tuple[str, ...]] = {
    "miou": (),
    "pixel_acc": (),
    "mean_acc": (),
    "iiou": (),
    "boundary_f": ("radius",),
    "crop_miou": ("crop_factor",),
    "class_iou": ("class",),
    "class_boundary_f": ("class", "radius"),
}

STATUSES = ("ok", "missing-recipe")
#: What a cell's ``scales`` may say: single-scale or multi-scale inference (the list of an
#: ``ms`` cell is its ``ms_scales``).
INFERENCE_SCALES = ("ss", "ms")

# Keys that set how a cell is evaluated; allowed at the top level, in columns, rows, overrides.
_EVAL_KEYS = ("dataset", "split", "scales", "ms_scales", "flip", "output", "radius", "crop_factor",
              "class", "protocol", "protocol_source")
# The keys of a ``protocol`` mapping: the test protocol but its scales and flip (the cell's own).
PROTOCOL_TABLE_KEYS = tuple(k for k in PROTOCOL_KEYS if k not in ("scales", "flip"))
# A row or a single cell may score another metric than its column (rows of mIoU and F-score).
_CELL_METRIC_KEYS = ("metric",)
# Keys that say where a cell's number comes from; allowed everywhere except the column list.
_ORIGIN_KEYS = ("reproducible", "reason", "quoted_from", "note")
_MODEL_KEYS = ("recipe", "set", "baseline", "baseline_set", "init_from", "status")

_TOP_KEYS = ("paper", "table", "caption", "compute", "input_shape", "source", "notes", "status", "columns",
             "rows", "overrides", *_EVAL_KEYS, *_ORIGIN_KEYS)
_COLUMN_KEYS = ("key", "label", "metric", "text", *_EVAL_KEYS, *_ORIGIN_KEYS)
_ROW_META_KEYS = ("id", "method", "label", *_CELL_METRIC_KEYS, *_MODEL_KEYS, *_EVAL_KEYS, *_ORIGIN_KEYS)
_OVERRIDE_KEYS = (*_CELL_METRIC_KEYS, *_MODEL_KEYS, *_EVAL_KEYS, *_ORIGIN_KEYS)


# --- loading ------------------------------------------------------------------------------------


def table_files(folder: Path = TABLES_DIR) -> list[Path]:
    """Every table file, in paper then table order."""
    if not folder.is_dir():
        return []

    def order(path: Path):
        match = re.fullmatch(r"(.+)_table(\d+)", path.stem)
        return (match.group(1), int(match.group(2))) if match else (path.stem, 0)

    return sorted(folder.glob("*.yaml"), key=order)


def load_all_tables(folder: Path = TABLES_DIR) -> list[Table]:
    """Every table of the registry, validated."""
    return [load_table_file(path) for path in table_files(folder)]


def select_tables(names: list[str] | tuple[str, ...], folder: Path = TABLES_DIR) -> list[Table]:
    """Tables by id (``gff.table1``), by paper (``gff``: all its tables) or by file path; all
    tables when ``names`` is empty."""
    tables = load_all_tables(folder)
    if not names:
        return tables
    by_id = {t.id: t for t in tables}
    chosen: list[Table] = []
    for name in names:
        if name.endswith((".yaml", ".yml")):
            found = [load_table_file(Path(name))]
        elif name in by_id:
            found = [by_id[name]]
        elif name in PAPERS:
            found = [t for t in tables if t.paper == name]
        else:
            close = difflib.get_close_matches(name, [*by_id, *PAPERS], n=3, cutoff=0.5)
            hint = f" (closest: {', '.join(close)})" if close else \
                f" (tables look like gff.table1; papers: {', '.join(PAPERS)})"
            raise GsbenchError(f"unknown table {name!r}{hint}")
        chosen.extend(t for t in found if t not in chosen)
    return chosen


def load_table_file(path: Path) -> Table:
    """Read and validate one table file into a :class:`Table`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GsbenchError(f"{path}: cannot read the table file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise GsbenchError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise GsbenchError(f"{path}: a table file must be a mapping of keys to values")
    return _TableParser(path, raw).parse()


class _TableParser:
    def __init__(self, path: Path, raw: dict[str, Any]):
        self.path = path
        self.raw = raw

    def fail(self, key: str, message: str) -> GsbenchError:
        return GsbenchError(f"{self.path}: {key}: {message}")

    def reject_unknown(self, mapping: dict, allowed: tuple[str, ...] | list[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
                hint = f" (closest valid key: {close[0]!r})" if close else ""
                raise self.fail(f"{where}{key}", f"unknown key{hint}")

    def parse(self) -> Table:
        raw = self.raw
        self.reject_unknown(raw, _TOP_KEYS, "")
        for key in ("paper", "table", "caption", "columns", "rows"):
            if key not in raw:
                raise self.fail(key, "missing required key")
        paper, number = raw["paper"], raw["table"]
        if paper not in PAPERS:
            raise self.fail("paper", f"unknown paper {paper!r} (use one of {', '.join(PAPERS)})")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise self.fail("table", f"must be a positive integer, got {number!r}")
        if self.path.stem != f"{paper}_table{number}":
            raise self.fail("table", f"the file of {paper} table {number} must be named "
                            f"{paper}_table{number}.yaml")
        compute = raw.get("compute")
        if compute is not None and compute not in STATIC_TABLES:
            raise self.fail("compute", f"unknown computation {compute!r} "
                            f"(known: {', '.join(sorted(STATIC_TABLES))})")
        self.static_metrics = STATIC_TABLES[compute].metrics if compute else ()
        defaults = {k: raw[k] for k in (*_EVAL_KEYS, *_ORIGIN_KEYS, "status") if k in raw}
        columns = self.parse_columns(raw["columns"])
        rows = self.parse_rows(raw["rows"], columns)
        overrides = raw.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise self.fail("overrides", "must be a mapping of ROW or ROW.COLUMN to settings")
        row_ids = {rid for rid, _, _ in rows}
        column_keys = {c.key for c in columns if c.metric is not None}
        for target, settings in overrides.items():
            row_id, _, column = str(target).partition(".")
            if row_id not in row_ids or (column and column not in column_keys):
                raise self.fail(f"overrides.{target}", "names no row (or ROW.COLUMN) of the table")
            if not isinstance(settings, dict):
                raise self.fail(f"overrides.{target}", "must be a mapping of settings")
            self.reject_unknown(settings, _OVERRIDE_KEYS, f"overrides.{target}.")
        tid = table_id(paper, number)
        cells, text, init_rows = [], {}, {}
        for row_id, label, row in rows:
            for column in columns:
                if column.metric is None:
                    if column.key in row:
                        text[(row_id, column.key)] = str(row[column.key])
                    continue
                if column.key not in row:
                    continue  # the paper's row has no such column (e.g. a merged cell)
                levels = (defaults, column.settings,
                          {k: v for k, v in row.items() if k in _OVERRIDE_KEYS},
                          overrides.get(row_id, {}), overrides.get(f"{row_id}.{column.key}", {}))
                merged = {k: v for level in levels for k, v in level.items()}
                where = f"rows.{row_id}.{column.key}"
                merged["protocol"] = self.protocol_keys(levels, where)
                cells.append(self.make_cell(tid, row_id, label, column, row[column.key], merged, where))
                if merged.get("init_from") is not None:
                    init_rows[(row_id, column.key)] = str(merged["init_from"])
        cells = self.link_init_from(cells, init_rows, [rid for rid, _, _ in rows])
        input_shape = raw.get("input_shape")
        return Table(
            paper=paper, number=number, caption=str(raw["caption"]), path=self.path,
            columns=tuple(columns), rows=tuple((rid, label) for rid, label, _ in rows), text=text,
            cells=tuple(cells), compute=compute,
            input_shape=tuple(input_shape) if input_shape is not None else None,
            notes=raw.get("notes"), raw_rows={rid: row for rid, _, row in rows},
        )

    def link_init_from(self, cells: list[Cell], init_rows: dict[tuple[str, str], str],
                       row_ids: list[str]) -> list[Cell]:
        """``cells`` with :attr:`Cell.init_from` set where ``init_rows`` ((row, column) -> row)
        names the row whose cell in the same column initialises it: a trained cell of another
        row, itself not initialised from a row."""
        by_key = {(cell.row_id, cell.column): cell for cell in cells}
        out = []
        for cell in cells:
            row = init_rows.get((cell.row_id, cell.column))
            if row is None:
                out.append(cell)
                continue
            where = f"rows.{cell.row_id}.{cell.column}.init_from"
            if row not in row_ids or row == cell.row_id:
                raise self.fail(where, f"names no other row of the table: {row!r} (rows: "
                                f"{', '.join(row_ids)})")
            source = by_key.get((row, cell.column))
            if cell.kind != "trained" or source is None or source.kind != "trained" \
                    or source.recipe is None:
                raise self.fail(where, f"row {row!r} has no trained cell in column "
                                f"{cell.column} to initialise this trained cell from")
            if (row, cell.column) in init_rows:
                raise self.fail(where, f"row {row!r} is itself initialised from a row")
            out.append(dataclasses.replace(cell, init_from=source))
        return out

    def protocol_keys(self, levels: tuple[dict, ...], where: str) -> dict[str, Any]:
        """The ``protocol`` mappings of a cell's levels (table, column, row, overrides), merged
        key by key."""
        merged: dict[str, Any] = {}
        for level in levels:
            part = level.get("protocol")
            if part is None:
                continue
            if not isinstance(part, dict):
                raise self.fail(f"{where}.protocol", "must be a mapping of test-protocol keys ("
                                + ", ".join(PROTOCOL_TABLE_KEYS) + ")")
            for key in part:
                if key in ("scales", "flip"):
                    raise self.fail(f"{where}.protocol.{key}", f"is the cell's own key: write "
                                    f"{'scales / ms_scales' if key == 'scales' else 'flip'} "
                                    "beside protocol")
            self.reject_unknown(part, PROTOCOL_TABLE_KEYS, f"{where}.protocol.")
            merged.update(part)
        return merged

    def test_protocol(self, keys: dict[str, Any], scales: str,
                      ms_scales: tuple[float, ...] | None, flip: bool | None,
                      where: str) -> TestProtocol:
        """The cell's :class:`TestProtocol`: its ``protocol`` keys, its scales and flip."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in keys.items()}
        try:
            return TestProtocol(**values, scales=ms_scales if scales == "ms" else SINGLE_SCALE,
                                flip=flip)
        except GsbenchError as exc:  # "test.<key> ...": name the table's key instead
            message = str(exc)
            if message.startswith("test."):
                message = message[len("test."):]
            raise self.fail(f"{where}.protocol", message) from None

    def parse_columns(self, raw_columns: Any) -> list[Column]:
        if not isinstance(raw_columns, list) or not raw_columns:
            raise self.fail("columns", "must be a non-empty list of columns")
        columns, seen = [], set()
        for i, col in enumerate(raw_columns):
            where = f"columns[{i}]."
            if not isinstance(col, dict) or "key" not in col:
                raise self.fail(f"columns[{i}]", "must be a mapping with a 'key'")
            self.reject_unknown(col, _COLUMN_KEYS, where)
            key = str(col["key"])
            if key in seen or key in _ROW_META_KEYS:
                raise self.fail(f"{where}key", f"column key {key!r} is used twice or reserved")
            seen.add(key)
            if col.get("text"):
                columns.append(Column(key, str(col.get("label", key)), None))
                continue
            metric = col.get("metric")
            if metric not in TRAINED_METRICS and metric not in self.static_metrics:
                known = [*TRAINED_METRICS, *self.static_metrics]
                close = difflib.get_close_matches(str(metric), known, n=1, cutoff=0.5)
                hint = f" (closest: {close[0]!r})" if close else f" (known: {', '.join(known)})"
                raise self.fail(f"{where}metric", f"unknown metric {metric!r}{hint}")
            settings = {k: v for k, v in col.items() if k in (*_EVAL_KEYS, *_ORIGIN_KEYS)}
            columns.append(Column(key, str(col.get("label", key)), metric, settings))
        return columns

    def parse_rows(self, raw_rows: Any, columns: list[Column]) -> list[tuple[str, str, dict]]:
        if isinstance(raw_rows, dict):
            items = []
            for rid, row in raw_rows.items():
                if not isinstance(row, dict) or "label" not in row:
                    raise self.fail(f"rows.{rid}", "must be a mapping with a 'label'")
                items.append((str(rid), str(row["label"]), row))
        elif isinstance(raw_rows, list) and raw_rows:
            items = []
            for i, row in enumerate(raw_rows):
                if not isinstance(row, dict) or "method" not in row:
                    raise self.fail(f"rows[{i}]", "must be a mapping with a 'method'")
                items.append((str(row.get("id") or slug(str(row["method"]))), str(row["method"]), row))
        else:
            raise self.fail("rows", "must be a non-empty list of rows (or a mapping id -> row)")
        allowed = (*_ROW_META_KEYS, *(c.key for c in columns))
        seen = set()
        for rid, _, row in items:
            if rid in seen:
                raise self.fail(f"rows.{rid}", "row id used twice (give the row an 'id')")
            seen.add(rid)
            self.reject_unknown(row, allowed, f"rows.{rid}.")
        return items

    def make_cell(self, tid: str, row_id: str, label: str, column: Column, value: Any,
                  s: dict[str, Any], where: str) -> Cell:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise self.fail(where, f"paper value must be a number or null, got {value!r}")
        metric = s.get("metric", column.metric)
        if metric not in TRAINED_METRICS and metric not in self.static_metrics:
            known = [*TRAINED_METRICS, *self.static_metrics]
            close = difflib.get_close_matches(str(metric), known, n=1, cutoff=0.5)
            hint = f" (closest: {close[0]!r})" if close else f" (known: {', '.join(known)})"
            raise self.fail(f"{where}.metric", f"unknown metric {metric!r}{hint}")
        kind = "static" if metric in self.static_metrics else "trained"
        scales = s.get("scales", "ss")
        if scales not in INFERENCE_SCALES:
            raise self.fail(f"{where}.scales", f"must be ss or ms, got {scales!r}")
        for key in ("flip", "reproducible"):
            if key in s and not isinstance(s[key], bool):
                raise self.fail(f"{where}.{key}", f"must be true or false, got {s[key]!r}")
        ms_scales = self.ms_scales(s.get("ms_scales"), scales, f"{where}.ms_scales")
        output = s.get("output", MAIN_OUTPUT)
        if not isinstance(output, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", output):
            raise self.fail(f"{where}.output", f"must be the name of a model output (out, coarse "
                            f"...), got {output!r}")
        dataset = s.get("dataset")
        if kind == "trained" and dataset not in KNOWN_DATASETS:
            raise self.fail(f"{where}.dataset", f"unknown dataset {dataset!r} "
                            f"(use one of {', '.join(KNOWN_DATASETS)})")
        split = str(s.get("split", "val"))
        for needed in TRAINED_METRICS.get(metric, ()):
            if s.get(needed) is None:
                raise self.fail(f"{where}.{needed}", f"metric {metric} needs a {needed}")
        for key, minimum, kind_ in (("radius", 1, "positive"), ("crop_factor", 0, "non-negative")):
            given = s.get(key)
            if given is not None and (isinstance(given, bool) or not isinstance(given, int)
                                      or given < minimum):
                raise self.fail(f"{where}.{key}", f"must be a {kind_} integer, got {given!r}")
        class_name = s.get("class")
        if class_name is not None and dataset == "cityscapes":
            from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES

            if class_name not in CITYSCAPES_CLASS_NAMES:
                close = difflib.get_close_matches(str(class_name), CITYSCAPES_CLASS_NAMES, n=1)
                hint = f" (closest: {close[0]!r})" if close else ""
                raise self.fail(f"{where}.class", f"unknown Cityscapes class {class_name!r}{hint}")
        reproducible = s.get("reproducible", True)
        if not reproducible and not s.get("reason"):
            raise self.fail(f"{where}.reason", "a cell with reproducible: false needs a reason")
        protocol, protocol_source = None, s.get("protocol_source")
        if kind == "trained":
            protocol = self.test_protocol(s.get("protocol") or {}, scales, ms_scales,
                                          s.get("flip"), where)
            if protocol_source is not None and (not isinstance(protocol_source, str)
                                                or not protocol_source.strip()):
                raise self.fail(f"{where}.protocol_source", "must be the paper's section or the "
                                "official file that states the test protocol (a non-empty "
                                f"string), got {protocol_source!r}")
        status = s.get("status", "ok")
        if status not in STATUSES:
            raise self.fail(f"{where}.status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
        recipe, sets = s.get("recipe"), self.overrides(s.get("set"), f"{where}.set")
        baseline, baseline_sets = s.get("baseline"), self.overrides(s.get("baseline_set"),
                                                                    f"{where}.baseline_set")
        if kind == "trained" and reproducible:
            if dataset not in PREPARED_DATASETS or split not in SCORED_SPLITS:
                raise self.fail(f"{where}.reproducible",
                                f"{dataset} {split} cannot be scored by gsbench: mark the cell "
                                "reproducible: false with a reason")
            if recipe is None and not s.get("quoted_from"):
                raise self.fail(f"{where}.recipe", "a reproducible cell needs a recipe "
                                "(or quoted_from for another paper's number)")
        for name, name_sets, key in ((recipe, sets, "recipe"), (baseline, baseline_sets, "baseline")):
            if name is None:
                continue
            if not isinstance(name, str):
                raise self.fail(f"{where}.{key}", f"must be a recipe name, got {name!r}")
            exists = (RECIPES_DIR / f"{name}.yaml").is_file()
            if not exists and status != "missing-recipe":
                close = difflib.get_close_matches(name, list_recipes(), n=2, cutoff=0.6)
                hint = f" (closest: {', '.join(close)})" if close else ""
                raise self.fail(f"{where}.{key}", f"recipe {name!r} does not exist{hint}; write it "
                                "or mark the cell status: missing-recipe")
            if exists:
                recipe_dataset = resolved_recipe(name, name_sets, f"{self.path}: {where}.{key}").data.dataset
                if kind == "trained" and recipe_dataset != dataset:
                    raise self.fail(f"{where}.{key}", f"recipe {name!r} trains on {recipe_dataset}, "
                                    f"the cell is scored on {dataset}")
        if status == "missing-recipe" and recipe is not None and \
                (RECIPES_DIR / f"{recipe}.yaml").is_file() and \
                (baseline is None or (RECIPES_DIR / f"{baseline}.yaml").is_file()):
            status = "ok"  # the recipe has landed since the table was written
        return Cell(
            table_id=tid, row_id=row_id, row_label=label, column=column.key,
            column_label=column.label, paper_value=None if value is None else float(value),
            metric=metric, kind=kind, dataset=dataset, split=split, scales=scales,
            flip=bool(protocol.flip if protocol is not None else s.get("flip", False)),
            radius=s.get("radius"), crop_factor=s.get("crop_factor"),
            class_name=class_name, ms_scales=ms_scales, output=output, recipe=recipe,
            overrides=sets, baseline=baseline, baseline_overrides=baseline_sets, status=status, reproducible=reproducible,
            reason=s.get("reason"), quoted_from=s.get("quoted_from"), note=s.get("note"),
            protocol=protocol, protocol_source=protocol_source if kind == "trained" else None,
        )

    def ms_scales(self, value: Any, scales: str, where: str) -> tuple[float, ...] | None:
        """The test scales of a cell: None for ss, the given list or the default for ms."""
        if value is None:
            return DEFAULT_MS_SCALES if scales == "ms" else None
        if scales != "ms":
            raise self.fail(where, "is for multi-scale cells: the cell has scales: ss")
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or v <= 0 for v in value):
            raise self.fail(where, f"must be a non-empty list of scales > 0, got {value!r}")
        if tuple(float(v) for v in value) == SINGLE_SCALE:
            raise self.fail(where, "[1.0] is single-scale inference: use scales: ss")
        return tuple(float(v) for v in value)

    def overrides(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or any(not isinstance(v, str) or "=" not in v for v in value):
            raise self.fail(where, "must be a list of key=value recipe overrides")
        return tuple(value)
