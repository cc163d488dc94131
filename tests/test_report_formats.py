"""The report says what it shows in every format: the scale and the smoke warning, smoke cells
"filled at smoke scale" (never "reproduced", no difference to the paper), one command per run
folder (as `ablate --dry-run`), no cut words, plots of the table's runs only."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.recipes import load_recipe
from gsbench.tables import RunIndex, build_report, plan_ablation, select_tables
from gsbench.tables.render import (
    latex_escape, matplotlib_available, per_class_iou, render_csv, render_latex, render_markdown,
    source_text, summary_line, table_runs, write_plots,
)
from gsbench.tables.report import SMOKE_NOTE

CLASSES = ("road", "sidewalk", "building")


def fake_run(run_dir: Path, recipe, evals: dict[str, float], log: bool = True) -> Path:
    """A finished run folder with the metrics `gsbench eval` writes (no real weights)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    for name in ("last.pt", "final.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"x")
    for tag, miou in evals.items():
        (run_dir / "eval" / tag).mkdir(parents=True)
        metrics = {"miou": miou, "per_class_iou": {c: miou + i for i, c in enumerate(CLASSES)},
                   "crop_miou": {"0": miou, "100": miou - 5},
                   "boundary_f": {"3": 50.0, "5": 60.0}}
        (run_dir / "eval" / tag / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if log:
        (run_dir / "log.csv").write_text("iter,loss,val_miou\n10,3.0,\n20,2.0,0.25\n",
                                         encoding="utf-8")
    return run_dir


def smoke_runs(runs: Path, table_id: str = "gff.table2") -> Path:
    """Every run `gsbench ablate TABLE --scale smoke` trains, finished and evaluated."""
    plan = plan_ablation(select_tables([table_id])[0], runs, scale="smoke")
    for number, job in enumerate(plan.jobs):
        recipe = load_recipe(job.spec.recipe, job.spec.overrides)
        fake_run(job.run_dir, recipe, {f"{s.split}_{s.tag()}": 60.0 + number for s in job.evals})
    return runs


@pytest.fixture()
def smoke_report(tmp_path):
    runs = smoke_runs(tmp_path / "runs")
    return build_report(select_tables(["gff.table2"])[0], RunIndex(runs), scale="smoke"), runs


def test_smoke_cells_are_filled_at_smoke_scale_never_reproduced(smoke_report):
    report, _ = smoke_report
    assert {cell.state for cell in report.cells} == {"filled-smoke"}
    assert all(cell.ours is not None and cell.delta is None for cell in report.cells)
    assert summary_line(report) == "4 cells: 4 filled at smoke scale"


def test_every_format_carries_the_scale_and_the_warning(smoke_report):
    report, _ = smoke_report
    markdown = render_markdown([report])
    assert SMOKE_NOTE in markdown and "reproduced" not in markdown
    latex = render_latex([report])
    assert SMOKE_NOTE.replace("'", "'") in latex.replace("\\", "")
    assert "reproduced" not in latex and "filled at smoke scale" in latex
    rows = list(csv.DictReader(io.StringIO(render_csv([report]))))
    assert rows and all(r["scale"] == "smoke" and r["state"] == "filled-smoke" and r["delta"] == ""
                        for r in rows)
    full = build_report(select_tables(["gff.table2"])[0], RunIndex(Path("no-runs")))
    assert "Scale: full" in render_markdown([full]) and SMOKE_NOTE not in render_markdown([full])
    assert {r["scale"] for r in csv.DictReader(io.StringIO(render_csv([full])))} == {"full"}


def test_cli_terminal_and_files_carry_the_warning(smoke_report, tmp_path):
    _, runs = smoke_report
    out = tmp_path / "out"
    for fmt in ("md", "latex", "csv"):
        result = CliRunner().invoke(app, ["report", "gff.table2", "--scale", "smoke", "--runs",
                                          str(runs), "--out", str(out), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert SMOKE_NOTE in result.output and "4 filled at smoke scale" in result.output
    assert SMOKE_NOTE in (out / "report.md").read_text(encoding="utf-8")
    assert "smoke" in (out / "report.csv").read_text(encoding="utf-8").splitlines()[1]
    assert "Smoke scale" in (out / "report.tex").read_text(encoding="utf-8")


def test_latex_keeps_whole_words_and_can_wrap_paths(tmp_path, smoke_report):
    runs = tmp_path / "a-rather-long-folder-name-for-the-runs-of-this-table"
    missing = build_report(select_tables(["gff.table2"])[0], RunIndex(runs), data="/d",
                           scale="smoke")
    for report in (missing, smoke_report[0]):
        latex = render_latex([report])
        assert r"p{0.35\linewidth}" in latex
        unbroken = latex.replace(r"\allowbreak{}", "")
        numbers = {command: i for i, command in enumerate(report.commands, 1)}
        texts = [source_text(cell, numbers) for cell in report.cells]
        assert max(map(len, texts)) > 80
        for text in texts:  # the whole note of every cell, nothing cut at 80 characters
            assert latex_escape(text) in unbroken
    assert r"/\allowbreak{}" in latex  # run paths may wrap in the narrow column


def test_commands_are_one_per_run_folder_as_in_ablate_dry_run(tmp_path):
    runs = tmp_path / "runs"
    table = select_tables(["gff.table2"])[0]
    report = build_report(table, RunIndex(runs), data="/d", scale="smoke")
    # GFF+DFP single scale and multi-scale share gff101_dfp-smoke: one train, two evaluations
    trains = [re.search(r"--out (\S+)", c).group(1) for c in report.commands]
    assert len(trains) == len(set(trains)) == 3
    plan = plan_ablation(table, runs, scale="smoke")
    from gsbench.tables import plan_commands

    assert report.commands == plan_commands(plan, "/d")
    dfp = [c for c in report.cells if "DFP" in c.cell.row_label]
    assert len(dfp) == 2 and dfp[0].commands == dfp[1].commands
    assert dfp[0].commands[0].count("gsbench eval") == 2


def test_plots_show_only_the_tables_runs(smoke_report, tmp_path):
    pytest.importorskip("matplotlib")
    report, runs = smoke_report
    other = fake_run(runs / "psanet101-smoke", load_recipe("psanet101-smoke"), {"val_ss": 10.0})
    assert other not in table_runs([report])
    written = write_plots([report], tmp_path / "plots")
    names = {p.name for p in written}
    assert "training_psanet101-smoke.png" not in names
    assert {f"training_{run.name}.png" for run in table_runs([report])} <= names
    assert {"crop_miou.png", "boundary_f.png", "per_class_iou_gff.table2.png"} <= names
    methods = per_class_iou(report)
    assert len(methods) == 4  # the table's four rows
    assert all(list(ious) == list(CLASSES) for ious in methods.values())


def test_report_out_naming_a_file_is_one_line_and_writes_nothing(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("mine", encoding="utf-8")
    for flag in ("--out", "--html"):
        result = CliRunner().invoke(app, ["report", "gff.table2", "--runs", str(tmp_path / "r"),
                                          flag, str(target)])
        assert result.exit_code == 2 and f"{target}: {flag} names a file" in result.output
        assert "Traceback" not in result.output
    assert target.read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_unknown_scale_names_itself():
    result = CliRunner().invoke(app, ["ablate", "gff.table2", "--scale", "huge", "--dry-run"])
    assert result.exit_code == 2 and "unknown scale 'huge'" in result.output


def test_training_plot_shows_val_miou_in_percent(smoke_report, tmp_path):
    pytest.importorskip("matplotlib")
    if not matplotlib_available():
        pytest.skip("matplotlib")
    report, _ = smoke_report
    import matplotlib.pyplot as plt

    captured = {}
    original = plt.Axes.plot

    def spy(self, *args, **kwargs):
        if kwargs.get("label") == "val mIoU":
            captured["y"] = list(args[1])
        return original(self, *args, **kwargs)

    plt.Axes.plot = spy
    try:
        write_plots([report], tmp_path / "plots")
    finally:
        plt.Axes.plot = original
    assert captured["y"] == [25.0]
