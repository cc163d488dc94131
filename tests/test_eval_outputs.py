"""Scoring an auxiliary output of a model (RANet Table 4's coarse segmentation: the argmax of
RCB's semantic score map C) and `gsbench eval --scales`, on a tiny RANet and synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.engine.inference import InferenceOptions, infer, predict
from gsbench.protocol import TestProtocol
from gsbench.engine.outputs import model_outputs
from gsbench.errors import GsbenchError
from gsbench.models import build_model


def _coarse_logits_directly(model, images):
    """RCB's class head on the head's reduced features A, upsampled to the input like the model
    contract does (bilinear, align_corners=False); written out without the model's forward."""
    head = model.decode_head
    features = model.backbone(images)
    a = head.reduce(features[-1])
    # the paper's score source reads A, the released one the stage-3 map c4
    score_input = a if head.final_boundary is None else features[2]
    _, logits = head.context.score_heads(score_input)
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def _small_ranet(context: str = "region"):
    """RANet on the tiny backbone with a 32-channel head (the recipes' head has 512)."""
    from gsbench.models.backbones import build_backbone
    from gsbench.models.common import AuxFCNHead
    from gsbench.models.ranet import RANetHead, RANetModel

    torch.manual_seed(0)
    encoder = build_backbone("resnet_tiny", 8)
    head = RANetHead(encoder.channels[-1], 19, context=context, channels=32)
    return RANetModel(encoder, head, AuxFCNHead(encoder.channels[2], 19, 0.1)).eval()


@pytest.fixture(scope="module")
def tiny_ranet():
    return _small_ranet()


def test_ranet_exposes_its_coarse_map_only_when_asked(tiny_ranet):
    images = torch.randn(2, 3, 24, 32)
    assert model_outputs(tiny_ranet) == ("out", "coarse")
    with torch.no_grad():
        assert set(tiny_ranet(images)) == {"out"}
        both = tiny_ranet(images, outputs=("coarse",))
        direct = _coarse_logits_directly(tiny_ranet, images)
    assert set(both) == {"out", "coarse"} and both["coarse"].shape == (2, 19, 24, 32)
    torch.testing.assert_close(both["coarse"], direct)
    # the pixel-wise baselines of RANet Table 1 have no RCB, hence no coarse map
    assert model_outputs(_small_ranet("nonlocal")) == ("out",)
    built = build_model("ranet", num_classes=19, backbone="resnet_tiny", context="spp")
    assert model_outputs(built) == ("out",)


def test_coarse_prediction_is_the_argmax_of_the_coarse_logits_and_differs_from_fine(tiny_ranet):
    images = torch.randn(1, 3, 24, 40)
    coarse = predict(tiny_ranet, images, InferenceOptions(output="coarse"))
    fine = predict(tiny_ranet, images)
    with torch.no_grad():
        expected = _coarse_logits_directly(tiny_ranet, images).argmax(1).to(torch.uint8)
    torch.testing.assert_close(coarse, expected)
    assert (coarse != fine).any()
    # multi-scale + flip treat the coarse map like the prediction: mirror logits averaged,
    # probabilities averaged over scales
    options = InferenceOptions(TestProtocol(scales=(0.75, 1.0), flip=True), output="coarse")
    with torch.no_grad():
        views = []
        for scale in (0.75, 1.0):
            size = (round(24 * scale), round(40 * scale))
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            logits = (_coarse_logits_directly(tiny_ranet, scaled)
                      + _coarse_logits_directly(tiny_ranet, scaled.flip(-1)).flip(-1)) / 2
            views.append(F.interpolate(logits, size=(24, 40), mode="bilinear",
                                       align_corners=False).softmax(1))
    torch.testing.assert_close(infer(tiny_ranet, images, options), torch.stack(views).mean(0))


def test_unknown_output_is_an_error_listing_the_models_outputs(tiny_ranet):
    with pytest.raises(GsbenchError, match=r"output 'boundary'.*its outputs: out, coarse\)"):
        infer(tiny_ranet, torch.randn(1, 3, 16, 16), InferenceOptions(output="boundary"))


# --- gsbench eval RUN --output / --scales ------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from gsbench.data.synthetic import prepare_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    return prepare_synthetic(out, n_train=1, n_val=1, size=(64, 64), workers=1, progress=False)


def _make_run(run_dir, model: str):
    """A run folder as `gsbench train` leaves it (random weights): recipe.yaml, final.pt."""
    from gsbench.engine.checkpoint import save_checkpoint
    from gsbench.io import atomic_write_text
    from gsbench.recipes import build_model_from_recipe, load_recipe

    recipe = load_recipe(f"{model}-smoke")
    torch.manual_seed(0)
    net = build_model_from_recipe(recipe)
    atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    save_checkpoint(run_dir / "checkpoints" / "final.pt",
                    {"kind": "model", "iteration": 1, "model": net.state_dict()})
    return net.eval()


def test_cli_eval_output_coarse_writes_its_own_folder(prepared, tmp_path):
    from gsbench.data.transforms import Pair, eval_transform
    from gsbench.io import read_label, read_rgb

    run = tmp_path / "run"
    net = _make_run(run, "ranet101")
    runner = CliRunner()
    common = ["eval", str(run), "--data", str(prepared.root), "--radii", "none",
              "--crop-factors", "none", "--quiet"]
    assert runner.invoke(app, common).exit_code == 0
    result = runner.invoke(app, [*common, "--output", "coarse", "--save-pred", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    fine = json.loads((run / "eval" / "val_ss" / "metrics.json").read_text())
    coarse = json.loads((run / "eval" / "val_ss_coarse" / "metrics.json").read_text())
    assert coarse["inference"]["output"] == "coarse" and "output" not in fine["inference"]
    assert coarse["miou"] != fine["miou"]
    for sample in prepared.split("val"):  # the saved maps are the coarse logits' argmax
        image = eval_transform()(Pair(read_rgb(prepared.path(sample.image))), None).image
        with torch.no_grad():
            expected = _coarse_logits_directly(net, image[None]).argmax(1)[0].numpy()
        np.testing.assert_array_equal(read_label(tmp_path / "p" / f"{sample.stem}.png"), expected)

    before = sorted(p.name for p in (run / "eval").iterdir())
    result = runner.invoke(app, [*common, "--output", "edge"])
    assert result.exit_code == 2
    assert "output 'edge': the ranet model of" in result.output
    assert "(its outputs: out, coarse)" in result.output
    assert sorted(p.name for p in (run / "eval").iterdir()) == before  # nothing written
    result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path / "p"), "--data",
                                 str(prepared.root), "--output", "coarse"])
    assert result.exit_code == 2 and "--output: only for evaluating a TARGET" in result.output


def test_cli_eval_scales_imply_ms_and_name_their_folder(prepared, tmp_path):
    run = tmp_path / "run"
    _make_run(run, "fcn101")
    runner = CliRunner()
    common = ["eval", str(run), "--data", str(prepared.root), "--radii", "none",
              "--crop-factors", "none", "--quiet"]
    for extra, folder, scales in (
            (["--scales", "1.5,0.75"], "val_ms-0.75-1.5", [1.5, 0.75]),
            (["--ms"], "val_ms", [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]),
            (["--ms", "--scales", "0.75,1.0,1.25,1.5,1.75", "--flip"],
             "val_ms-0.75-1.0-1.25-1.5-1.75_flip", [0.75, 1.0, 1.25, 1.5, 1.75])):
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
        metrics = json.loads((run / "eval" / folder / "metrics.json").read_text())
        assert metrics["inference"]["scales"] == scales
    result = runner.invoke(app, [*common, "--scales", "0,1"])
    assert result.exit_code == 2 and "all > 0" in result.output
