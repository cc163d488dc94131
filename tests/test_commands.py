"""The command lines gsbench writes for itself - the ones `gsbench ablate` runs and prints with
--dry-run, and the ones `gsbench report` suggests for a missing cell - parse with the real CLI
(Typer's parser, nothing is run) to the values they were written from: the recipe and seed the
run trains, its folder and data, and the evaluation setting whose folder the report reads.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
import typer

from gsbench.cli import app
from gsbench.commands import COMMANDS, command_line, this_python, torchrun
from gsbench.evaluation.setting import EvalSetting, protocol_options
from gsbench.protocol import TestProtocol, apply_changes
from gsbench.recipes import load_recipe
from gsbench.tables import (
    RunIndex, build_report, cell_training, plan_ablation, plan_commands, recipe_fingerprint,
    select_tables,
)

CLI = typer.main.get_command(app)


def _parse(words: list[str]) -> tuple[str, dict]:
    """The command and the parameters the real CLI gives it for ``words`` (parsed, not run)."""
    if words[0] == "gsbench":
        args = words[1:]
    else:  # torchrun ... -m gsbench.cli ..., or python -m gsbench.cli ...
        args = words[words.index("gsbench.cli") + 1:]
    name, *rest = args
    return name, CLI.commands[name].make_context(name, list(rest)).params


def _lines(shell_line: str) -> list[list[str]]:
    """The command lines of ``a && b && c``."""
    out: list[list[str]] = [[]]
    for word in shlex.split(shell_line):
        if word == "&&":
            out.append([])
        else:
            out[-1].append(word)
    return out


def _setting(params: dict) -> EvalSetting:
    """The evaluation `gsbench eval TARGET` runs for these parameters on a run of the default
    test protocol, and whose folder it writes."""
    changes = protocol_options(**{key: params[key] for key in (
        "procedure", "slide", "crop", "stride", "base_size", "ms", "scales", "flip",
        "align_corners")})
    return EvalSetting(params["split"], output=params["output"],
                       protocol=apply_changes(TestProtocol(), changes))


def _plain(value):
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else \
        str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_written_option_is_the_clis_and_parses_back(command):
    options = COMMANDS[command]
    params = {p.name: p for p in CLI.commands[command].params}
    for key, flag in options.items():
        assert params[key].opts + params[key].secondary_opts == list(flag.names), key
        assert params[key].default == flag.default and params[key].help == flag.help, key
    samples = {"switch": True, "toggle": False, "repeat": ["a.b=1", "c=two words"],
               "value": "some value"}
    values = {key: samples[flag.form] for key, flag in options.items()}
    target = "a run" if command == "eval" else None
    words = command_line(command, target, **values)
    assert words[:2] == ["gsbench", command]
    name, parsed = _parse(words)
    assert name == command
    for key, value in values.items():
        assert _plain(parsed[key]) == value, key
    if target is not None:
        assert str(parsed["target"]) == target
    for launcher in (torchrun(4), this_python()):
        assert _parse(command_line(command, target, launcher=launcher, **values))[1] == parsed
    with pytest.raises(TypeError, match="no option"):
        command_line(command, nope=1)


def _fake_run(run_dir: Path, recipe, *, finished=True, evals=()):
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    if finished:
        (run_dir / "checkpoints" / "final.pt").write_bytes(b"x")
    for tag in evals:
        (run_dir / "eval" / tag).mkdir(parents=True)
        (run_dir / "eval" / tag / "metrics.json").write_text(json.dumps({"miou": 70.0}))


def _check_job(job, lines: list[list[str]], data: str, device: str | None) -> None:
    """``lines`` (one job's) train / resume the job's run and evaluate what it misses."""
    if job.action is not None:
        name, train = _parse(lines.pop(0))
        assert name == "train" and train["out"] == job.run_dir and train["data"] == Path(data)
        assert train["device"] == (device or "cpu")
        assert train["resume"] == (job.action == "resume")
        if job.action == "train":
            recipe = load_recipe(train["recipe"], train["overrides"])
            assert recipe.seed == job.seed
            assert recipe_fingerprint(recipe.to_dict()) == \
                recipe_fingerprint(job.spec.resolved.to_dict())
        else:
            assert train["recipe"] is None and train["overrides"] == []
    assert len(lines) == len(job.evals)
    for setting, words in zip(job.evals, lines):
        name, evaluation = _parse(words)
        assert name == "eval" and evaluation["target"] == job.run_dir
        assert evaluation["data"] == Path(data) and evaluation["device"] == (device or "cpu")
        assert _setting(evaluation) == setting
        assert _setting(evaluation).folder(job.run_dir) == setting.folder(job.run_dir)


@pytest.mark.parametrize("scale, seeds, device, nproc", [
    ("smoke", 2, "cpu", 1), ("full", 1, "cuda", 8),
])
def test_ablate_commands_parse_to_the_plans_runs_and_evaluations(tmp_path, scale, seeds, device,
                                                                 nproc):
    table = select_tables(["gff.table2"])[0]  # GFF's MS cell: scales 0.75..1.75
    runs = tmp_path / "runs"
    first = plan_ablation(table, runs, scale=scale, seeds=seeds)
    # one run finished without evaluations, one interrupted: eval-only and resume jobs
    for job, finished in zip(first.jobs, (True, False)):
        _fake_run(job.run_dir, dataclasses.replace(job.spec.resolved, seed=job.seed),
                  finished=finished)
    plan = plan_ablation(table, runs, scale=scale, seeds=seeds)
    assert {job.action for job in plan.pending} == {None, "resume", "train"}
    assert any(s.multi_scale for job in plan.pending for s in job.evals)
    lines = plan_commands(plan, "/data/cs x", device=device, nproc=nproc)
    assert len(lines) == len(plan.pending)
    for job, line in zip(plan.pending, lines):
        words = _lines(line)
        if job.action is not None and nproc > 1:
            assert words[0][:2] == list(torchrun(nproc)[:2])
        _check_job(job, list(words), "/data/cs x", None if device == "cpu" else device)
        ran = job.commands("/data/cs x", device, quiet=True, launcher=this_python())
        assert [_parse(w)[1] | {"quiet": False} for w in ran] == [_parse(w)[1] for w in words]


@pytest.mark.parametrize("table_id", ["gff.table2", "gff.table6", "ranet.table4"])
def test_report_commands_parse_to_the_cells_runs_and_evaluations(tmp_path, table_id):
    table = select_tables([table_id])[0]
    runs = tmp_path / "runs"
    report = build_report(table, RunIndex(runs), "/d")
    # a finished run without evaluations: its cells ask for the evaluation only
    cell = next(c.cell for c in report.cells if c.commands)
    spec = cell_training(cell)
    _fake_run(runs / "done", spec.resolved)
    for scale_report in (report, build_report(table, RunIndex(runs), "/d")):
        checked = 0
        for cell_report in scale_report.cells:
            c = cell_report.cell
            for line in cell_report.commands:
                # one run folder's job: train (or not), then every evaluation it still needs
                parsed = [_parse(words) for words in _lines(line)]
                evals = [params for name, params in parsed if name == "eval"]
                assert c.evaluation in [_setting(params) for params in evals]
                assert all(params["data"] == Path("/d") for params in evals)
                assert len({params["target"] for params in evals}) == 1
                if parsed[0][0] == "train":
                    train = parsed[0][1]
                    assert train["out"] == evals[0]["target"]
                    wanted = {recipe_fingerprint(cell_training(c, b).resolved.to_dict())
                              for b in ((False, True) if c.baseline else (False,))}
                    recipe = load_recipe(train["recipe"], train["overrides"])
                    assert recipe_fingerprint(recipe.to_dict()) in wanted
                else:
                    assert len(evals) == len(parsed) and evals[0]["target"] == runs / "done"
                checked += 1
        assert checked
