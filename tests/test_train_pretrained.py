"""`gsbench train --pretrained FILE`: the local weights go into the backbone and the run's recipe."""

import torch
import yaml
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.engine.checkpoint import load_checkpoint
from gsbench.models.backbones import build_backbone

from test_train import make_prepared_dataset


def test_train_with_local_pretrained_weights(tmp_path):
    data = make_prepared_dataset(tmp_path / "data")
    # shifted by 1 so that no random initialisation can match them by chance
    weights = {k: v + 1 if v.is_floating_point() else v
               for k, v in build_backbone("resnet_tiny", output_stride=8).state_dict().items()}
    torch.save(weights, tmp_path / "tiny.pth")
    run = tmp_path / "run"
    args = ["train", "--recipe", "fcn101-smoke", "--data", str(data), "--out", str(run),
            "--pretrained", str(tmp_path / "tiny.pth"), "--set", "train.iterations=1",
            "--set", "train.lr=1e-12", "--set", "train.weight_decay=0.0", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "recipe.yaml").read_text())["pretrained"] == str((tmp_path / "tiny.pth").resolve())
    # lr 1e-12: the trained backbone is still the loaded one (a random init would be far off)
    model = load_checkpoint(run / "checkpoints" / "final.pt")["model"]
    torch.testing.assert_close(model["backbone.conv1.weight"], weights["conv1.weight"], rtol=0, atol=1e-8)


def test_missing_pretrained_file_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "--recipe", "fcn101-smoke", "--pretrained",
                                      str(tmp_path / "nope.pth")])
    assert result.exit_code == 2
    assert "nope.pth: --pretrained weights file not found" in result.output
