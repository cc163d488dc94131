"""Inference modes against independent slow references and model symmetries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.engine.inference import (
    InferenceOptions,
    default_stride,
    infer,
    infer_slide,
    infer_whole,
    predict,
    sliding_window_count,
    window_starts,
)
from gsbench.errors import GsbenchError
from gsbench.evaluation.setting import DEFAULT_MS_SCALES, parse_scales
from gsbench.protocol import TestProtocol

# every test on both forms of inference's per-pixel work (compiled, PyTorch)
pytestmark = pytest.mark.usefixtures("inference_form")


class OutModel(nn.Module):
    """Wrap a conv stack in the gsbench model contract ({"out": logits at input size})."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, images):
        return {"out": self.body(images)}


def pointwise_model(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return OutModel(nn.Conv2d(3, num_classes, 1)).eval()


def context_model(num_classes: int = 4) -> nn.Module:
    """Not translation-equivariant at window borders (zero padding), with a stride-2 path."""
    torch.manual_seed(1)

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.down = nn.Conv2d(8, num_classes, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.down(torch.relu(self.conv(x)))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return OutModel(Body()).eval()


def reference_slide(model, images, crop, stride):
    """mmsegmentation's slide_inference written out window by window with its own count map."""
    n, _, h, w = images.shape
    ch, cw = crop
    sh, sw = stride
    padded = F.pad(images, (0, max(cw - w, 0), 0, max(ch - h, 0)))
    ph, pw = padded.shape[-2:]
    h_grids = max(ph - ch + sh - 1, 0) // sh + 1
    w_grids = max(pw - cw + sw - 1, 0) // sw + 1
    total = None
    count = np.zeros((ph, pw))
    for i in range(h_grids):
        for j in range(w_grids):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, ph), min(x1 + cw, pw)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            with torch.no_grad():
                out = model(padded[:, :, y1:y2, x1:x2])["out"]
            if total is None:
                total = torch.zeros(n, out.shape[1], ph, pw)
            total[:, :, y1:y2, x1:x2] += out
            count[y1:y2, x1:x2] += 1
    return (total / torch.from_numpy(count).float())[:, :, :h, :w], count


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (20, 90), (11, 13)])
def test_slide_equals_whole_on_pointwise_model(size):
    model = pointwise_model()
    images = torch.randn(2, 3, *size)
    whole = infer_whole(model, images)
    slide = infer_slide(model, images, crop_size=(24, 32))
    assert slide.shape == whole.shape == (2, 5, *size)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "size,crop,stride",
    [((37, 53), (24, 32), None), ((50, 41), (16, 16), (5, 7)), ((9, 30), (16, 16), (16, 16))],
)
def test_slide_matches_reference_and_count_covers_every_pixel(size, crop, stride):
    model = context_model()
    images = torch.randn(1, 3, *size)
    resolved = stride or default_stride(crop)
    ours = infer_slide(model, images, crop_size=crop, stride=stride)
    ref, ref_count = reference_slide(model, images, crop, resolved)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    count = sliding_window_count(size[0], size[1], crop, resolved).numpy()
    np.testing.assert_array_equal(count, ref_count)
    assert count.min() >= 1
    # Every window adds one to each of its crop_h x crop_w pixels.
    assert count.sum() == len(window_starts(count.shape[0], crop[0], resolved[0])) * len(
        window_starts(count.shape[1], crop[1], resolved[1])
    ) * crop[0] * crop[1]


def test_window_starts_end_flush_with_the_border():
    assert window_starts(100, 40, 27) == [0, 27, 54, 60]
    assert window_starts(40, 40, 27) == [0]
    assert window_starts(10, 40, 27) == [0]
    assert default_stride((769, 769)) == (513, 513)
    with pytest.raises(GsbenchError):
        window_starts(100, 40, 0)


class MirrorModel(nn.Module):
    """Flip-equivariant: logits of the image plus its mirror image."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, images):
        out = self.conv(images)
        return {"out": out + self.conv(images.flip(-1)).flip(-1)}


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_flip_is_identity_on_flip_symmetric_model(mode):
    model = MirrorModel().eval()
    images = torch.randn(2, 3, 21, 34)
    crop = (16, 20) if mode == "slide" else None
    plain = infer(model, images, InferenceOptions(TestProtocol(mode=mode, crop_size=crop)))
    flipped = infer(model, images, InferenceOptions(TestProtocol(mode=mode, crop_size=crop,
                                                                 flip=True)))
    torch.testing.assert_close(flipped, plain, rtol=1e-5, atol=1e-6)


def test_flip_averages_the_logits_of_both_views():
    model = context_model()
    images = torch.randn(1, 3, 19, 23)
    got = infer(model, images, InferenceOptions(TestProtocol(flip=True)))
    plain = model(images)["out"]
    mirrored = model(images.flip(-1))["out"].flip(-1)
    torch.testing.assert_close(got, ((plain + mirrored) / 2).softmax(1))


@pytest.mark.parametrize("size", [(17, 31), (32, 48)])
def test_multiscale_averages_resized_probabilities(size):
    model = context_model()
    images = torch.randn(2, 3, *size)
    scales = (0.5, 1.0, 1.75)
    got = infer(model, images, InferenceOptions(TestProtocol(scales=scales)))
    expected = torch.zeros_like(got)
    for s in scales:
        scaled_size = (round(size[0] * s), round(size[1] * s))
        x = F.interpolate(images, size=scaled_size, mode="bilinear", align_corners=False)
        logits = model(x)["out"]
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        expected += logits.softmax(1) / len(scales)
    assert got.shape == (2, 4, *size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(1), torch.ones(2, *size))


def test_multiscale_slide_odd_sizes_and_predict_dtype():
    model = context_model()
    images = torch.randn(1, 3, 25, 39)
    options = InferenceOptions(TestProtocol(mode="slide", crop_size=(16, 16),
                                            scales=DEFAULT_MS_SCALES, flip=True))
    probs = infer(model, images, options)
    assert probs.shape == (1, 4, 25, 39)
    labels = predict(model, images, options)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 25, 39)
    torch.testing.assert_close(labels.long(), probs.argmax(1))


def test_single_scale_predict_is_argmax_of_logits():
    model = context_model()
    images = torch.randn(1, 3, 15, 15)
    torch.testing.assert_close(predict(model, images).long(), model(images)["out"].argmax(1))


def test_bad_options_and_shapes_raise_clear_errors():
    with pytest.raises(GsbenchError, match="crop"):
        InferenceOptions(TestProtocol(mode="slide"))
    with pytest.raises(GsbenchError, match="mode"):
        TestProtocol(mode="tiles")
    with pytest.raises(GsbenchError, match="scales"):
        TestProtocol(scales=())
    with pytest.raises(GsbenchError, match="shape"):
        infer(pointwise_model(), torch.randn(3, 8, 8))

    class WrongSize(nn.Module):
        def forward(self, x):
            return {"out": x[:, :, ::2, ::2]}

    with pytest.raises(GsbenchError, match="input resolution"):
        infer_whole(WrongSize(), torch.randn(1, 3, 8, 8))


def test_parse_scales():
    assert parse_scales("0.5,1.0, 1.5") == (0.5, 1.0, 1.5)
    assert parse_scales([1, 2]) == (1.0, 2.0)
    with pytest.raises(GsbenchError, match="scales"):
        parse_scales("0.5,x")
    with pytest.raises(GsbenchError, match="scales"):
        parse_scales("0,1")


# --- Cityscapes test-server export ----------------------------------------------------------------


def test_cityscapes_export_names_and_label_ids_match_the_official_scripts(tmp_path):
    from types import SimpleNamespace

    import cv2
    getPrediction = pytest.importorskip(
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling").getPrediction
    trainId2label = pytest.importorskip("cityscapesscripts.helpers.labels").trainId2label

    from gsbench.engine.export import write_cityscapes_result

    rng = np.random.default_rng(0)
    train_ids = rng.integers(0, 19, size=(6, 9), dtype=np.uint8)
    train_ids[0, 0] = 255
    path = write_cityscapes_result(tmp_path, "berlin_000123_000019", train_ids)
    assert path.name == "berlin_000123_000019_leftImg8bit.png"
    # The official evaluator finds the result for the ground truth file of the same image.
    args = SimpleNamespace(predictionPath=str(tmp_path), predictionWalk=None)
    gt = "gtFine/test/berlin/berlin_000123_000019_gtFine_labelIds.png"
    assert getPrediction(args, gt) == str(path)
    label_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    expected = np.vectorize(lambda t: 0 if t == 255 else trainId2label[int(t)].id)(train_ids)
    np.testing.assert_array_equal(label_ids, expected)


def test_cityscapes_export_rejects_bad_stems_and_ids(tmp_path):
    from gsbench.engine.export import train_ids_to_label_ids, write_cityscapes_result

    with pytest.raises(GsbenchError, match="stem"):
        write_cityscapes_result(tmp_path, "image_0001", np.zeros((2, 2), np.uint8))
    with pytest.raises(GsbenchError, match="19"):
        train_ids_to_label_ids(np.full((2, 2), 19, np.uint8))
    with pytest.raises(GsbenchError, match="uint8"):
        train_ids_to_label_ids(np.zeros((2, 2), np.int64))
    assert list(tmp_path.iterdir()) == []


# --- gsbench eval RUN_DIR|CHECKPOINT ----------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny synthetic Cityscapes dataset, prepared, with an extra label-free 'test' split."""
    from dataclasses import replace

    from gsbench.data.manifest import Manifest
    from gsbench.data.prepare import prepare_raw
    from gsbench.data.synthetic import generate_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    root = generate_synthetic(out, n_train=1, n_val=2, size=(64, 128), workers=1, progress=False)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    manifest.splits["test"] = [
        replace(s, label=None, edge=None, instance=None, sha256={}) for s in manifest.split("val")
    ]
    manifest.save()
    return Manifest.load(manifest.root)


def make_run(run_dir, *, model="fcn", num_classes=19, seed=0, stored_recipe=True):
    """A run folder as `gsbench train` leaves it: recipe.yaml and checkpoints/final.pt."""
    from gsbench.engine.checkpoint import save_checkpoint
    from gsbench.io import atomic_write_text
    from gsbench.recipes import build_model_from_recipe, load_recipe

    recipe = load_recipe(f"{model}101-smoke", [f"data.num_classes={num_classes}"])
    torch.manual_seed(seed)
    net = build_model_from_recipe(recipe)
    atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    state = {"kind": "model", "iteration": 7, "model": net.state_dict()}
    if stored_recipe:
        state["recipe"] = recipe.to_dict()
    save_checkpoint(run_dir / "checkpoints" / "final.pt", state)
    return recipe, net.eval()


def test_evaluate_model_matches_scoring_the_saved_predictions(prepared, tmp_path):
    from gsbench.data.transforms import Pair, eval_transform
    from gsbench.evaluation.model import evaluate_model, load_model_for_eval
    from gsbench.evaluation.pred_dir import evaluate_prediction_dir
    from gsbench.io import read_label, read_rgb

    run = tmp_path / "run"
    _, net = make_run(run)
    loaded = load_model_for_eval(run)
    assert loaded.checkpoint == run / "checkpoints" / "final.pt" and loaded.iteration == 7
    preds = tmp_path / "preds"
    metrics = evaluate_model(loaded, prepared.root, split="val", save_pred_dir=preds)
    assert metrics["inference"]["mode"] == "whole" and metrics["num_images"] == 2
    # The same accumulator over the written PNGs gives the same numbers.
    scored = evaluate_prediction_dir(preds, prepared.root, split="val", workers=1)
    for key in ("miou", "pixel_acc", "per_class_iou", "boundary_f", "crop_miou"):
        assert metrics[key] == scored[key], key
    # Each saved map is the argmax of the model on the normalised image.
    for sample in prepared.split("val"):
        image = eval_transform()(Pair(read_rgb(prepared.path(sample.image))), None).image
        expected = net(image[None])["out"].argmax(1)[0].numpy()
        np.testing.assert_array_equal(read_label(preds / f"{sample.stem}.png"), expected)


def test_checkpoint_file_and_run_dir_give_the_same_metrics(prepared, tmp_path):
    from gsbench.engine.inference import InferenceOptions
    from gsbench.evaluation.model import evaluate_model, load_model_for_eval

    run = tmp_path / "run"
    make_run(run, stored_recipe=True)
    options = InferenceOptions(TestProtocol(mode="slide", crop_size=(48, 48), scales=(0.75,),
                                            flip=True))
    by_dir = evaluate_model(load_model_for_eval(run), prepared.root, options=options, radii=(3,), crop_factors=())
    alone = tmp_path / "alone.pt"
    alone.write_bytes((run / "checkpoints" / "final.pt").read_bytes())
    loaded = load_model_for_eval(alone)  # no recipe.yaml beside it: the stored recipe is used
    assert loaded.run_dir is None
    by_file = evaluate_model(loaded, prepared.root, options=options, radii=(3,), crop_factors=())
    assert by_file["miou"] == by_dir["miou"]
    assert by_dir["inference"] == {
        "procedure": "gsbench", "mode": "slide", "crop_size": [48, 48], "stride": [32, 32],
        "scales": [0.75], "flip": True, "base_size": None, "align_corners": False,
        "semantics": TestProtocol().info.describe()}


def test_cityscapes_export_of_a_split_without_ground_truth(prepared, tmp_path):
    from gsbench.data.cityscapes import CITYSCAPES_TRAIN_TO_LABEL
    from gsbench.evaluation.model import evaluate_model, load_model_for_eval
    from gsbench.io import read_label

    run = tmp_path / "run"
    make_run(run)
    loaded = load_model_for_eval(run)
    with pytest.raises(GsbenchError, match="no ground truth"):
        evaluate_model(loaded, prepared.root, split="test")
    with pytest.raises(GsbenchError, match="--out-dir"):
        evaluate_model(loaded, prepared.root, split="test", export="cityscapes")
    export, preds = tmp_path / "export", tmp_path / "preds"
    result = evaluate_model(loaded, prepared.root, split="test", export="cityscapes",
                            export_dir=export, save_pred_dir=preds)
    assert result is None
    stems = [s.stem for s in prepared.split("test")]
    assert sorted(p.name for p in export.iterdir()) == sorted(f"{s}_leftImg8bit.png" for s in stems)
    for stem in stems:
        train_ids = read_label(preds / f"{stem}.png")
        np.testing.assert_array_equal(
            read_label(export / f"{stem}_leftImg8bit.png"), CITYSCAPES_TRAIN_TO_LABEL[train_ids]
        )


def test_missing_and_mismatched_checkpoints_are_clear_errors(prepared, tmp_path):
    from gsbench.evaluation.model import evaluate_model, load_model_for_eval
    from gsbench.io import atomic_write_text

    with pytest.raises(GsbenchError, match="no such run folder"):
        load_model_for_eval(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GsbenchError, match="final.pt"):
        load_model_for_eval(tmp_path / "empty")
    # Weights of another model under this run's recipe.
    run, other = tmp_path / "run", tmp_path / "other"
    make_run(run, model="fcn")
    recipe, _ = make_run(other, model="pspnet")
    atomic_write_text(run / "recipe.yaml", recipe.to_yaml())
    with pytest.raises(GsbenchError, match="do not fit recipe 'pspnet101-smoke'.*missing"):
        load_model_for_eval(run)
    # Same model, different number of classes: a shape mismatch.
    wrong = tmp_path / "wrong"
    make_run(wrong, num_classes=19)
    narrow, _ = make_run(tmp_path / "narrow", num_classes=5)
    atomic_write_text(wrong / "recipe.yaml", narrow.to_yaml())
    with pytest.raises(GsbenchError, match="size mismatch"):
        load_model_for_eval(wrong)
    # A model for 5 classes on a 19-class dataset.
    with pytest.raises(GsbenchError, match="19 classes"):
        evaluate_model(load_model_for_eval(tmp_path / "narrow"), prepared.root)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GsbenchError, match="garbage.pt"):
        load_model_for_eval(garbage)


def test_cli_eval_run_dir_writes_metrics_into_the_run(prepared, tmp_path):
    import json

    from typer.testing import CliRunner

    from gsbench.cli import app

    run = tmp_path / "run"
    make_run(run)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(run), "--data", str(prepared.root), "--flip",
                                 "--radii", "3", "--crop-factors", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    folder = run / "eval" / "val_ss_flip"
    # the metrics, and the prediction panels of `gsbench eval --show` (default 4 images)
    assert {p.name for p in folder.iterdir()} == {"metrics.json", "metrics.csv", "metrics.md",
                                                   "panels"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["inference"]["flip"] is True
    result = runner.invoke(app, ["eval", str(run), "--pred-dir", str(tmp_path), "--data", str(prepared.root)])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "missing"), "--data", str(prepared.root)])
    assert result.exit_code == 2 and "no such run folder" in result.output


def test_cli_eval_follows_the_recipes_test_protocol_unless_told_otherwise(prepared, tmp_path):
    """A run whose recipe records semseg's protocol (an imported checkpoint does) is evaluated
    with it by default; options change it; --procedure starts from a procedure's defaults."""
    import json

    import yaml
    from typer.testing import CliRunner

    from gsbench.cli import app

    run = tmp_path / "run"
    make_run(run)
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["test"] = {"procedure": "semseg", "crop_size": [48, 48], "base_size": [128]}
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    common = ["eval", str(run), "--data", str(prepared.root), "--radii", "none",
              "--crop-factors", "none", "--quiet"]
    for extra, folder, procedure in (
            ([], "val_ss_flip_slide-48_semseg_b128", "semseg"),
            (["--no-flip", "--scales", "0.75,1.0"], "val_ms-0.75-1.0_slide-48_semseg_b128",
             "semseg"),
            (["--procedure", "gsbench"], "val_ss", "gsbench"),
            (["--procedure", "mmseg", "--slide", "--crop", "40", "--stride", "20,30"],
             "val_ss_slide-40-s20x30_mmseg", "mmseg")):
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
        inference = json.loads((run / "eval" / folder / "metrics.json").read_text())["inference"]
        assert inference["procedure"] == procedure
    semseg = json.loads((run / "eval" / "val_ss_flip_slide-48_semseg_b128" / "metrics.json")
                        .read_text())["inference"]
    assert semseg["crop_size"] == [48, 48] and semseg["stride"] == [32, 32]
    assert semseg["semantics"]["padding"] == "centre" and semseg["flip"] is True
    for bad, message in ((["--procedure", "semseg", "--whole"], "runs slide"),
                         (["--crop", "0"], "--crop"), (["--base-size", "1,2,3"], "--base-size"),
                         (["--procedure", "gsbench", "--align-corners"], "mmseg's"),
                         (["--batch", "0"], "--batch")):
        result = runner.invoke(app, [*common, *bad])
        assert result.exit_code == 2 and message in result.output, result.output
