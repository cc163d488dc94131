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
    # A second quickstart into the same folder refuses instead of mixing runs.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already there" in again.output


def test_quickstart_defaults_hold_a_full_batch():
    from gsbench.cli import QUICKSTART_OVERRIDES, QUICKSTART_RECIPE
    from gsbench.recipes import load_recipe

    recipe = load_recipe(QUICKSTART_RECIPE, QUICKSTART_OVERRIDES)
    assert QUICKSTART_N_TRAIN >= recipe.train.batch_size
    assert recipe.data.num_classes == 19 and recipe.pretrained is None
