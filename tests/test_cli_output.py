"""What the command line prints: help without typer's type labels on flags, and output that goes
to a pipe or a file is not cut at 80 columns."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.recipes import list_recipes, load_recipe


@pytest.mark.parametrize("command", ["train", "eval", "report", "ablate", "quickstart"])
def test_help_shows_no_bool_or_list_type_labels(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "<list[" not in result.output
    assert "--help" in result.output


def test_repeatable_option_shows_its_item_type():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    line = next(line for line in result.output.splitlines() if "--set" in line)
    assert "<str>" in line


def test_piped_zoo_is_not_cut_at_80_columns():
    result = CliRunner().invoke(app, ["zoo"])  # CliRunner's output is not a terminal
    assert result.exit_code == 0
    assert "…" not in result.output
    longest = max(list_recipes(), key=len)
    row = next(line for line in result.output.splitlines() if f" {longest} " in line)
    recipe = load_recipe(longest)
    assert recipe.model.backbone in row and str(recipe.train.iterations) in row
    assert max(len(line) for line in result.output.splitlines()) > 80


def test_columns_still_limits_the_width_when_set():
    result = CliRunner().invoke(app, ["zoo"], env={"COLUMNS": "60"})
    assert max(len(line) for line in result.output.splitlines()) <= 60


def test_profile_module_scope_keeps_the_papers_whole_head_figures_out_of_its_rows():
    args = ["profile", "--module", "ccnet", "--input", "1x64x9x11", "--no-latency"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert rows and not any("18 M" in row or "730 MB" in row for row in rows)
    assert "gives the whole head" in result.output and "--scope head" in result.output
    head = CliRunner().invoke(app, [*args, "--scope", "head"])
    row = next(line for line in head.output.splitlines() if line.startswith("│ parameters"))
    assert "18 M" in row  # beside gsbench's whole-head count


def test_progress_lines_off_a_terminal(monkeypatch):
    import gsbench.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.0)
    result = CliRunner().invoke(app, ["profile", "--recipe", "pspnet101-smoke", "--input",
                                      "1x3x64x64", "--warmup", "0", "--repeat", "2"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("profiling")]
    assert lines[0].startswith("profiling pspnet101-smoke: 1/5, 0:0")
    assert all("elapsed, about" in line and line.endswith("left") for line in lines)
    assert len(lines) == 4  # every step but the last
    quiet = CliRunner().invoke(app, ["profile", "--recipe", "pspnet101-smoke", "--input",
                                     "1x3x64x64", "--no-latency", "--json"])
    assert quiet.output.lstrip().startswith("{")
