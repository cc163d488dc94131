"""`gsbench ablate`: the smoke mapping, the plan (train / resume / eval only / done), seeds,
dry-run commands, the device queue, and `gsbench report --scale smoke` finding the same runs.

No model is trained here: run folders are written by hand (recipe.yaml, checkpoints, metrics);
tests/test_tables_e2e.py trains for real.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.protocol import TestProtocol
from gsbench.recipes import RECIPES_DIR, load_recipe
from gsbench.tables import (
    SMOKE_SUFFIX, RunIndex, build_report, cell_training, select_tables, smoke_families,
    smoke_training,
)
from gsbench.tables import ablate as ablate_module
from gsbench.tables.ablate import parse_devices, plan_ablation, plan_commands, run_plan


def _flat(mapping, prefix=""):
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


IGNORED = {"name", "description", "seed", "pretrained", "data.root", "train.num_workers",
           "train.log_every", "train.checkpoint_every", "train.val_every", "train.channels_last"}


# --- the smoke mapping ----------------------------------------------------------------------------


def test_smoke_families_prefer_the_name_then_its_prefixes_then_the_same_model():
    assert smoke_families("gff101_dfp")[:2] == ["gff101_dfp", "gff101"]
    assert smoke_families("gscnn101_nocanny")[0] == "gscnn101"
    # the GFF baseline is a PSPNet: gff101-smoke cannot unset the GFF keys, pspnet101-smoke can
    assert smoke_families("gff101_baseline")[:2] == ["gff101", "pspnet101"]
    assert smoke_training("gff101_baseline").recipe == "pspnet101-smoke"


@pytest.mark.parametrize("name, overrides", [
    ("gscnn101_nocanny", ()), ("gff101_denseaspp_dfp", ()), ("gff101", ("model.backbone=resnet18",)),
    ("gff101_baseline", ()), ("psanet101_ade20k", ()), ("gscnn_wrn38", ("train.iterations=18594",)),
])
def test_smoke_recipe_keeps_the_variant_and_takes_the_toy_size(name, overrides):
    spec = smoke_training(name, overrides)
    family = spec.recipe.removesuffix("-smoke")
    full, smoke = _flat(load_recipe(family).to_dict()), _flat(load_recipe(spec.recipe).to_dict())
    toy = {k for k in full.keys() | smoke.keys() if full.get(k) != smoke.get(k)}
    assert toy, "a smoke recipe differs from its full recipe"
    wanted = _flat(load_recipe(name, overrides).to_dict())
    got = _flat(spec.resolved.to_dict())
    for key in wanted.keys() | got.keys():
        if key in IGNORED:
            continue
        expected = smoke.get(key) if key in toy else wanted.get(key)
        assert got.get(key) == expected, (name, key)
    # the overrides are what `gsbench train --set` receives: loading them gives the same recipe
    assert load_recipe(spec.recipe, spec.overrides).to_dict() == spec.resolved.to_dict()
    assert spec.folder.startswith(name + "-smoke")


def test_smoke_overrides_of_toy_keys_are_superseded():
    plain, resnet18 = smoke_training("gff101"), smoke_training("gff101", ("model.backbone=resnet18",))
    assert resnet18.resolved.to_dict() == plain.resolved.to_dict()
    assert resnet18.resolved.model.backbone == load_recipe("gff101-smoke").model.backbone
    assert resnet18.folder == "gff101-smoke"


@pytest.fixture()
def no_baseline_smoke(tmp_path):
    """A folder of the smoke recipes without the Gated-SCNN baselines' own: the other Gated-SCNN
    smoke recipes have loss_options, which a --set cannot remove, so nothing can stand in for the
    baselines."""
    folder = tmp_path / "smoke-recipes"
    folder.mkdir()
    for path in RECIPES_DIR.glob(f"*{SMOKE_SUFFIX}.yaml"):
        if "_baseline" not in path.name:
            shutil.copy(path, folder)
    return folder


def test_smoke_mapping_refuses_what_it_cannot_express(no_baseline_smoke):
    with pytest.raises(GsbenchError, match="no smoke variant expresses gscnn101_baseline.*loss_options"):
        smoke_training("gscnn101_baseline", smoke_dir=no_baseline_smoke)
    with pytest.raises(GsbenchError, match="unknown scale"):
        cell_training(select_tables(["gff.table2"])[0].cells[0], scale="tiny")


# --- run folders written by hand ------------------------------------------------------------------


def _fake_run(run_dir: Path, recipe, *, finished=True, interrupted=False, evals=()):
    """A run folder as `gsbench train` / `gsbench eval` leave it (without real weights)."""
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    (run_dir / "checkpoints").mkdir()
    if finished or interrupted:
        (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    if finished:
        (run_dir / "checkpoints" / "final.pt").write_bytes(b"x")
    for tag, miou in evals:
        folder = run_dir / "eval" / tag
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"miou": miou}), encoding="utf-8")


@pytest.fixture(scope="module")
def table2():
    # GFF Table 2: gff101 (ss), gff101_dfp (ss, ms), gff101_baseline (ss)
    return select_tables(["gff.table2"])[0]


def _spec(table, row, column, scale="smoke", baseline=False):
    return cell_training(table.cell(row, column), baseline, scale)


def _rows(table):
    by_recipe = {}
    for cell in table.cells:
        by_recipe.setdefault(cell.recipe, []).append(cell)
    return by_recipe


def test_plan_from_nothing_trains_each_recipe_once_with_its_evaluations(tmp_path, table2):
    plan = plan_ablation(table2, tmp_path / "runs", scale="smoke")
    assert plan.done == [] and plan.skipped == []
    recipes = {c.recipe for c in table2.cells if c.reproduced_by_training}
    assert len(plan.jobs) == len(recipes)
    for job in plan.jobs:
        assert job.action == "train"
        wanted = {c.evaluation for c in table2.cells if f"{c.row_id}.{c.column}" in job.cells}
        assert set(job.evals) == wanted and len(job.evals) == len(wanted)
        assert job.run_dir.parent == tmp_path / "runs"
    assert sorted(c for job in plan.jobs for c in job.cells) == \
        sorted(f"{c.row_id}.{c.column}" for c in table2.cells if c.reproduced_by_training)


def test_plan_skips_done_resumes_interrupted_and_evaluates_unevaluated(tmp_path, table2):
    runs = tmp_path / "runs"
    by_recipe = _rows(table2)
    done_cell, dfp_cells, base_cell = by_recipe["gff101"][0], by_recipe["gff101_dfp"], by_recipe["gff101_baseline"][0]
    _fake_run(runs / "a", _spec(table2, done_cell.row_id, done_cell.column).resolved,
              evals=[("val_ss_slide", 70.0)])  # GFF's protocol: windows of the training crop
    ss = next(c for c in dfp_cells if c.scales == "ss")
    ms = next(c for c in dfp_cells if c.scales == "ms")
    # a default-list MS evaluation does not fill GFF's MS cell (scales 0.75..1.75)
    _fake_run(runs / "b", _spec(table2, ss.row_id, ss.column).resolved,
              evals=[("val_ss_slide", 71.0), ("val_ms_slide", 72.0)])
    _fake_run(runs / "nested" / "c", _spec(table2, base_cell.row_id, base_cell.column).resolved,
              finished=False, interrupted=True)
    plan = plan_ablation(table2, runs, scale="smoke")
    jobs = {job.run_dir.relative_to(runs).as_posix(): job for job in plan.jobs}
    assert set(jobs) == {"a", "b", "nested/c"}
    assert not jobs["a"].pending and jobs["a"].evals == []
    assert jobs["b"].action is None and jobs["b"].evals == [ms.evaluation]
    assert ms.evaluation == EvalSetting("val", (0.75, 1.0, 1.25, 1.5, 1.75),
                                        protocol=TestProtocol(mode="slide"))
    assert jobs["nested/c"].action == "resume" and jobs["nested/c"].evals == [
        EvalSetting("val", protocol=TestProtocol(mode="slide"))]
    assert plan.done == [f"{done_cell.row_id}.{done_cell.column}", f"{ss.row_id}.{ss.column}"]
    lines = plan_commands(plan, "DATA")
    assert sorted(lines) == [
        f"gsbench eval {runs / 'b'} --data DATA --split val --procedure gsbench --slide "
        "--scales 0.75,1.0,1.25,1.5,1.75",
        f"gsbench train --resume --data DATA --out {runs / 'nested' / 'c'} && "
        f"gsbench eval {runs / 'nested' / 'c'} --data DATA --split val --procedure gsbench "
        "--slide"]
    # the full scale does not see smoke runs
    assert all(job.action == "train" for job in plan_ablation(table2, runs, scale="full").jobs)


def test_plan_resumes_a_run_without_checkpoints_and_refuses_an_occupied_folder(tmp_path, table2):
    runs = tmp_path / "runs"
    cell = _rows(table2)["gff101"][0]
    spec = _spec(table2, cell.row_id, cell.column)
    _fake_run(runs / "stopped", spec.resolved, finished=False)  # before its first checkpoint
    (runs / _spec(table2, *_first(table2, "gff101_dfp")).folder).mkdir(parents=True)
    (runs / _spec(table2, *_first(table2, "gff101_dfp")).folder / "notes.txt").write_text("mine")
    plan = plan_ablation(table2, runs, scale="smoke")
    assert [job.action for job in plan.jobs if job.run_dir == runs / "stopped"] == ["resume"]
    reasons = dict(plan.skipped)
    assert any("folder exists but holds no run" in why for why in reasons.values())


def _first(table, recipe):
    cell = _rows(table)[recipe][0]
    return cell.row_id, cell.column


def test_seeds_get_their_own_folders_and_seed_overrides(tmp_path, table2):
    plan = plan_ablation(table2, tmp_path, scale="smoke", seeds=3)
    recipes = {c.recipe for c in table2.cells if c.reproduced_by_training}
    assert len(plan.jobs) == 3 * len(recipes)
    job = next(j for j in plan.jobs if j.seed == 2)
    assert job.run_dir.name.endswith("+seed=2")
    train = job.commands("D")[0]
    assert train[train.index("seed=2") - 1] == "--set"
    assert load_recipe(job.spec.recipe, [*job.spec.overrides, "seed=2"]).seed == 2
    with pytest.raises(GsbenchError, match="--seeds"):
        plan_ablation(table2, tmp_path, seeds=0)


def test_row_filter(tmp_path, table2):
    row = _first(table2, "gff101_dfp")[0]
    plan = plan_ablation(table2, tmp_path, scale="smoke", rows=[row])
    assert {c.split(".")[0] for job in plan.jobs for c in job.cells} == {row}
    with pytest.raises(GsbenchError, match="no row 'nope'"):
        plan_ablation(table2, tmp_path, rows=["nope"])


def test_smoke_recipes_of_another_folder_are_trained_from_their_files(tmp_path):
    folder = tmp_path / "smoke-recipes"
    folder.mkdir()
    shutil.copy(RECIPES_DIR / "gff101-smoke.yaml", folder)
    spec = smoke_training("gff101", smoke_dir=folder)
    assert spec.recipe == str(folder / "gff101-smoke.yaml")
    builtin = smoke_training("gff101")
    assert (spec.overrides, spec.folder) == (builtin.overrides, builtin.folder)
    assert spec.resolved.to_dict() == builtin.resolved.to_dict()
    assert smoke_families("gff101_dfp", folder) == ["gff101"]  # gff101_dfp-smoke is not there


def test_unexpressible_smoke_cells_are_skipped_with_the_reason(tmp_path, no_baseline_smoke):
    table = select_tables(["gscnn.table4"])[0]
    plan = plan_ablation(table, tmp_path, scale="smoke", smoke_dir=no_baseline_smoke)
    assert plan.skipped and all("gscnn101_baseline" in why for _, why in plan.skipped)
    assert plan.jobs  # the other rows still train


def test_full_scale_dry_run_prints_torchrun_lines(tmp_path, table2):
    plan = plan_ablation(table2, tmp_path / "r", scale="full")
    lines = plan_commands(plan, "/data/cs", device="cuda", nproc=8)
    assert len(lines) == len(plan.jobs)
    for line in lines:
        train, *evals = line.split(" && ")
        assert train.startswith("torchrun --nproc_per_node=8 -m gsbench.cli train --recipe gff101")
        assert train.endswith("--device cuda") and "--data /data/cs --out " in train
        assert evals and all(e.startswith("gsbench eval ") and e.endswith("--device cuda") for e in evals)
        shlex.split(line)  # a valid shell line


def test_parse_devices():
    assert parse_devices("cpu") == ["cpu"]
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    for bad in ("gpu", "cuda:0,cuda:0", "cuda:x", "cpu,cuda:0", ""):
        with pytest.raises(GsbenchError, match="--devices"):
            parse_devices(bad)


def test_run_plan_spreads_jobs_over_devices_one_process_each(tmp_path, table2, monkeypatch):
    calls = []

    class Done:
        returncode, stdout = 0, "ok"

    def fake_run(argv, env, **kwargs):
        calls.append((env.get("CUDA_VISIBLE_DEVICES"), argv))
        return Done()

    monkeypatch.setattr(ablate_module.subprocess, "run", fake_run)
    plan = plan_ablation(table2, tmp_path / "runs", scale="full", seeds=2)
    results = run_plan(plan, "D", ["cuda:0", "cuda:1"])
    assert sorted(str(r.job.run_dir) for r in results) == sorted(str(j.run_dir) for j in plan.jobs)
    assert {env for env, _ in calls} <= {"0", "1"}
    for _, argv in calls:
        assert argv[1:3] == ["-m", "gsbench.cli"] and argv[-3:] == ["--device", "cuda", "--quiet"]
    # every job's commands ran on one device, in order: train first
    for result in results:
        assert (tmp_path / "runs" / "ablate-logs" / f"{result.job.run_dir.name}.log").is_file()
        mine = [argv for env, argv in calls if str(result.job.run_dir) in argv]
        assert mine[0][3] == "train" and all(a[3] == "eval" for a in mine[1:])


def test_run_plan_reports_cells_done_and_time_left(tmp_path, table2, monkeypatch):
    class Done:
        returncode, stdout = 0, "ok"

    monkeypatch.setattr(ablate_module.subprocess, "run", lambda argv, **kw: Done())
    clock = iter(range(0, 1000, 30))  # every job takes 30 s
    monkeypatch.setattr(ablate_module.time, "monotonic", lambda: next(clock))
    plan = plan_ablation(table2, tmp_path / "runs", scale="smoke")
    events = []
    run_plan(plan, "D", ["cpu"], on_event=events.append)
    assert len(plan.pending) == 3 and len(events) == 6
    assert events[0].startswith("[0/4 cells done, time left unknown until a run finishes] cpu: "
                                "train ")
    assert "(cells " in events[0]
    assert events[1].startswith("[") and "cells done, about 1:00 left] cpu: done in 0:30: " in events[1]
    assert events[-1].startswith("[4/4 cells done, about 0:00 left] cpu: done in 0:30")
    assert ablate_module.clock(3725) == "1:02:05"


def test_failed_job_is_reported_by_the_cli(tmp_path, monkeypatch):
    class Failed:
        returncode, stdout = 3, "boom"

    monkeypatch.setattr(ablate_module.subprocess, "run", lambda argv, **kw: Failed())
    result = CliRunner().invoke(app, ["ablate", "ranet.table4", "--scale", "smoke", "--runs",
                                      str(tmp_path), "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert re.search(r"(\d+) of \1 run\(s\) failed", result.output)  # every job ran and failed
    assert "boom" in next((tmp_path / "ablate-logs").glob("*.log")).read_text()


# --- report --scale smoke reads what ablate --scale smoke writes -----------------------------------


def test_report_smoke_scale_matches_ablate_runs_with_mean_and_std(tmp_path, table2):
    plan = plan_ablation(table2, tmp_path, scale="smoke", seeds=2)
    values = {}
    for job in plan.jobs:
        recipe = load_recipe(job.spec.recipe, [*job.spec.overrides, f"seed={job.seed}"])
        tags = [f"{setting.split}_{setting.tag()}" for setting in job.evals]
        miou = 60.0 + 5 * job.seed + len(job.cells)
        values[job.run_dir] = miou
        _fake_run(job.run_dir, recipe, evals=[(tag, miou) for tag in tags])
    assert not plan_ablation(table2, tmp_path, scale="smoke", seeds=2).pending
    index = RunIndex(tmp_path)
    report = build_report(table2, index, scale="smoke")
    for cell_report in report.cells:
        cell = cell_report.cell
        if not cell.reproduced_by_training:
            continue
        assert cell_report.state == "filled-smoke", cell
        def mean_of(baseline):
            wanted = cell_training(cell, baseline, "smoke").resolved.to_dict()
            got = [values[j.run_dir] for j in plan.jobs if j.spec.resolved.to_dict() == wanted]
            assert len(got) == 2  # one per seed
            return statistics.fmean(got)

        expected = mean_of(False) - (mean_of(True) if cell.baseline else 0.0)
        assert cell_report.ours == pytest.approx(expected)
        assert cell_report.std is not None
    full = build_report(table2, index, scale="full")
    assert all(c.state == "missing-run" for c in full.cells if c.cell.reproduced_by_training)


def test_cli_ablate_dry_run_and_report_scale(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["ablate", "gff.table2", "--scale", "smoke", "--runs", str(tmp_path),
                                 "--dry-run", "--data", "/d"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("gsbench train")]
    assert lines and all("-smoke" in line and "--data /d" in line for line in lines)
    result = runner.invoke(app, ["ablate", "gff.table2", "--runs", str(tmp_path)])
    assert result.exit_code == 2 and "--data is required" in result.output
    result = runner.invoke(app, ["ablate", "gff", "--dry-run"])
    assert result.exit_code == 2 and "ablate takes one table" in result.output
    result = runner.invoke(app, ["report", "gff.table2", "--scale", "smoke", "--runs", str(tmp_path),
                                 "--format", "md"])
    assert result.exit_code == 0 and "gsbench train --recipe gff101-smoke" in result.stdout
    result = runner.invoke(app, ["report", "gff.table2", "--scale", "huge"])
    assert result.exit_code == 2 and "unknown scale" in result.output
    result = runner.invoke(app, ["ablate", "gff.table2", "--scale", "huge", "--dry-run",
                                 "--runs", str(tmp_path)])
    assert result.exit_code == 2 and "unknown scale 'huge'" in result.output
    assert not result.stdout.strip().startswith("gsbench")  # no command printed


# --- GFF Table 1: the fusion rows start from the trained baseline ----------------------------------


@pytest.fixture(scope="module")
def table1():
    # every fusion row has init_from: baseline (the paper initialises them from the trained PSPNet)
    return select_tables(["gff.table1"])[0]


def test_initialised_cells_train_after_the_baseline_run_of_the_same_seed(tmp_path, table1):
    plan = plan_ablation(table1, tmp_path, scale="full", seeds=2)
    order = [job.run_dir for job in plan.pending]
    variants = [job for job in plan.pending if job.spec.init_from is not None]
    assert len(plan.pending) == 12 and len(variants) == 10
    for job in variants:
        assert job.run_dir.name.split("+")[1] == "init_from=baseline"
        assert job.after.spec.recipe == "gff101_baseline" and job.after.seed == job.seed
        assert order.index(job.after.run_dir) < order.index(job.run_dir)
        train = job.commands("D")[0]
        assert train[train.index(f"train.init_from={job.after.run_dir}") - 1] == "--set"
    # a finished baseline run is the source; nothing of the baseline is planned again
    (baseline,) = [job for job in plan.pending if job.spec.recipe == "gff101_baseline" and job.seed == 0]
    _fake_run(tmp_path / "mine", baseline.spec.resolved, evals=[("val_ss_slide", 78.0)])
    plan = plan_ablation(table1, tmp_path, scale="full", rows=["fpn"])
    (job,) = plan.pending
    assert job.after.action is None and job.after.run_dir == tmp_path / "mine"
    assert f"train.init_from={tmp_path / 'mine'}" in job.commands("D")[0]


def test_dry_run_of_a_variant_row_trains_the_baseline_first(tmp_path):
    result = CliRunner().invoke(app, ["ablate", "gff.table1", "--scale", "smoke", "--runs",
                                      str(tmp_path), "--row", "fpn", "--dry-run", "--data", "/d"])
    assert result.exit_code == 0, result.output
    first, second = [line for line in result.stdout.splitlines() if line.startswith("gsbench")]
    baseline = tmp_path / "gff101_baseline-smoke"
    assert first == shlex.join(["gsbench", "train", *shlex.split(first)[2:]])
    assert f"--out {baseline}" in first and " && " not in first  # trained, not scored: no row of it
    assert f"--set model.fusion=fpn --set train.init_from={baseline} " in second
    assert f"--out {tmp_path / 'gff101_fpn-smoke+init_from=baseline'} && gsbench eval" in second


def test_a_variant_waits_for_its_baseline_and_is_skipped_when_it_failed(tmp_path, table1, monkeypatch):
    ran = []

    def fake_run(argv, **kwargs):
        ran.append(argv[argv.index("--out") + 1] if "train" in argv else None)
        failed = "train" in argv and "gff101_baseline" in argv[argv.index("--out") + 1]
        return type("Proc", (), {"returncode": 3 if failed else 0, "stdout": ""})()

    monkeypatch.setattr(ablate_module.subprocess, "run", fake_run)
    plan = plan_ablation(table1, tmp_path, scale="smoke", rows=["concat", "fpn"])
    events = []
    results = run_plan(plan, "D", ["cuda:0", "cuda:1"], on_event=events.append)
    assert [r for r in ran if r] == [str(tmp_path / "gff101_baseline-smoke")]  # nothing else trained
    skipped = [r for r in results if r.returncode is None]
    assert len(skipped) == 2 and all(r.job.after.run_dir.name == "gff101_baseline-smoke" for r in skipped)
    assert sum("skipped " in e and "the run it starts from failed" in e for e in events) == 2
    result = CliRunner().invoke(app, ["ablate", "gff.table1", "--scale", "smoke", "--runs",
                                      str(tmp_path / "cli"), "--row", "fpn", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "1 of 2 run(s) failed, 1 skipped (the run they start from failed)" in " ".join(result.output.split())


def test_report_suggests_the_baseline_training_first(tmp_path, table1):
    report = build_report(table1, RunIndex(tmp_path), data="D", scale="smoke")
    baseline_line, *_ = next(c for c in report.cells if c.cell.row_id == "baseline").commands
    for cell in report.cells:
        if cell.cell.row_id != "baseline":
            assert cell.commands[0] == baseline_line
            assert f"train.init_from={tmp_path / 'gff101_baseline-smoke'}" in cell.commands[1]
    assert len(report.commands) == 6  # the baseline's line once
    plan = plan_ablation(table1, tmp_path, scale="smoke")
    assert report.commands == plan_commands(plan, "D")


@pytest.mark.slow
def test_ablate_a_variant_row_end_to_end_from_the_trained_baseline(tmp_path):
    from gsbench.data.synthetic import prepare_synthetic

    prepare_synthetic(tmp_path / "raw", n_train=2, n_val=1, size=(64, 128), workers=1,
                      progress=False)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["ablate", "gff.table1", "--scale", "smoke", "--row", "fpn",
                                      "--runs", str(runs), "--data", str(tmp_path / "raw" / "gsbench")])
    assert result.exit_code == 0, result.output
    variant = runs / "gff101_fpn-smoke+init_from=baseline"
    record = json.loads((variant / "init_from.json").read_text())
    assert record["file"] == str((runs / "gff101_baseline-smoke" / "checkpoints" / "final.pt").resolve())
    report = build_report(select_tables(["gff.table1"])[0], RunIndex(runs), scale="smoke")
    states = {c.cell.row_id: c.state for c in report.cells}
    assert states["fpn"] == "filled-smoke" and states["baseline"] == "missing-eval"
