"""`gsbench quickstart`, reduced to a few iterations on tiny images, end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gsbench.cli import QUICKSTART_N_TRAIN, app
from gsbench.engine.checkpoint import load_checkpoint


def test_reduced_quickstart_writes_every_artefact(tmp_path, monkeypatch):
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--iterations", "2", "--size", "64x128",
            "--n-train", "8", "--n-val", "2"]
    # The run records the process's command line; make it the one a user would have typed.
    monkeypatch.setattr("sys.argv", ["gsbench", *args])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # 1. prepared synthetic data
    manifest = json.loads((out / "data" / "gsbench" / "manifest.json").read_text())
    assert {name: len(s) for name, s in manifest["splits"].items()} == {"train": 8, "val": 2}
    # 2. a complete run folder
    run = out / "run"
    for name in ("recipe.yaml", "command.txt", "versions.json", "seed.txt", "log.csv",
                 "checkpoints/last.pt", "checkpoints/final.pt"):
        assert (run / name).is_file(), name
    final = load_checkpoint(run / "checkpoints" / "final.pt")
    assert final["iteration"] == 2
    assert (run / "command.txt").read_text().startswith("gsbench quickstart --out ")
    # 3. evaluation files and the printed table
    metrics = json.loads((run / "eval" / "val_ss" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["num_images"] == 2
    assert 0.0 <= metrics["miou"] <= 100.0
    for name in ("metrics.csv", "metrics.md"):
        assert (run / "eval" / "val_ss" / name).stat().st_size > 0
    assert "mIoU" in result.output and "Per class" in result.output
    # A second quickstart into the same folder evaluates the trained run again.
    before = (run / "checkpoints" / "final.pt").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already trained" in again.output and "mIoU" in again.output
    assert (run / "checkpoints" / "final.pt").read_bytes() == before
    # ... and refuses other options than the run was trained with, naming the recipe file
    other = CliRunner().invoke(app, [*args, "--iterations", "3"])  # the last one counts
    assert other.exit_code == 2 and "recipe.yaml" in other.output


def test_interrupted_quickstart_resumes(tmp_path, monkeypatch):
    from gsbench.cli import QUICKSTART_OVERRIDES, QUICKSTART_RECIPE
    from gsbench.data.synthetic import prepare_synthetic
    from gsbench.engine.train import train
    from gsbench.recipes import load_recipe

    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--iterations", "4", "--size", "64x128",
            "--n-train", "8", "--n-val", "2"]
    monkeypatch.setattr("sys.argv", ["gsbench", *args])
    # what an interrupted quickstart leaves: the data, and a run stopped at iteration 2
    manifest = prepare_synthetic(out / "data", n_train=8, n_val=2, size=(64, 128), workers=1,
                                 progress=False)
    recipe = load_recipe(QUICKSTART_RECIPE, [*QUICKSTART_OVERRIDES, "train.iterations=4"])
    train(recipe, out / "run", data_root=manifest.root, quiet=True, stop_after=2)
    assert load_checkpoint(out / "run" / "checkpoints" / "last.pt")["iteration"] == 2
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2/3 resume" in result.output
    assert load_checkpoint(out / "run" / "checkpoints" / "final.pt")["iteration"] == 4
    assert (out / "run" / "eval" / "val_ss" / "metrics.json").is_file()


def test_quickstart_defaults_hold_a_full_batch():
    from gsbench.cli import QUICKSTART_OVERRIDES, QUICKSTART_RECIPE
    from gsbench.recipes import load_recipe

    recipe = load_recipe(QUICKSTART_RECIPE, QUICKSTART_OVERRIDES)
    assert QUICKSTART_N_TRAIN >= recipe.train.batch_size
    assert recipe.data.num_classes == 19 and recipe.pretrained is None
