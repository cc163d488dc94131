"""The paper-table registry (recipes/tables/*.yaml) and `gsbench report`.

The spot check of every paper value against the papers' text runs when GSBENCH_PAPERS_DIR names
the folder holding the plain-text papers (the file names of gsbench.tables.cells.PAPERS).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import statistics
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.recipes import RECIPES_DIR, load_recipe
from gsbench.tables import (
    RunIndex, build_report, eval_metrics_file, load_all_tables, load_table_file,
    recipe_fingerprint, select_tables,
)
from gsbench.tables.cells import PAPERS
from gsbench.tables.registry import TRAINED_METRICS
from gsbench.tables.render import render_csv, render_latex, render_markdown

EXPECTED_TABLES = {"psanet": 6, "gscnn": 6, "gff": 9, "gpsnet": 4, "ranet": 6}


@pytest.fixture(scope="module")
def tables():
    return load_all_tables()


# --- the registry ---------------------------------------------------------------------------------


def test_every_table_of_the_five_papers_is_registered(tables):
    ids = {t.id for t in tables}
    expected = {f"{paper}.table{n}" for paper, count in EXPECTED_TABLES.items()
                for n in range(1, count + 1)}
    assert ids == expected
    assert all(t.cells for t in tables)


def test_every_recipe_exists_or_is_marked_missing(tables):
    for table in tables:
        for cell in table.cells:
            for name in (cell.recipe, cell.baseline):
                if name is None:
                    continue
                exists = (RECIPES_DIR / f"{name}.yaml").is_file()
                assert exists or cell.status == "missing-recipe", (table.id, cell.row_id, name)
            if cell.kind == "trained":
                assert cell.metric in TRAINED_METRICS
            if cell.reproduced_by_training:
                recipe = load_recipe(cell.recipe, cell.overrides)
                assert recipe.data.dataset == cell.dataset, (table.id, cell.row_id)


def test_unreproducible_cells_say_why(tables):
    for table in tables:
        for cell in table.cells:
            if cell.kind == "trained" and (cell.split == "test" or cell.dataset not in (
                    "cityscapes", "ade20k", "voc2012", "pascal_context", "coco_stuff",
                    "coco_stuff10k")):
                assert not cell.reproducible and cell.reason, (table.id, cell.row_id)


def test_known_values_from_the_papers(tables):
    by_id = {t.id: t for t in tables}
    assert by_id["gpsnet.table4"].cell("aspp", "rf").paper_value == 73
    assert by_id["ranet.table3"].cell("psanet", "gflops").paper_value == 372
    assert by_id["psanet.table1"].cell("resnet101-collect-distribute", "ms_miou").paper_value == 43.77
    assert by_id["gscnn.table5"].cell("resnet-50", "param_delta").paper_value == 0.43
    assert by_id["gff.table3"].cell("gff-dfp", "gflops").paper_value == 625.5
    f3 = by_id["gscnn.table2"].cell("gscnn-3px", "pole")
    assert (f3.paper_value, f3.radius, f3.class_name, f3.metric) == (79.6, 3, "pole", "class_boundary_f")
    coarse_map = by_id["ranet.table4"]  # the coarse row scores RCB's map on every dataset
    assert {(c.row_id, c.output) for c in coarse_map.cells} == {("coarse", "coarse"), ("fine", "out")}
    assert by_id["gff.table9"].cell("gffnet", "miou").dataset == "coco_stuff10k"
    ms = by_id["gff.table2"].cell("gff-dfp-ms", "miou")
    assert (ms.scales, ms.recipe, ms.paper_value) == ("ms", "gff101_dfp", 81.8)


def _number_forms(value: float) -> set[str]:
    forms = {f"{value:.1f}", f"{value:.2f}", f"{value:.3f}", f"{value:g}"}
    if value == int(value):
        forms.add(str(int(value)))
    return forms


#: Tables whose plain-text copy interleaves the values of different rows (PSANet Table 4 prints
#: the three rows of a backbone side by side): their rows are found in order within a short span.
GARBLED_ROWS = {"psanet.table4"}


def _row_pattern(values: list[float], gap: str) -> re.Pattern:
    numbers = ["(?<![\\d.])(?:" + "|".join(re.escape(f) for f in sorted(_number_forms(v), key=len,
                                                                          reverse=True)) + ")(?![\\d])"
               for v in values]
    return re.compile(gap.join(numbers))


@pytest.mark.skipif(not os.environ.get("GSBENCH_PAPERS_DIR"), reason="GSBENCH_PAPERS_DIR not set")
def test_paper_values_appear_row_by_row_near_the_table_caption(tables):
    """Every row's values appear in the paper, in column order, separated by no other number
    (labels, slashes and brackets only), within 4000 characters of the table's caption."""
    papers = Path(os.environ["GSBENCH_PAPERS_DIR"])
    for table in tables:
        text = re.sub(r"\s+", " ", (papers / PAPERS[table.paper][2]).read_text(encoding="utf-8"))
        starts = [m.start() for m in re.finditer(f"Table {table.number}[.:]", text)]
        assert starts, (table.id, "caption not found")
        window = " ".join(text[max(0, s - 4000): s + 4000] for s in starts)
        gap = ".{0,60}?" if table.id in GARBLED_ROWS else "[^\\d]{0,40}?"
        for row_id, _ in table.rows:
            values = [c.paper_value for c in table.cells
                      if c.row_id == row_id and c.paper_value is not None]
            if values:
                assert _row_pattern(values, gap).search(window), (table.id, row_id, values)


# --- validation messages --------------------------------------------------------------------------


GOOD_TABLE = {
    "paper": "gff", "table": 1, "caption": "test", "dataset": "cityscapes", "split": "val",
    "protocol": {"mode": "slide"}, "protocol_source": "GFF: sliding window crop prediction",
    "columns": [{"key": "miou", "label": "mIoU", "metric": "miou"}],
    "rows": [{"method": "GFF", "recipe": "gff101", "miou": 80.4}],
}


def _write_table(folder: Path, table: dict, name: str = "gff_table1.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(table, sort_keys=False), encoding="utf-8")
    return path


def _broken(**changes) -> dict:
    table = json.loads(json.dumps(GOOD_TABLE))
    for dotted, value in changes.items():
        node = table
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return table


@pytest.mark.parametrize("changes, message", [
    ({"captoin": "x"}, "captoin: unknown key (closest valid key: 'caption')"),
    ({"rows__0__recipe": "gff101_nope"}, "rows.gff.miou.recipe: recipe 'gff101_nope' does not exist"),
    ({"columns__0__metric": "mIoU"}, "columns[0].metric: unknown metric 'mIoU' (closest: 'miou')"),
    ({"rows__0__recipy": "gff101"}, "rows.gff.recipy: unknown key (closest valid key: 'recipe')"),
    ({"rows__0__reproducible": False},
     "rows.gff.miou.reason: a cell with reproducible: false needs a reason"),
    ({"rows__0__radius": 0, "columns__0__metric": "boundary_f"},
     "rows.gff.miou.radius: must be a positive integer, got 0"),
    ({"split": "test"}, "cityscapes test cannot be scored by gsbench"),
    ({"rows__0__recipe": "gff101_dfp_ade20k"}, "trains on ade20k, the cell is scored on cityscapes"),
    ({"rows__0__set": ["model.fusoin=add"]}, "unknown key 'model.fusoin'"),
    ({"columns__0__metric": "boundary_f"}, "rows.gff.miou.radius: metric boundary_f needs a radius"),
    ({"rows__0__miou": "80.4"}, "paper value must be a number or null"),
    ({"table": 2}, "must be named gff_table2.yaml"),
    ({"rows__0__init_from": "base"},
     "rows.gff.miou.init_from: names no other row of the table: 'base' (rows: gff)"),
    ({"rows__0__init_from": "gff"}, "rows.gff.miou.init_from: names no other row of the table"),
])
def test_bad_table_files_are_one_line_errors_naming_file_and_key(tmp_path, changes, message):
    path = _write_table(tmp_path, _broken(**changes))
    with pytest.raises(GsbenchError) as info:
        load_table_file(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_init_from_names_a_trained_row_of_the_same_column(tmp_path):
    table = _broken(rows__0__init_from="base")
    table["rows"].append({"method": "PSPNet", "id": "base", "recipe": "gff101_baseline", "miou": 78.6})
    loaded = load_table_file(_write_table(tmp_path, table))
    assert loaded.cell("gff", "miou").init_from == loaded.cell("base", "miou")
    assert loaded.cell("base", "miou").init_from is None
    table["rows"][1] = {"method": "PSPNet", "id": "base", "quoted_from": "PSPNet [45]", "miou": 78.4}
    with pytest.raises(GsbenchError, match=r"rows\.gff\.miou\.init_from: row 'base' has no "
                       "trained cell in column miou"):
        load_table_file(_write_table(tmp_path, table))
    table["rows"][1] = {"method": "PSPNet", "id": "base", "recipe": "gff101_baseline",
                        "init_from": "gff", "miou": 78.6}
    with pytest.raises(GsbenchError, match="row 'base' is itself initialised from a row"):
        load_table_file(_write_table(tmp_path, table))


def test_missing_recipe_status_and_quotes_are_accepted(tmp_path):
    table = _broken(rows__0__recipe="gff101_not_written", rows__0__status="missing-recipe")
    table["rows"].append({"method": "PSPNet", "quoted_from": "PSPNet [45]", "miou": 78.4})
    loaded = load_table_file(_write_table(tmp_path, table))
    assert [c.status for c in loaded.cells] == ["missing-recipe", "ok"]
    assert loaded.cells[1].quoted_from == "PSPNet [45]"


def test_unknown_table_name_suggests_the_closest():
    with pytest.raises(GsbenchError, match="unknown table 'gff.tabel1' \\(closest: gff.table1"):
        select_tables(["gff.tabel1"])
    assert {t.id for t in select_tables(["ranet"])} == {f"ranet.table{n}" for n in range(1, 7)}


# --- the report: static tables ------------------------------------------------------------------


def test_static_table_is_computed_with_the_paper_values_beside(tmp_path):
    (table,) = select_tables(["gpsnet.table4"])
    report = build_report(table, RunIndex(tmp_path / "no-runs"))
    cells = {(c.cell.row_id, c.cell.column): c for c in report.cells}
    aspp_rf = cells[("aspp", "rf")]
    assert aspp_rf.state == "computed" and aspp_rf.ours == 73 and aspp_rf.cell.paper_value == 73
    assert aspp_rf.delta == 0
    assert cells[("supernet", "rf")].ours == 219
    assert cells[("aspp", "sr")].ours == pytest.approx(0.0062, abs=1e-4)
    assert cells[("aspp", "params_m")].ours == pytest.approx(18.874368)  # 4 x 3x3 2048 -> 256
    assert "RF / SR not reproduced" in cells[("tuned-gps", "rf")].detail
    markdown = render_markdown([report])
    assert "| ASPP ({1,12,24,36}) | RF | computed | 73 | 73 | +0 | computed |" in markdown


@pytest.mark.slow
def test_ranet_table3_fills_every_computed_cell_in_the_closest_scopes(tmp_path):
    (table,) = select_tables(["ranet.table3"])
    cells = {(c.cell.row_id, c.cell.column): c
             for c in build_report(table, RunIndex(tmp_path / "no-runs")).cells}
    # RANet: its released region attention on the 2048-channel map, +21 M within 5 %
    params = cells[("ranet", "params_m")]
    assert params.state == "computed" and params.ours == pytest.approx(21.239808)
    assert abs(params.ours - 21) / 21 < 0.05
    for column in ("gflops", "memory_mb"):
        assert cells[("ranet", column)].state == "computed" and cells[("ranet", column)].ours > 0
    assert "36 regions" in cells[("ranet", "gflops")].detail
    # the peers: whole decode heads on the same map (the closest scope, none reproduces them)
    assert cells[("danet", "params_m")].ours == pytest.approx(23.954619)
    assert "whole decode head" in cells[("ccnet", "params_m")].detail


# --- the report: runs ------------------------------------------------------------------------------


def _fake_run(runs: Path, name: str, recipe: str, seed: int, metrics: dict | None,
              overrides: tuple[str, ...] = (), tag: str = "val_ss_slide") -> Path:
    # GFF's tables are scored with sliding windows of the training crop (their test protocol)
    run = runs / name
    run.mkdir(parents=True)
    resolved = load_recipe(recipe, [*overrides, f"seed={seed}", "data.root=/data/elsewhere"])
    (run / "recipe.yaml").write_text(resolved.to_yaml(), encoding="utf-8")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "final.pt").write_bytes(b"")  # a finished run, not one to resume
    if metrics is not None:
        (run / "eval" / tag).mkdir(parents=True)
        (run / "eval" / tag / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


@pytest.fixture()
def runs(tmp_path):
    runs = tmp_path / "runs"
    crops = {"0": 79.0, "100": 75.0, "200": 70.0}
    _fake_run(runs, "gff-a", "gff101", 0, {"miou": 80.0, "crop_miou": crops,
                                            "boundary_f": {"3": 60.0, "5": 66.0}})
    _fake_run(runs, "gff-b", "gff101", 1, {"miou": 81.0})
    _fake_run(runs, "gff-short", "gff101", 0, {"miou": 50.0}, overrides=("train.iterations=10",))
    _fake_run(runs, "baseline", "gff101_baseline", 0, {"miou": 78.0},
              overrides=("pretrained=/weights/resnet101.pth",))
    _fake_run(runs, "concat-noeval", "gff101_concat", 0, None)
    (runs / "gff-a" / "log.csv").write_text("iter,epoch,lr,loss,time\n1,0,0.01,2.5,1.0\n2,0,0.01,2.0,2.0\n")
    return runs


@pytest.fixture()
def table1_runs(runs):
    """``runs`` with the runs of GFF Table 1's fusion rows initialised from the baseline run,
    as the table's cells are trained (``init_from: baseline``)."""
    for name in ("gff-a", "gff-b", "concat-noeval"):
        recipe_file = runs / name / "recipe.yaml"
        raw = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
        raw["train"]["init_from"] = str(runs / "baseline")
        recipe_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return runs


def test_report_joins_runs_with_mean_std_delta_and_commands(table1_runs):
    runs = table1_runs
    (table,) = select_tables(["gff.table1"])
    report = build_report(table, RunIndex(runs), data="/data/cityscapes")
    cells = {c.cell.row_id: c for c in report.cells}
    gff = cells["gff"]
    assert gff.state == "reproduced"
    assert gff.ours == pytest.approx(80.5)  # gff-short trains 10 iterations: another recipe
    assert gff.std == pytest.approx(statistics.stdev([80.0, 81.0]))
    assert gff.delta == pytest.approx(0.1)
    assert gff.runs == (str(runs / "gff-a"), str(runs / "gff-b"))
    assert "2 run(s) trained from scratch" in gff.detail
    assert cells["baseline"].ours == 78.0 and cells["baseline"].std is None
    assert "scratch" not in cells["baseline"].detail
    concat = cells["concat"]
    assert concat.state == "missing-eval"
    assert concat.commands == (f"gsbench eval {runs / 'concat-noeval'} --data /data/cityscapes --split val "
                               "--procedure gsbench --slide",)
    fpn = cells["fpn"]
    assert fpn.state == "missing-run" and fpn.ours is None and fpn.delta is None
    fpn_run = runs / "gff101_fpn+init_from=baseline"  # from the baseline run, which exists
    assert fpn.commands == (
        f"gsbench train --recipe gff101_fpn --set train.init_from={runs / 'baseline'} "
        f"--data /data/cityscapes --out {fpn_run} && "
        f"gsbench eval {fpn_run} --data /data/cityscapes --split val "
                               "--procedure gsbench --slide",)


def test_multi_scale_cells_read_the_ms_evaluation(runs):
    # GFF's MS row averages scales 0.75..1.75, not gsbench's default 0.5..1.75 (folder val_ms)
    (table,) = select_tables(["gff.table2"])
    cell = {c.cell.row_id: c for c in build_report(table, RunIndex(runs)).cells}["gff-dfp-ms"]
    assert cell.state == "missing-run"
    assert cell.commands[0].endswith("--procedure gsbench --slide --scales 0.75,1.0,1.25,1.5,1.75")
    _fake_run(runs, "dfp", "gff101_dfp", 0, {"miou": 81.0}, tag="val_ms_slide")
    cell = {c.cell.row_id: c for c in build_report(table, RunIndex(runs)).cells}["gff-dfp-ms"]
    assert cell.state == "missing-eval" and cell.ours is None
    (runs / "dfp" / "eval" / "val_ms-0.75-1.0-1.25-1.5-1.75_slide").mkdir()
    (runs / "dfp" / "eval" / "val_ms-0.75-1.0-1.25-1.5-1.75_slide" / "metrics.json").write_text(
        json.dumps({"miou": 82.0}), encoding="utf-8")
    cell = {c.cell.row_id: c for c in build_report(table, RunIndex(runs)).cells}["gff-dfp-ms"]
    assert cell.ours == 82.0 and cell.delta == pytest.approx(0.2)
    assert eval_metrics_file(runs / "dfp", EvalSetting("val")) is None


def test_baseline_cells_report_the_difference(tmp_path, runs):
    table = _broken(rows__0__baseline="gff101_baseline")
    loaded = load_table_file(_write_table(tmp_path / "tables", table))
    (cell,) = build_report(loaded, RunIndex(runs)).cells
    assert cell.state == "reproduced" and cell.ours == pytest.approx(80.5 - 78.0)


def test_boundary_and_crop_cells_read_their_radius_and_factor(tmp_path, runs):
    table = _broken(columns=[{"key": "f3", "metric": "boundary_f", "radius": 3},
                             {"key": "f9", "metric": "boundary_f", "radius": 9},
                             {"key": "c100", "metric": "crop_miou", "crop_factor": 100}])
    table["rows"] = [{"method": "GFF", "recipe": "gff101", "f3": 61.0, "f9": 70.0, "c100": 74.0}]
    loaded = load_table_file(_write_table(tmp_path / "tables", table))
    cells = {c.cell.column: c for c in build_report(loaded, RunIndex(runs)).cells}
    assert cells["f3"].ours == 60.0 and cells["c100"].ours == 75.0
    # gff-b was evaluated without boundary F: only gff-a counts, and gff-b is asked to re-evaluate
    assert cells["f3"].runs == (str(runs / "gff-a"),)
    assert cells["f9"].state == "missing-eval" and len(cells["f9"].commands) == 2


def test_fingerprint_ignores_seed_and_paths_but_not_settings():
    a = load_recipe("gff101", ["seed=3", "data.root=/x", "train.num_workers=0"]).to_dict()
    b = load_recipe("gff101").to_dict()
    c = load_recipe("gff101", ["train.lr=0.02"]).to_dict()
    assert recipe_fingerprint(a) == recipe_fingerprint(b) != recipe_fingerprint(c)


def test_initialised_cells_take_initialised_runs_only(runs, table1_runs):
    """GFF Table 1's fusion rows start from the trained PSPNet: a run of the same recipe trained
    from the ImageNet backbone does not fill them, and an initialised run does not fill a cell
    trained without initialisation (GFF Table 2's GFF row)."""
    table1, table2 = select_tables(["gff.table1", "gff.table2"])
    gff = next(c for c in build_report(table1, RunIndex(runs)).cells if c.cell.row_id == "gff")
    assert gff.state == "reproduced" and set(gff.runs) == {str(runs / "gff-a"), str(runs / "gff-b")}
    gff2 = next(c for c in build_report(table2, RunIndex(runs)).cells if c.cell.recipe == "gff101")
    assert str(runs / "gff-a") not in gff2.runs and str(runs / "gff-b") not in gff2.runs
    scratch = _fake_run(runs, "gff-scratch", "gff101", 2, {"miou": 10.0})
    gff = next(c for c in build_report(table1, RunIndex(runs)).cells if c.cell.row_id == "gff")
    assert str(scratch) not in gff.runs and gff.ours == pytest.approx(80.5)
    gff2 = next(c for c in build_report(table2, RunIndex(runs)).cells if c.cell.recipe == "gff101")
    assert gff2.runs == (str(scratch),)


def test_markdown_csv_and_latex_outputs(table1_runs):
    runs = table1_runs
    reports = [build_report(t, RunIndex(runs)) for t in select_tables(["gff.table1", "psanet.table3"])]
    markdown = render_markdown(reports)
    assert "## gff.table1: GFF (AAAI 2020) Table 1" in markdown
    assert "| PSPNet + GFF | mIoU | cityscapes val ss slide | 80.40 | 80.50 ± 0.71 | +0.10 | 2 run(s)" in markdown
    assert "1. `gsbench train --recipe gff101_fpn" not in markdown  # concat (eval only) comes first
    assert "1. `gsbench eval" in markdown
    rows = list(csv.DictReader(io.StringIO(render_csv(reports))))
    gff = next(r for r in rows if r["table"] == "gff.table1" and r["row_id"] == "gff")
    assert float(gff["ours"]) == pytest.approx(80.5) and float(gff["delta"]) == pytest.approx(0.1)
    assert gff["runs_n"] == "2" and gff["state"] == "reproduced"
    psanet = next(r for r in rows if r["table"] == "psanet.table3" and r["row_id"] == "psanet")
    assert psanet["state"] == "not-reproducible" and "evaluation server" in psanet["detail"]
    latex = render_latex(reports)
    assert latex.count(r"\begin{tabular}") == 2 and r"\label{tab:gff-table1}" in latex
    assert r"80.50 $\pm$ 0.71" in latex and r"Large\_Kernel\_Matters" in latex


def test_cli_report_writes_the_format_and_plots(tmp_path, table1_runs):
    runs = table1_runs
    # the plots read whole-image single-scale evaluations (GFF's cells read sliding windows)
    (runs / "gff-a" / "eval" / "val_ss").mkdir()
    (runs / "gff-a" / "eval" / "val_ss" / "metrics.json").write_bytes(
        (runs / "gff-a" / "eval" / "val_ss_slide" / "metrics.json").read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "gff.table1", "--runs", str(runs), "--out", str(out),
                                      "--format", "csv", "--data", "/data/cs"])
    assert result.exit_code == 0, result.output
    assert "PSPNet + GFF" in result.output and "gsbench train --recipe gff101_fpn" in result.output
    rows = list(csv.DictReader((out / "report.csv").open(encoding="utf-8")))
    assert len(rows) == 6
    pytest.importorskip("matplotlib")
    assert (out / "plots" / "crop_miou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "boundary_f.png").is_file()
    assert (out / "plots" / "training_gff-a.png").is_file()


def test_cli_report_unknown_table_and_format_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["report", "gff.table99", "--runs", str(tmp_path)])
    assert result.exit_code == 2 and "unknown table 'gff.table99'" in result.output
    result = CliRunner().invoke(app, ["report", "gff.table1", "--format", "html"])
    assert result.exit_code == 2 and "unknown --format 'html'" in result.output


def test_cli_report_format_without_out_prints_that_format_only(table1_runs):
    runs = table1_runs
    result = CliRunner().invoke(app, ["report", "gff.table1", "--runs", str(runs), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Paper tables")
    assert "| PSPNet + GFF | mIoU | cityscapes val ss slide | 80.40 | 80.50 ± 0.71 | +0.10 |" in result.output
    assert "┏" not in result.output  # no rich table mixed into the Markdown


def test_static_table_rows_need_their_recipes(tmp_path):
    table = _broken(compute="gscnn_table5",
                    columns=[{"key": "p", "metric": "params_increase_pct"}])
    table["table"], table["paper"] = 5, "gscnn"
    table["rows"] = [{"method": "R50", "recipe": "gscnn50", "p": 0.43}]
    loaded = load_table_file(_write_table(tmp_path, table, "gscnn_table5.yaml"))
    with pytest.raises(GsbenchError, match="rows.r50.baseline: gscnn_table5 needs a baseline recipe"):
        build_report(loaded, RunIndex(tmp_path))


def test_every_trainable_cell_has_a_smoke_stand_in(tables):
    """`gsbench ablate --scale smoke` can fill every cell it could train at full scale."""
    from gsbench.tables import cell_training

    for table in tables:
        for cell in table.cells:
            if cell.reproduced_by_training:
                for baseline in (False, True) if cell.baseline else (False,):
                    spec = cell_training(cell, baseline, "smoke")
                    assert spec.recipe.endswith("-smoke"), (table.id, cell.row_id, cell.column)
