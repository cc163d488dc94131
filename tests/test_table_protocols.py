"""The papers' test protocols in the table files: every cell scored from runs states its
protocol and its source, `gsbench report` shows it in every format, `gsbench ablate` evaluates
with it."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from gsbench.errors import GsbenchError
from gsbench.evaluation.setting import DEFAULT_MS_SCALES
from gsbench.tables import RunIndex, build_report, load_all_tables, load_table_file, select_tables
from gsbench.tables.ablate import plan_ablation, plan_commands
from gsbench.tables.render import render_csv, render_latex, render_markdown


@pytest.fixture(scope="module")
def tables():
    return {t.id: t for t in load_all_tables()}


def cells_of(table, column=None):
    return [c for c in table.cells if c.kind == "trained" and column in (None, c.column)]


def test_every_cell_scored_from_runs_names_its_protocol_and_source(tables):
    trained = [c for t in tables.values() for c in t.cells if c.kind == "trained"]
    assert len(trained) > 800
    for cell in trained:
        assert cell.protocol is not None and cell.protocol_source.strip(), cell
        assert cell.evaluation.protocol == cell.protocol


def protocols(table, column=None):
    return {(c.protocol.procedure, c.protocol.mode, c.protocol.base_size, c.protocol.scales,
             c.protocol.flip) for c in cells_of(table, column)}


def test_each_paper_table_uses_its_authors_protocol(tables):
    # PSANet: the Caffe release's windows of the training crop, long side base x s + 1, mirror
    assert protocols(tables["psanet.table5"], "ss_miou") == {
        ("psanet-caffe", "slide", (2048,), (1.0,), True)}
    assert protocols(tables["psanet.table5"], "ms_miou") == {
        ("psanet-caffe", "slide", (2048,), DEFAULT_MS_SCALES, True)}
    assert protocols(tables["psanet.table1"], "ss_miou") == {
        ("psanet-caffe", "slide", (512,), (1.0,), True)}
    # Gated-SCNN: the full image, single scale, no flip; its test submission at 0.5 / 1 / 2
    for n in range(1, 6):
        assert protocols(tables[f"gscnn.table{n}"]) == {("gsbench", "whole", None, (1.0,), False)}
    (gscnn,) = [c for c in cells_of(tables["gscnn.table6"], "mean") if c.row_id == "gscnn"]
    assert (gscnn.protocol.mode, gscnn.protocol.scales) == ("whole", (0.5, 1.0, 2.0))
    # GFF: sliding windows; its MS row averages 0.75 .. 1.75
    gff2 = {c.row_id: c.protocol for c in cells_of(tables["gff.table2"])}
    assert gff2["gff-dfp-ms"].scales == (0.75, 1.0, 1.25, 1.5, 1.75)
    assert {p.mode for p in gff2.values()} == {"slide"}
    # GPSNet: the OCNet release's whole-image test; RANet: its release's 769 / 513 windows
    assert protocols(tables["gpsnet.table1"]) == {("toolbox", "whole", None, (1.0,), False)}
    assert protocols(tables["gpsnet.table2"], "miou") == {
        ("toolbox", "whole", None, (0.75, 1.0, 1.25), False)}
    assert protocols(tables["ranet.table1"]) == {("toolbox", "slide", None, (1.0,), False)}
    context = cells_of(tables["ranet.table4"], "pascal_context")
    assert all("not stated" in c.protocol_source for c in context)
    peers = {c.row_id: c.protocol for c in cells_of(tables["ranet.table3"])}
    assert (peers["danet"].procedure, peers["danet"].base_size) == ("mmseg", (2049, 1025))
    assert peers["psanet"].procedure == "psanet-caffe" and peers["ranet"].procedure == "toolbox"


TABLE = {
    "paper": "gff", "table": 1, "caption": "test", "dataset": "cityscapes", "split": "val",
    "protocol": {"procedure": "semseg", "base_size": [2048]},
    "protocol_source": "a test source",
    "columns": [{"key": "ss", "metric": "miou", "protocol": {"crop_size": [705, 705]}},
                {"key": "noflip", "metric": "miou", "flip": False,
                 "protocol_source": "the column's own source"}],
    "rows": [{"method": "GFF", "recipe": "gff101", "ss": 80.4, "noflip": 80.0}],
}


def write(tmp_path, table):
    path = tmp_path / "gff_table1.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False), encoding="utf-8")
    return path


def test_protocol_keys_merge_level_by_level(tmp_path):
    ss, noflip = load_table_file(write(tmp_path, TABLE)).cells
    assert (ss.protocol.procedure, ss.protocol.crop_size, ss.protocol.base_size) == (
        "semseg", (705, 705), (2048,))
    assert ss.flip and ss.protocol.flip  # semseg's default: the release always mirrors
    assert noflip.protocol.crop_size is None and not noflip.flip
    assert (ss.protocol_source, noflip.protocol_source) == ("a test source",
                                                            "the column's own source")
    assert ss.evaluation.tag() == "ss_flip_slide-705_semseg_b2048"
    untagged = {k: v for k, v in TABLE.items() if k not in ("protocol", "protocol_source")}
    untagged["columns"] = [{"key": "ss", "metric": "miou"}, {"key": "noflip", "metric": "miou"}]
    plain = load_table_file(write(tmp_path, untagged)).cells[0]
    assert (plain.protocol.procedure, plain.protocol.mode, plain.protocol_source) == (
        "gsbench", "whole", None)


@pytest.mark.parametrize("change, message", [
    ({"protocol": {"procedur": "semseg"}}, "rows.gff.ss.protocol.procedur: unknown key (closest "
                                           "valid key: 'procedure')"),
    ({"protocol": {"scales": [1.0]}}, "protocol.scales: is the cell's own key"),
    ({"protocol": {"procedure": "caffe"}}, "rows.gff.ss.protocol: procedure 'caffe' is none of"),
    ({"protocol": {"procedure": "semseg", "mode": "whole"}}, "protocol: mode 'whole': procedure "
                                                             "semseg runs slide"),
    ({"protocol": "slide"}, "rows.gff.ss.protocol: must be a mapping of test-protocol keys"),
    ({"protocol_source": ""}, "rows.gff.ss.protocol_source: must be the paper's section"),
])
def test_bad_protocols_are_one_line_errors_naming_file_and_key(tmp_path, change, message):
    path = write(tmp_path, {**TABLE, **change})
    with pytest.raises(GsbenchError) as info:
        load_table_file(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_report_names_the_protocol_in_every_format(tmp_path, tables):
    reports = [build_report(tables["psanet.table5"], RunIndex(tmp_path / "runs"))]
    rows = list(csv.DictReader(io.StringIO(render_csv(reports))))
    ss = next(r for r in rows if r["row_id"] == "res101-col-dis" and r["column"] == "SS mIoU")
    assert ss["protocol"] == ("psanet-caffe, slide, crop = training crop, stride = ceil(2/3 "
                              "crop), base 2048, scales 1.0, flip")
    assert "eval_all.m:31-43" in ss["protocol_source"]
    assert "| cityscapes val ss+flip slide psanet-caffe b2048 |" in render_markdown(reports)
    assert "slide psanet-caffe b2048" in render_latex(reports)


def test_ablate_evaluates_each_cell_with_its_protocol(tmp_path, tables):
    lines = plan_commands(plan_ablation(tables["psanet.table5"], tmp_path, scale="full"), "DATA")
    evals = [part for line in lines for part in line.split(" && ") if " eval " in part]
    assert evals and all("--procedure psanet-caffe --base-size 2048" in e for e in evals)
    assert sum("--ms" in e for e in evals) == sum("--ms" not in e for e in evals)
    # smoke scale: the same procedure on the toy images at their own size
    (table,) = select_tables(["psanet.table5"])
    smoke = plan_commands(plan_ablation(table, tmp_path, scale="smoke"), "DATA")
    assert all("--procedure psanet-caffe" in line and "--base-size" not in line
               for line in smoke)


def test_papers_recipes_record_the_protocol_of_their_tables(tables):
    """`gsbench eval RUN` on a run of these recipes follows the protocol the tables use."""
    from gsbench.tables.cells import cell_recipe

    for table_id, column in (("psanet.table5", "ss_miou"), ("psanet.table1", "ss_miou"),
                             ("gff.table1", "miou"), ("gpsnet.table1", "miou")):
        for cell in cells_of(tables[table_id], column):
            if cell.recipe.startswith(("psanet", "gff", "gpsnet", "ocnet")):
                assert cell_recipe(cell).test == cell.protocol, (table_id, cell.row_id)
