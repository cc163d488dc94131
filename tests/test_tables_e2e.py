"""End to end: `gsbench ablate` of a paper table at smoke scale on synthetic data, then
`gsbench report --scale smoke` prints the table with every trainable cell filled by those runs.

GFF Table 2 (GFF and DFP, single- and multi-scale: 4 cells, 3 recipes) is the smallest table
whose every cell has a smoke stand-in; each cell is checked against the metrics.json that
`gsbench eval` wrote in the run folder the report names.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.synthetic import prepare_synthetic
from gsbench.tables import eval_metrics_file, select_tables

TABLE = "gff.table2"


@pytest.mark.slow
def test_ablate_then_report_fills_every_trainable_cell(tmp_path):
    prepare_synthetic(tmp_path / "raw", n_train=4, n_val=2, size=(64, 128), workers=1,
                      progress=False)
    data, runs = tmp_path / "raw" / "gsbench", tmp_path / "runs"
    runner = CliRunner()
    common = [TABLE, "--scale", "smoke", "--runs", str(runs)]

    # an interrupted run of one cell's recipe (as a killed job leaves it): ablate resumes it
    stopped = runs / "interrupted"
    result = runner.invoke(app, ["train", "--recipe", "gff101-smoke", "--data", str(data),
                                 "--out", str(stopped), "--stop-after", "10", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not (stopped / "checkpoints" / "final.pt").exists()

    result = runner.invoke(app, ["ablate", *common, "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "0 cell(s) done, 3 run(s) to train or evaluate, 0 cell(s) skipped" in _text(result)
    assert f"cpu: resume {stopped}" in _text(result)
    assert (stopped / "checkpoints" / "final.pt").is_file()

    # a second pass finds everything done and starts nothing
    again = runner.invoke(app, ["ablate", *common, "--data", str(data)])
    assert again.exit_code == 0 and "4 cell(s) done, 0 run(s)" in _text(again)

    report = runner.invoke(app, ["report", *common, "--format", "csv"])
    assert report.exit_code == 0, report.output
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    table = select_tables([TABLE])[0]
    assert len(rows) == len(table.cells) == 4
    for cell, row in zip(table.cells, rows):  # the CSV lists the cells in table order
        assert cell.reproduced_by_training and row["row_id"] == cell.row_id
        assert row["state"] == "filled-smoke" and row["scale"] == "smoke", row
        assert row["delta"] == ""  # a toy run is not compared with the paper
        (run,) = row["runs"].split()
        metrics = eval_metrics_file(Path(run), cell.evaluation)
        assert Path(run).parent == runs and metrics is not None
        assert (Path(run) / "checkpoints" / "final.pt").is_file()
        assert float(row["ours"]) == pytest.approx(json.loads(metrics.read_text())["miou"])
        assert row["commands"] == ""

    printed = runner.invoke(app, ["report", *common])
    assert printed.exit_code == 0
    assert "4 cells: 4 filled at smoke scale" in _text(printed)
    assert "reproduced" not in printed.output and "not comparable to the paper" in printed.output


def _text(result) -> str:
    return " ".join(result.output.split())  # rich may wrap long lines

