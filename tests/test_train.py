"""Transforms, dataset and the training engine on a tiny prepared dataset written per test."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.dataset import SegmentationDataset
from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import Manifest, Sample
from gsbench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MEAN_RGB_UINT8,
    ColorJitter,
    Compose,
    HorizontalFlip,
    Normalize,
    Pair,
    RandomCrop,
    RandomRotate,
    RandomScale,
    RandomScaleRotateCrop,
    train_transform,
)
from gsbench.engine.checkpoint import load_checkpoint, load_model_weights
from gsbench.engine.run_dir import load_run_recipe
from gsbench.engine.train import param_groups, poly_lr, train
from gsbench.errors import GsbenchError
from gsbench.io import read_label, write_png
from gsbench.recipes import list_recipes, load_recipe

NUM_CLASSES = 19


def make_prepared_dataset(root: Path, num_train: int = 4, num_val: int = 2, height: int = 40,
                          width: int = 56, seed: int = 0) -> Path:
    """A prepared folder (manifest + PNGs) with a few images whose colours follow their labels."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", num_train), ("val", num_val)):
        samples = []
        for i in range(count):
            stem = f"{split}_{i:03d}"
            label = np.zeros((height, width), np.uint8)
            label[:, width // 2:] = 1 + i % (NUM_CLASSES - 1)
            label[: height // 4] = 2
            label[0, :5] = IGNORE_INDEX
            noise = rng.integers(0, 60, (height, width, 3))
            image = ((noise + 40 * label[..., None].astype(np.int64)) % 256).astype(np.uint8)
            edge = np.zeros((height, width), np.uint8)
            edge[:, width // 2] = 1
            for folder, array in (("images", image), ("labels", label), ("edges", edge)):
                write_png(root / folder / f"{stem}.png", array)
            samples.append(Sample(stem, f"images/{stem}.png", f"labels/{stem}.png",
                                  f"edges/{stem}.png", None, height, width))
        splits[split] = samples
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    Manifest("cityscapes", NUM_CLASSES, names, IGNORE_INDEX, splits, root).save()
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_prepared_dataset(tmp_path_factory.mktemp("prepared"))


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- transforms -----------------------------------------------------------------------------------


def test_crop_pads_image_with_mean_label_with_ignore_edge_with_zero():
    image = np.full((3, 4, 3), 7, np.uint8)
    label = np.ones((3, 4), np.uint8)
    edge = np.ones((3, 4), np.uint8)
    out = RandomCrop(5, 6)(Pair(image, label, edge), np.random.default_rng(0))
    expected_image = np.empty((5, 6, 3), np.uint8)
    expected_image[:] = MEAN_RGB_UINT8
    expected_image[:3, :4] = 7
    expected_label = np.full((5, 6), IGNORE_INDEX, np.uint8)
    expected_label[:3, :4] = 1
    expected_edge = np.zeros((5, 6), np.uint8)
    expected_edge[:3, :4] = 1
    assert np.array_equal(out.image, expected_image)
    assert np.array_equal(out.label, expected_label) and np.array_equal(out.edge, expected_edge)


def test_crop_takes_one_window_from_image_and_targets():
    image = np.arange(10 * 12 * 3, dtype=np.int64).reshape(10, 12, 3).astype(np.uint8)
    label = np.arange(10 * 12).reshape(10, 12).astype(np.uint8)
    for seed in range(5):
        out = RandomCrop(4, 5)(Pair(image, label, label.copy()), np.random.default_rng(seed))
        top, left = np.argwhere(label == out.label[0, 0])[0]
        assert np.array_equal(out.image, image[top:top + 4, left:left + 5])
        assert np.array_equal(out.edge, out.label)


def test_flip_mirrors_image_and_targets_together():
    image = np.random.default_rng(0).integers(0, 255, (4, 6, 3)).astype(np.uint8)
    label = np.arange(24, dtype=np.uint8).reshape(4, 6)
    flipped = HorizontalFlip(prob=1.0)(Pair(image, label, label), np.random.default_rng(0))
    assert np.array_equal(flipped.image, image[:, ::-1]) and np.array_equal(flipped.label, label[:, ::-1])
    kept = HorizontalFlip(prob=0.0)(Pair(image, label, label), np.random.default_rng(0))
    assert kept.image is image


def test_scale_resizes_labels_with_nearest_only():
    label = np.random.default_rng(1).integers(0, 19, (20, 30)).astype(np.uint8)
    image = np.zeros((20, 30, 3), np.uint8)
    out = RandomScale(1.5, 1.5)(Pair(image, label, None), np.random.default_rng(0))
    assert out.image.shape == (30, 45, 3) and out.label.shape == (30, 45) and out.edge is None
    assert set(np.unique(out.label)) <= set(np.unique(label))


def test_rotation_fills_uncovered_corners_with_ignore():
    image = np.full((40, 40, 3), 200, np.uint8)
    label = np.zeros((40, 40), np.uint8)
    rotate = RandomRotate(10)
    out = rotate(Pair(image, label, label), np.random.default_rng(3))
    angle = np.random.default_rng(3).uniform(-10, 10)
    assert abs(angle) > 1
    assert out.label[0, 0] == IGNORE_INDEX and out.label[20, 20] == 0 and out.edge[0, 0] == 0
    assert tuple(out.image[0, 0]) == MEAN_RGB_UINT8 and tuple(out.image[20, 20]) == (200, 200, 200)


def test_normalize_is_imagenet_standardisation():
    image = np.random.default_rng(0).integers(0, 255, (3, 5, 3)).astype(np.uint8)
    out = Normalize()(Pair(image))
    for c in range(3):
        expected = (image[..., c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert np.allclose(out.image[c].numpy(), expected, atol=1e-6)


def test_color_jitter_matches_the_float_formula_within_rounding():
    image = np.random.default_rng(2).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    luma = np.array([0.299, 0.587, 0.114])
    for seed in range(5):
        got = ColorJitter(0.4)(Pair(image), np.random.default_rng(seed)).image
        b, c, s = np.random.default_rng(seed).uniform(0.6, 1.4, size=3)
        x = image.astype(np.float64) * b
        x = (x - (x @ luma).mean()) * c + (x @ luma).mean()
        grey = (x @ luma)[..., None]
        expected = np.clip(np.round((x - grey) * s + grey), 0, 255)
        assert np.abs(got.astype(np.float64) - expected).max() <= 1


def smooth_image_and_blocks(height=120, width=160):
    """20x20 label blocks and an image of coloured blocks with slightly softened edges."""
    label = (np.arange(height)[:, None] // 20 * 8 + np.arange(width)[None] // 20).astype(np.uint8)
    image = cv2.GaussianBlur(cv2.applyColorMap(label * 3, cv2.COLORMAP_JET), (0, 0), 1.0)
    return image, label


def test_fused_scale_rotate_crop_is_exact_crop_at_scale_one():
    image, label = smooth_image_and_blocks()
    sequential = Compose([RandomScale(1, 1), RandomCrop(64, 80)])
    fused = RandomScaleRotateCrop((1, 1), 0, (64, 80))
    for seed in range(10):
        a = sequential(Pair(image, label, label), np.random.default_rng(seed))
        b = fused(Pair(image, label, label), np.random.default_rng(seed))
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)


@pytest.mark.parametrize("degrees, scales, crop", [(0, (0.5, 2.0), (64, 80)), (10, (0.5, 2.0), (64, 80)),
                                                   (10, (0.5, 0.7), (100, 120))])  # last one pads
def test_fused_scale_rotate_crop_matches_the_sequential_steps(degrees, scales, crop):
    """Same draws, same geometry; only interpolation rounding differs (one resampling, not two)."""
    image, label = smooth_image_and_blocks()
    steps = [RandomScale(*scales)] + ([RandomRotate(degrees)] if degrees else []) + [RandomCrop(*crop)]
    sequential, fused = Compose(steps), RandomScaleRotateCrop(scales, degrees, crop)
    for seed in range(20):
        a = sequential(Pair(image, label, label), np.random.default_rng(seed))
        b = fused(Pair(image, label, label), np.random.default_rng(seed))
        assert (a.label == b.label).mean() > 0.93  # nearest-neighbour ties at block borders
        assert abs(int((a.label == IGNORE_INDEX).sum()) - int((b.label == IGNORE_INDEX).sum())) <= 3
        # measured <= 0.36; a half-pixel misalignment gives >= 0.63
        assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 0.5


# --- dataset --------------------------------------------------------------------------------------


def test_dataset_items_and_determinism(data_root):
    recipe = load_recipe("psanet101-smoke")
    manifest = Manifest.load(data_root)
    dataset = SegmentationDataset(manifest, "train", train_transform(recipe.data), seed=5)
    item = dataset[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    assert item["edge"].dtype == torch.float32 and item["stem"] == "train_001"
    again = SegmentationDataset(manifest, "train", train_transform(recipe.data), seed=5)[1]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["label"], again["label"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["image"], item["image"])  # a new draw each epoch
    labels = set(torch.unique(item["label"]).tolist())
    assert labels <= {0, 1, 2, IGNORE_INDEX}


def test_dataset_items_do_not_depend_on_workers(data_root):
    recipe = load_recipe("fcn101-smoke")
    dataset = SegmentationDataset(Manifest.load(data_root), "train", train_transform(recipe.data), seed=1)
    single = list(DataLoader(dataset, batch_size=2, num_workers=0))
    workers = list(DataLoader(dataset, batch_size=2, num_workers=2))
    for a, b in zip(single, workers):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_dataset_keeps_a_small_split_decoded_and_the_items_are_unchanged(data_root, monkeypatch):
    """A split that fits in DECODE_CACHE_BYTES is decoded once per process; the kept arrays are
    read-only, and every transform of a full augmentation (scale, rotation, blur, colour
    jitter, crop, flip) leaves them as they were: two epochs of items equal those of a dataset
    that decodes every item."""
    import gsbench.data.dataset as dataset_module

    manifest = Manifest.load(data_root)
    transform = train_transform(load_recipe("psanet101-smoke").data)
    kept = SegmentationDataset(manifest, "train", transform, seed=5)
    kept[0]  # decides to keep the split: it fits
    monkeypatch.setattr(dataset_module, "DECODE_CACHE_BYTES", 0)
    decoded = SegmentationDataset(manifest, "train", transform, seed=5)
    for epoch in (0, 1):
        for index in range(len(kept)):
            a, b = kept[epoch, index], decoded[epoch, index]
            for key in ("image", "label", "edge"):
                assert torch.equal(a[key], b[key]), (epoch, index, key)
    assert len(kept._kept) == len(kept) and not decoded._kept
    image, label, edge = kept._kept[0]
    assert not (image.flags.writeable or label.flags.writeable or edge.flags.writeable)
    # the budget holds item by item too (a later image larger than the first one)
    first_size = sum(a.nbytes for a in kept._kept[0])
    monkeypatch.setattr(dataset_module, "DECODE_CACHE_BYTES", first_size * len(kept))
    bounded = SegmentationDataset(manifest, "train", transform, seed=5)
    bounded._kept_bytes = first_size * (len(kept) - 2)  # as if larger items came first
    for index in range(len(bounded)):
        bounded[index]
    assert len(bounded._kept) == 2


def test_dataset_names_a_label_value_outside_the_classes(tmp_path):
    root = make_prepared_dataset(tmp_path / "data")
    manifest = Manifest.load(root)
    path = manifest.path(manifest.split("train")[1].label)
    label = read_label(path)
    label[5:9, 5:9] = 40
    write_png(path, label)
    with pytest.raises(GsbenchError, match=f"{path}: label value 40 is not a trainId in 0..18 "
                                           "nor the ignore index 255"):
        SegmentationDataset(manifest, "train")[1]


def test_dataset_without_split_is_an_error(data_root):
    with pytest.raises(GsbenchError, match="no split 'test'"):
        SegmentationDataset(Manifest.load(data_root), "test")


# --- engine pieces --------------------------------------------------------------------------------


def test_poly_lr_and_head_multiplier():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    model.head = nn.Linear(2, 3)
    groups = param_groups(model, 10.0)
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert [len(g["params"]) for g in groups] == [2, 2]


# --- training runs --------------------------------------------------------------------------------

SMOKE = [n for n in list_recipes() if n.endswith("-smoke")]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", SMOKE)
def test_every_smoke_recipe_trains_two_iterations(name, data_root, tmp_path):
    torch.set_num_threads(1)
    recipe = load_recipe(name, ["train.iterations=2", "train.val_every=0", "train.log_every=1"])
    result = train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    assert result.finished and result.iteration == 2
    assert [row["iter"] for row in result.log] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in result.log)
    assert (tmp_path / "run" / "checkpoints" / "final.pt").is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_training_sets_the_poly_learning_rate(data_root, tmp_path):
    recipe = load_recipe("fcn101-smoke", ["train.iterations=3", "train.log_every=1"])
    result = train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    cfg = recipe.train  # the logged lr is the backbone's (multiplier 1), set before each step
    assert [row["lr"] for row in result.log] == [
        poly_lr(cfg.lr, i, cfg.iterations, cfg.poly_power) for i in range(cfg.iterations)
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_channels_last_trains_on_cpu_like_the_plain_layout(data_root, tmp_path):
    torch.set_num_threads(1)
    losses, weights = {}, {}
    for flag in (True, False):
        # no dropout: its random mask is drawn in memory order, so it differs between layouts
        recipe = load_recipe("pspnet101-smoke", ["train.iterations=1", "train.val_every=0",
                                                 "train.log_every=1", "model.dropout=0",
                                                 f"train.channels_last={str(flag).lower()}"])
        result = train(recipe, tmp_path / str(flag), data_root=data_root, quiet=True)
        losses[flag] = [row["loss"] for row in result.log]
        weights[flag] = load_checkpoint(tmp_path / str(flag) / "checkpoints" / "final.pt")["model"]
    conv = "decode_head.bottleneck.0.weight"
    assert weights[True][conv].is_contiguous(memory_format=torch.channels_last)  # NHWC on a CPU too
    assert weights[False][conv].is_contiguous()
    # the same model and batch: the same loss up to float32 summation order
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_run_folder_contents_and_safe_checkpoints(data_root, tmp_path):
    recipe = load_recipe("fcn101-smoke", ["train.iterations=4", "train.val_every=2", "train.log_every=2",
                                          "train.checkpoint_every=2"])
    run = tmp_path / "run"
    result = train(recipe, run, data_root=data_root, quiet=True, command=["gsbench", "train"])
    names = {p.name for p in run.iterdir()}
    assert {"recipe.yaml", "command.txt", "versions.json", "seed.txt", "log.csv", "metrics.json",
            "checkpoints"} <= names
    saved = load_recipe(str(run / "recipe.yaml"))
    assert saved.data.root == str(data_root.resolve())  # resuming needs no --data
    assert saved.to_dict() | {"data": None} == recipe.to_dict() | {"data": None}
    header, *rows = (run / "log.csv").read_text().splitlines()
    assert header.split(",")[:4] == ["iter", "epoch", "lr", "loss"] and "ce" in header and "val_miou" in header
    assert [r.split(",")[0] for r in rows] == ["2", "4"]
    assert 0.0 <= result.metrics["miou"] <= 1.0
    # weights_only=True: the checkpoint holds only tensors and plain values
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 4 and set(state["rng"]) >= {"python", "numpy", "torch"}
    assert weights_equal(load_model_weights(run), state["model"])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_interrupted_and_resumed_run_matches_uninterrupted_bitwise(data_root, tmp_path):
    torch.set_num_threads(1)
    overrides = ["train.iterations=5", "train.checkpoint_every=2", "train.log_every=1"]
    recipe = load_recipe("psanet101-smoke", overrides)  # dropout, aux head, rotation, blur, jitter
    whole = train(recipe, tmp_path / "whole", data_root=data_root, quiet=True)
    first = train(recipe, tmp_path / "split", data_root=data_root, quiet=True, stop_after=3)
    assert not first.finished and first.iteration == 3
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["iteration"] == 3
    second = train(recipe, tmp_path / "split", data_root=data_root, quiet=True, resume=True)
    assert second.finished and second.iteration == 5
    final_whole = load_model_weights(tmp_path / "whole" / "checkpoints" / "final.pt")
    final_split = load_model_weights(tmp_path / "split" / "checkpoints" / "final.pt")
    assert weights_equal(final_whole, final_split)
    assert [r["loss"] for r in whole.log] == [float(r["loss"]) for r in second.log]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_class_uniform_run_resumes_bitwise(data_root, tmp_path):
    """data.class_uniform: the per-epoch plan is rebuilt on resume (3 epochs of 2 batches here)."""
    torch.set_num_threads(1)
    overrides = ["train.iterations=5", "train.checkpoint_every=2", "train.log_every=1",
                 "data.class_uniform=0.5"]
    recipe = load_recipe("psanet101-smoke", overrides)
    whole = train(recipe, tmp_path / "whole", data_root=data_root, quiet=True)
    train(recipe, tmp_path / "split", data_root=data_root, quiet=True, stop_after=3)
    second = train(recipe, tmp_path / "split", data_root=data_root, quiet=True, resume=True)
    assert second.finished and [r["loss"] for r in whole.log] == [float(r["loss"]) for r in second.log]
    assert weights_equal(load_model_weights(tmp_path / "whole" / "checkpoints" / "final.pt"),
                         load_model_weights(tmp_path / "split" / "checkpoints" / "final.pt"))
    assert load_run_recipe(tmp_path / "split").data.class_uniform == 0.5
    plain = train(load_recipe("psanet101-smoke", overrides[:-1]), tmp_path / "plain",
                  data_root=data_root, quiet=True)
    assert [r["loss"] for r in plain.log] != [r["loss"] for r in whole.log]  # the option is used


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_exploding_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path):
    recipe = load_recipe("fcn101-smoke", ["train.lr=1e6", "train.iterations=20", "train.checkpoint_every=1",
                                          "train.val_every=0"])
    with pytest.raises(GsbenchError, match=r"loss is (nan|inf) at iteration \d+; training stopped") as info:
        train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert f"(iteration {state['iteration']}) is the last good checkpoint" in str(info.value)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "checkpoints" / "final.pt").exists()


def test_run_folder_is_never_overwritten(data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    recipe = load_recipe("fcn101-smoke")
    with pytest.raises(GsbenchError, match="run folder is not empty; pass --resume"):
        train(recipe, run, data_root=data_root, quiet=True)
    with pytest.raises(GsbenchError, match="cannot resume, recipe.yaml is missing"):
        train(recipe, run, data_root=data_root, quiet=True, resume=True)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_dataset_must_match_the_recipe(data_root, tmp_path):
    recipe = load_recipe("fcn101_ade20k")
    with pytest.raises(GsbenchError, match="dataset has 19 classes but the recipe's data.num_classes is 150"):
        train(recipe, tmp_path / "run", data_root=data_root, quiet=True)
    with pytest.raises(GsbenchError, match="pass --data DIR"):
        train(load_recipe("fcn101-smoke"), tmp_path / "run2", quiet=True)


# --- command line ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cli_train_resume_and_errors(data_root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--recipe", "fcn101-smoke", "--data", str(data_root), "--out", str(out),
            "--set", "train.iterations=3", "--set", "train.val_every=0"]
    result = runner.invoke(app, [*args, "--stop-after", "2"])
    assert result.exit_code == 0, result.output
    assert "stopped at iteration 2" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "not empty; pass --resume" in again.output
    resumed = runner.invoke(app, ["train", "--out", str(out), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "checkpoints" / "final.pt")["iteration"] == 3
    assert len((out / "command.txt").read_text().splitlines()) == 2
    same = runner.invoke(app, ["train", "--recipe", "fcn101-smoke", "--set", "train.iterations=3",
                               "--set", "train.val_every=0", "--out", str(out), "--resume", "--quiet"])
    assert same.exit_code == 0, same.output  # naming the same recipe again is fine
    changed = runner.invoke(app, ["train", "--out", str(out), "--resume", "--set", "train.lr=0.5"])
    assert changed.exit_code == 2 and "differ from the run's recipe" in changed.output
    typo = runner.invoke(app, ["train", "--recipe", "fcn101-smoke", "--set", "train.lrr=1"])
    assert typo.exit_code == 2 and "closest valid key: 'train.lr'" in typo.output
