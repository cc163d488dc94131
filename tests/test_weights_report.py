"""``gsbench report`` and runs imported from released weights: they fill the cells of the recipe
they were imported for, marked "released weights", and are not counted as trained from scratch."""

from __future__ import annotations

import json

import pytest

from gsbench.recipes import load_recipe
from gsbench.tables import select_tables
from gsbench.tables.report import build_report
from gsbench.tables.runs import RunIndex
from gsbench.weights import get_source
from gsbench.weights.importer import imported_recipe


def _run(root, name, recipe, table_cell, miou, provenance=None):
    """A run folder as import-weights (with ``provenance``) or train leaves it, evaluated."""
    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    if provenance is not None:
        (run / "provenance.json").write_text(json.dumps(provenance), encoding="utf-8")
    folder = table_cell.evaluation.folder(run)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"miou": miou}), encoding="utf-8")
    return run


@pytest.fixture()
def gscnn_cell():
    (table,) = select_tables(["gscnn.table1"])
    cell = next(c for c in table.cells if c.row_id == "gscnn" and c.metric == "miou")
    return table, cell


def test_an_imported_run_fills_its_recipes_cells_marked_released(tmp_path, gscnn_cell):
    table, cell = gscnn_cell
    base = load_recipe(cell.recipe)
    recipe = imported_recipe(base, get_source("gscnn"), "best_cityscapes_checkpoint.pth")
    assert recipe.to_dict() != base.to_dict()  # the official forms
    run = _run(tmp_path, "gscnn-release", recipe, cell, 80.3,
               {"source": "gscnn", "requested_recipe": base.to_dict()})
    index = RunIndex(tmp_path)
    assert [r.path for r in index.all_runs()] == [run]
    report = {(c.cell.row_id, c.cell.metric): c for c in build_report(table, index).cells}
    mine = report["gscnn", "miou"]
    assert mine.state == "reproduced" and mine.ours == pytest.approx(80.3)
    assert mine.runs == (str(run),)
    assert "released weights (1 run(s) imported" in mine.detail
    assert "scratch" not in mine.detail


def test_a_trained_run_is_not_marked_and_a_run_without_provenance_does_not_match(tmp_path,
                                                                                  gscnn_cell):
    table, cell = gscnn_cell
    base = load_recipe(cell.recipe)
    _run(tmp_path, "trained", base, cell, 79.0)
    _run(tmp_path, "official-forms-no-provenance",
         imported_recipe(base, get_source("gscnn"), "x.pth"), cell, 90.0)
    report = {(c.cell.row_id, c.cell.metric): c
              for c in build_report(table, RunIndex(tmp_path)).cells}
    mine = report["gscnn", "miou"]
    assert mine.ours == pytest.approx(79.0)
    assert "released" not in mine.detail and "1 run(s) trained from scratch" in mine.detail


def test_an_unreadable_provenance_record_skips_the_run_with_a_warning(tmp_path, gscnn_cell):
    table, cell = gscnn_cell
    run = _run(tmp_path, "broken", load_recipe(cell.recipe), cell, 79.0)
    (run / "provenance.json").write_text("{not json", encoding="utf-8")
    index = RunIndex(tmp_path)
    assert not index.all_runs()
    assert len(index.warnings) == 1 and "provenance.json: skipped" in index.warnings[0]
