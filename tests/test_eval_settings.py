"""Per-cell evaluation settings: multi-scale lists and scored outputs in the table registry, the
one folder name that `gsbench eval`, `report` and `ablate` share, and `ablate --data` per dataset.

No model runs here: run folders are written by hand (tests/test_eval_outputs.py runs models).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.commands import command_line, evaluation_values
from gsbench.errors import GsbenchError
from gsbench.evaluation.setting import DEFAULT_MS_SCALES, EvalSetting, protocol_tag
from gsbench.protocol import PROCEDURES, TestProtocol, apply_changes, protocol_changes
from gsbench.recipes import load_recipe
from gsbench.tables import RunIndex, build_report, eval_metrics_file, load_table_file, select_tables
from gsbench.tables import ablate as ablate_module
from gsbench.tables.ablate import DataRoots, plan_ablation, plan_commands, run_plan

runner = CliRunner()

GFF_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75)  # GFF (AAAI 2020), "MS: multi-scale inference"
GSCNN_TEST_SCALES = (0.5, 1.0, 2.0)  # Gated-SCNN Sec. 4.2, Cityscapes benchmark submission


# --- the folder name -------------------------------------------------------------------------------


@pytest.mark.parametrize("scales, flip, slide, output, tag", [
    ((1.0,), False, False, "out", "ss"),
    ((0.5, 0.75, 1.0, 1.25, 1.5, 1.75), False, False, "out", "ms"),
    ((1.75, 1.5, 1.25, 1.0, 0.75, 0.5), True, False, "out", "ms_flip"),  # order does not matter
    (GFF_SCALES, True, False, "out", "ms-0.75-1.0-1.25-1.5-1.75_flip"),
    ((2.0, 0.5, 1.0), False, True, "out", "ms-0.5-1.0-2.0_slide"),
    ((1.0,), False, False, "coarse", "ss_coarse"),
    ((0.5, 0.75, 1.0, 1.25, 1.5, 1.75), True, True, "coarse", "ms_flip_slide_coarse"),
    ((0.1 + 0.2, 1.0), False, False, "out", "ms-0.30000000000000004-1.0"),  # exact, not rounded
])
def test_gsbench_protocol_keeps_its_folder_names(scales, flip, slide, output, tag):
    protocol = TestProtocol(mode="slide" if slide else "whole", scales=scales, flip=flip)
    assert protocol_tag(protocol, output) == tag
    setting = EvalSetting("val", output=output, protocol=protocol)
    assert setting == EvalSetting("val", scales, flip, output, protocol=TestProtocol(
        mode="slide" if slide else "whole"))
    assert setting.folder(Path("run")) == Path("run") / "eval" / f"val_{tag}"


@pytest.mark.parametrize("protocol, tag", [
    (TestProtocol("semseg", crop_size=(705, 705), base_size=[2048]), "ss_flip_slide-705_semseg_b2048"),
    (TestProtocol("semseg", flip=False), "ss_slide_semseg"),
    (TestProtocol("psanet-caffe", scales=DEFAULT_MS_SCALES, crop_size=(465, 465), base_size=[512]),
     "ms_flip_slide-465_psanet-caffe_b512"),
    (TestProtocol("toolbox", crop_size=(769, 769)), "ss_slide-769_toolbox"),
    (TestProtocol("toolbox", mode="whole"), "ss_toolbox"),
    (TestProtocol("mmseg", base_size=[2048, 1024]), "ss_mmseg_b2048x1024"),
    # the default stride (ceil(2/3 x 769) = 513) is not spelt out; another one is
    (TestProtocol("mmseg", mode="slide", crop_size=(769, 769), stride=(513, 513),
                  base_size=[2049, 1025], align_corners=True), "ss_slide-769_mmseg_b2049x1025_ac"),
    (TestProtocol("mmseg", mode="slide", crop_size=(512, 1024), stride=(341, 400)),
     "ss_slide-512x1024-s341x400_mmseg"),
])
def test_every_protocol_parameter_is_in_the_folder_name(protocol, tag):
    assert protocol_tag(protocol) == tag


def test_no_two_protocols_share_a_folder():
    protocols = {
        TestProtocol(procedure, mode=mode, scales=scales, flip=flip, crop_size=crop, stride=stride,
                     base_size=base, align_corners=ac)
        for procedure, info in PROCEDURES.items() for mode in info.modes
        for scales in ((1.0,), DEFAULT_MS_SCALES, GFF_SCALES) for flip in (False, True)
        for crop in ((None, (64, 64), (64, 96)) if mode == "slide" else (None,))
        for stride in ((None, (40, 40)) if mode == "slide" else (None,))
        for base in ((None, (512,), (512, 256)) if info.uses_base_size and procedure == "mmseg"
                     else (None, (512,)) if info.uses_base_size else (None,))
        for ac in ((False, True) if procedure == "mmseg" else (False,))
    }
    tags = {protocol_tag(p) for p in protocols}
    assert len(tags) == len(protocols) > 300


def test_eval_setting_command_line_options():
    def cli_args(setting):
        return command_line("eval", launcher=(), **evaluation_values(setting))[1:]

    assert cli_args(EvalSetting("val")) == ["--split", "val", "--procedure", "gsbench"]
    assert cli_args(EvalSetting("val", DEFAULT_MS_SCALES, True)) == \
        ["--split", "val", "--procedure", "gsbench", "--ms", "--flip"]
    assert cli_args(EvalSetting("train", GFF_SCALES)) == \
        ["--split", "train", "--procedure", "gsbench", "--scales", "0.75,1.0,1.25,1.5,1.75"]
    assert cli_args(EvalSetting("val", output="coarse")) == \
        ["--split", "val", "--procedure", "gsbench", "--output", "coarse"]
    semseg = TestProtocol("semseg", crop_size=(705, 705), base_size=[2048], flip=False)
    assert cli_args(EvalSetting("val", protocol=semseg)) == \
        ["--split", "val", "--procedure", "semseg", "--crop", "705,705", "--base-size", "2048",
         "--no-flip"]
    mmseg = TestProtocol("mmseg", mode="slide", crop_size=(769, 769), stride=(400, 400),
                         base_size=[2049, 1025], align_corners=True)
    assert cli_args(EvalSetting("val", protocol=mmseg)) == \
        ["--split", "val", "--procedure", "mmseg", "--slide", "--crop", "769,769", "--stride",
         "400,400", "--base-size", "2049,1025", "--align-corners"]
    assert cli_args(EvalSetting("val", protocol=TestProtocol("toolbox", mode="whole"))) == \
        ["--split", "val", "--procedure", "toolbox", "--whole"]
    for bad in ((), (0.0, 1.0), (-1.0,)):
        with pytest.raises(GsbenchError, match="scales"):
            EvalSetting("val", bad)


@pytest.mark.parametrize("base", [
    TestProtocol(), TestProtocol("semseg", crop_size=(705, 705), base_size=[2048]),
    TestProtocol("mmseg", mode="slide", scales=DEFAULT_MS_SCALES, flip=True),
])
@pytest.mark.parametrize("wanted", [
    TestProtocol(), TestProtocol(scales=GFF_SCALES, flip=True, mode="slide"),
    TestProtocol("semseg", flip=False, base_size=[512], crop_size=(465, 465), stride=(300, 300)),
    TestProtocol("psanet-caffe", scales=DEFAULT_MS_SCALES),
    TestProtocol("toolbox", mode="whole", scales=(0.5, 1.0), flip=True),
    TestProtocol("mmseg", mode="slide", crop_size=(769, 769), base_size=[2049, 1025],
                 align_corners=True),
])
def test_written_eval_lines_give_the_setting_whatever_the_run_recorded(base, wanted):
    """`gsbench eval` applies the written options to the run's recorded protocol (its recipe's
    test: section); the line gsbench writes names the procedure, so the result is the cell's
    protocol on every run - parsed here by the real CLI."""
    words = command_line("eval", "RUN", **evaluation_values(EvalSetting("val", protocol=wanted)))
    seen = {}

    def fake_evaluate(target, data, **kwargs):
        seen.update(kwargs)

    import gsbench.cli as cli_module
    original = cli_module._evaluate_target
    cli_module._evaluate_target = fake_evaluate
    try:
        result = runner.invoke(app, words[1:])
    finally:
        cli_module._evaluate_target = original
    assert result.exit_code == 0, result.output
    assert apply_changes(base, seen["protocol"]) == wanted
    assert apply_changes(base, protocol_changes(wanted, base)) == wanted


# --- the registry keys -----------------------------------------------------------------------------


def _table(folder: Path, overrides_: dict | None = None, **top) -> Path:
    """A GFF Table 2 look-alike: an ss and an ms column on gff101_dfp, Cityscapes val, with the
    top-level keys ``top`` and the ``overrides`` ``overrides_``."""
    raw = {"paper": "gff", "table": 2, "caption": "test table", "dataset": "cityscapes",
           "split": "val", **top,
           "columns": [{"key": "ss", "label": "SS", "metric": "miou"},
                       {"key": "ms", "label": "MS", "metric": "miou", "scales": "ms"}],
           "rows": [{"method": "GFF + DFP", "id": "dfp", "recipe": "gff101_dfp", "ss": 81.2,
                     "ms": 81.8}]}
    if overrides_:
        raw["overrides"] = overrides_
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gff_table2.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_ms_scales_cascade_to_ms_cells_and_show_in_the_setting(tmp_path):
    default = load_table_file(_table(tmp_path / "a"))
    assert default.cell("dfp", "ms").ms_scales == DEFAULT_MS_SCALES
    assert default.cell("dfp", "ms").setting == "cityscapes val ms"
    assert default.cell("dfp", "ss").ms_scales is None
    assert default.cell("dfp", "ss").evaluation == EvalSetting("val", (1.0,))
    given = load_table_file(_table(tmp_path / "b", overrides_={
        "dfp.ms": {"ms_scales": [0.75, 1, 1.25, 1.5, 1.75], "flip": True}}))
    cell = given.cell("dfp", "ms")
    assert cell.ms_scales == GFF_SCALES
    assert cell.setting == "cityscapes val ms(0.75,1.0,1.25,1.5,1.75)+flip"
    assert cell.evaluation == EvalSetting("val", GFF_SCALES, True)
    # the default list written out is the default: same folder, no list in the setting
    spelled = load_table_file(_table(tmp_path / "c", overrides_={
        "dfp.ms": {"ms_scales": [1.75, 1.5, 1.25, 1.0, 0.75, 0.5]}})).cell("dfp", "ms")
    assert spelled.setting == "cityscapes val ms" and spelled.evaluation.tag() == "ms"


def test_output_key_names_the_scored_output(tmp_path):
    table = load_table_file(_table(tmp_path, overrides_={"dfp.ss": {"output": "coarse"}}))
    cell = table.cell("dfp", "ss")
    assert cell.output == "coarse" and cell.setting == "cityscapes val ss output=coarse"
    assert cell.evaluation == EvalSetting("val", output="coarse")
    assert table.cell("dfp", "ms").output == "out"


@pytest.mark.parametrize("top, key, message", [
    ({"ms_scales": [0.75, 1.0]}, "rows.dfp.ss.ms_scales", "multi-scale cells"),
    ({"overrides_": {"dfp.ms": {"ms_scales": [0.5, 0.0]}}}, "rows.dfp.ms.ms_scales", "scales > 0"),
    ({"overrides_": {"dfp.ms": {"ms_scales": [-1.0]}}}, "rows.dfp.ms.ms_scales", "scales > 0"),
    ({"overrides_": {"dfp.ms": {"ms_scales": "0.75,1.0"}}}, "rows.dfp.ms.ms_scales", "list"),
    ({"overrides_": {"dfp.ms": {"ms_scales": []}}}, "rows.dfp.ms.ms_scales", "non-empty"),
    ({"overrides_": {"dfp.ms": {"ms_scales": [True, 1.0]}}}, "rows.dfp.ms.ms_scales", "list"),
    ({"overrides_": {"dfp.ms": {"ms_scales": [1.0]}}}, "rows.dfp.ms.ms_scales", "scales: ss"),
    ({"overrides_": {"dfp.ss": {"output": "two words"}}}, "rows.dfp.ss.output", "model output"),
    ({"overrides_": {"dfp.ss": {"output": 3}}}, "rows.dfp.ss.output", "model output"),
])
def test_bad_eval_keys_are_one_line_errors_naming_file_and_key(tmp_path, top, key, message):
    path = _table(tmp_path, **top)
    with pytest.raises(GsbenchError, match=message) as info:
        load_table_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {key}:") and "\n" not in text


def test_the_papers_tables_carry_their_scale_lists():
    def cell(table, row, column="miou"):
        return select_tables([table])[0].cell(row, column)

    assert cell("gff.table2", "gff-dfp-ms").evaluation.scales == GFF_SCALES
    assert cell("gff.table6", "gffnet").ms_scales == GFF_SCALES
    assert cell("gff.table6", "gffnet", "pixel_acc").ms_scales == GFF_SCALES
    assert cell("gff.table5", "fine-gffnet").ms_scales == GFF_SCALES
    assert cell("gff.table7", "gffnet", "mean").ms_scales == GFF_SCALES
    assert cell("gscnn.table6", "gscnn", "mean").ms_scales == GSCNN_TEST_SCALES
    # PSPNet's own number (quoted in GFF Table 6) is semseg's default list
    assert cell("gff.table6", "pspnet").ms_scales == DEFAULT_MS_SCALES
    coarse = cell("ranet.table4", "coarse", "cityscapes")
    assert coarse.reproduced_by_training and coarse.output == "coarse"
    assert cell("ranet.table4", "fine", "cityscapes").output == "out"


# --- report and ablate read and write the same folders -----------------------------------------------


def _fake_run(run_dir: Path, recipe, evals: dict[str, float]) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    (run_dir / "checkpoints").mkdir()
    for name in ("last.pt", "final.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"x")
    for tag, miou in evals.items():
        (run_dir / "eval" / tag).mkdir(parents=True)
        (run_dir / "eval" / tag / "metrics.json").write_text(json.dumps({"miou": miou}))


def test_ranet_coarse_and_fine_cells_share_a_run_and_read_their_own_folders(tmp_path):
    table = select_tables(["ranet.table4"])[0]
    cells = [table.cell("coarse", "cityscapes"), table.cell("fine", "cityscapes")]
    runs = tmp_path / "runs"
    plan = plan_ablation(table, runs, scale="full", rows=["coarse", "fine"])
    (job,) = [j for j in plan.jobs if "coarse.cityscapes" in j.cells]
    assert set(job.cells) >= {"coarse.cityscapes", "fine.cityscapes"}
    # RANet's release tests with sliding windows (its toolbox's evaluate.py)
    toolbox = TestProtocol("toolbox", mode="slide")
    assert job.evals == [EvalSetting("val", output="coarse", protocol=toolbox),
                         EvalSetting("val", protocol=toolbox)]
    (line,) = [c for c in plan_commands(plan, "/cs") if f"--out {job.run_dir} " in c]
    assert f"gsbench eval {job.run_dir} --data /cs --split val --procedure toolbox --output coarse" in line
    # the run evaluated both ways: each cell reads its own number
    _fake_run(job.run_dir, job.spec.resolved, {"val_ss_slide_toolbox": 81.0,
                                               "val_ss_slide_toolbox_coarse": 77.0})
    report = build_report(table, RunIndex(runs))
    values = {(c.cell.row_id, c.cell.column): c.ours for c in report.cells}
    assert values[("coarse", "cityscapes")] == 77.0 and values[("fine", "cityscapes")] == 81.0
    for cell in cells:
        assert eval_metrics_file(job.run_dir, cell.evaluation).parent.name == \
            "val_ss_slide_toolbox" + ("_coarse" if cell.output == "coarse" else "")
    again = plan_ablation(table, runs, scale="full", rows=["coarse", "fine"])
    assert {"coarse.cityscapes", "fine.cityscapes"} <= set(again.done)


def test_report_of_a_missing_coarse_eval_gives_the_eval_command(tmp_path):
    table = select_tables(["ranet.table4"])[0]
    runs = tmp_path / "runs"
    spec_recipe = load_recipe("ranet101")
    _fake_run(runs / "ranet101", spec_recipe, {"val_ss_slide_toolbox": 81.0})
    report = {(c.cell.row_id, c.cell.column): c for c in build_report(table, RunIndex(runs)).cells}
    coarse = report[("coarse", "cityscapes")]
    assert coarse.state == "missing-eval"
    assert coarse.commands == (f"gsbench eval {runs / 'ranet101'} --data DATA --split val "
                               "--procedure toolbox --output coarse",)
    assert report[("fine", "cityscapes")].ours == 81.0


# --- ablate --data per dataset -----------------------------------------------------------------------


def test_data_roots_parse_both_forms():
    assert DataRoots.parse(["/d"]).root("cityscapes") == "/d"
    roots = DataRoots.parse(["cityscapes=/cs", "ade20k=/ade"])
    assert (roots.root("cityscapes"), roots.root("ade20k"), roots.root("voc2012")) == \
        ("/cs", "/ade", None)
    mixed = DataRoots.parse(["/all", "ade20k=/ade"])  # one dataset differs from the rest
    assert (mixed.root("cityscapes"), mixed.root("ade20k")) == ("/all", "/ade")
    assert DataRoots.parse(["./runs=1/data"]).root("ade20k") == "./runs=1/data"  # a path with =


@pytest.mark.parametrize("values, message", [
    (["nope=/x"], "unknown dataset 'nope'"),
    (["cityscapes=/a", "cityscapes=/b"], "given twice"),
    (["cityscapes="], "no path after cityscapes="),
    (["/a", "/b"], "a second path"),
    ([""], "empty path"),
])
def test_data_roots_refuse_bad_values(values, message):
    with pytest.raises(GsbenchError, match=message):
        DataRoots.parse(values)


def _mixed_table(folder: Path) -> Path:
    """Two datasets in one table: a Cityscapes and an ADE20K column (as RANet Table 4 mixes)."""
    raw = {"paper": "gff", "table": 6, "caption": "two datasets", "split": "val",
           "columns": [{"key": "cs", "label": "Cityscapes", "metric": "miou",
                        "dataset": "cityscapes"},
                       {"key": "ade", "label": "ADE20K", "metric": "miou", "dataset": "ade20k"}],
           "rows": [{"method": "PSPNet", "id": "psp", "cs": 78.4, "ade": 43.29}],
           "overrides": {"psp.cs": {"recipe": "pspnet101"},
                         "psp.ade": {"recipe": "pspnet101_ade20k"}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gff_table6.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


class _Recorder:
    """Stands in for subprocess.run: records the command lines, succeeds."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)

        class Done:
            returncode, stdout = 0, "ok"

        return Done()


def test_ablate_gives_each_job_its_datasets_root(tmp_path, monkeypatch):
    table_file = _mixed_table(tmp_path / "tables")
    cs, ade = tmp_path / "cs", tmp_path / "ade"
    cs.mkdir()
    ade.mkdir()
    recorder = _Recorder()
    monkeypatch.setattr(ablate_module.subprocess, "run", recorder)
    result = CliRunner().invoke(app, ["ablate", str(table_file), "--runs", str(tmp_path / "runs"),
                                      "--data", f"cityscapes={cs}", "--data", f"ade20k={ade}"])
    assert result.exit_code == 0, result.output
    roots = {}
    for argv in recorder.calls:
        out = argv[argv.index("--out") + 1] if "--out" in argv else argv[argv.index("eval") + 1]
        roots.setdefault(Path(out).name, set()).add(argv[argv.index("--data") + 1])
    assert roots == {"pspnet101": {str(cs)}, "pspnet101_ade20k": {str(ade)}}
    # library: a plain root serves every dataset
    plan = plan_ablation(load_table_file(table_file), tmp_path / "other")
    assert all("--data /one " in line for line in plan_commands(plan, "/one"))


def test_ablate_without_a_datasets_root_fails_before_anything_runs(tmp_path, monkeypatch):
    table_file = _mixed_table(tmp_path / "tables")
    (tmp_path / "cs").mkdir()
    recorder = _Recorder()
    monkeypatch.setattr(ablate_module.subprocess, "run", recorder)
    runs = tmp_path / "runs"
    runner = CliRunner()
    result = runner.invoke(app, ["ablate", str(table_file), "--runs", str(runs),
                                 "--data", f"cityscapes={tmp_path / 'cs'}"])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == ["error: no --data for ade20k (cells psp.ade): add --data ade20k=PATH (or one "
                     "--data PATH for every dataset)"]
    assert recorder.calls == [] and not runs.exists()
    result = runner.invoke(app, ["ablate", str(table_file), "--runs", str(runs),
                                 "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in result.output
    assert recorder.calls == [] and not runs.exists()
    result = runner.invoke(app, ["ablate", str(table_file), "--runs", str(runs), "--data", "x=/y"])
    assert result.exit_code == 2 and "unknown dataset 'x'" in result.output
    # the library refuses too, before the first job
    plan = plan_ablation(load_table_file(table_file), runs)
    with pytest.raises(GsbenchError, match="no --data for ade20k"):
        run_plan(plan, DataRoots.parse([f"cityscapes={tmp_path / 'cs'}"]), ["cpu"])
    with pytest.raises(GsbenchError, match="no --data for ade20k"):
        plan_commands(plan, DataRoots.parse(["cityscapes=/cs"]))
    assert recorder.calls == [] and not runs.exists()


def test_dry_run_prints_a_placeholder_for_a_dataset_without_root(tmp_path):
    table_file = _mixed_table(tmp_path / "tables")
    result = CliRunner().invoke(app, ["ablate", str(table_file), "--runs", str(tmp_path / "runs"),
                                      "--dry-run", "--data", "cityscapes=/cs"])
    assert result.exit_code == 0, result.output
    assert "note: no --data for ade20k: its commands say <ade20k data>" in result.stderr
    lines = [line for line in result.stdout.splitlines() if " train " in line]
    (psp,) = [line for line in lines if "--recipe pspnet101 " in line]
    (ade,) = [line for line in lines if "--recipe pspnet101_ade20k " in line]
    assert "--data /cs " in psp and "'<ade20k data>'" not in psp
    assert ade.count("--data '<ade20k data>'") == 2  # train and eval


def test_report_puts_each_datasets_root_in_the_commands_of_missing_cells(tmp_path):
    args = ["report", "ranet.table4", "--runs", str(tmp_path / "runs"), "--format", "csv"]
    given = runner.invoke(app, [*args, "--data", "cityscapes=cs", "--data", "coco_stuff10k=coco"])
    assert given.exit_code == 0, given.output
    commands = given.stdout
    assert "ranet101 --data cs " in commands and "ranet101_coco_stuff10k --data coco " in commands
    assert "ranet101_pascal_context --data '<pascal_context data>' " in commands
    bad = runner.invoke(app, [*args, "--data", "mars=x"])
    assert bad.exit_code == 2 and "unknown dataset 'mars'" in bad.output
