"""Class-uniform crop sampling (recipe key data.class_uniform, gsbench.data.uniform) on tiny
synthetic splits where every class occupies one known small patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import gsbench.data.dataset as dataset_module
import gsbench.data.uniform as uniform
from gsbench.data.dataset import SegmentationDataset
from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import MANIFEST_NAME, Manifest, Sample
from gsbench.data.transforms import (
    Compose, HorizontalFlip, Pair, RandomCrop, RandomRotate, RandomScale, RandomScaleRotateCrop,
    train_transform,
)
from gsbench.data.uniform import ClassPixelIndex, build_class_index, plan_epoch
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_json, read_json, read_label, read_rgb, write_png
from gsbench.recipes import DataConfig, list_recipes, load_recipe

NUM_CLASSES = 19
HEIGHT, WIDTH, PATCH = 64, 96, 8
NUM_IMAGES = 12
PATCH_CLASSES = (1, 2, 3, 4)  # image i has a patch of PATCH_CLASSES[i % 4] ...
RARE_CLASS, RARE_IMAGE = 7, 5  # ... except image 5, whose only patch is the rare class
PRESENT = (0, 1, 2, 3, 4, 7)  # 0 is the background of every image


def patch_of(i: int) -> tuple[int, int, int]:
    """(class, top, left) of image i's patch."""
    rng = np.random.default_rng(100 + i)
    top, left = int(rng.integers(1, HEIGHT - PATCH)), int(rng.integers(0, WIDTH - PATCH))
    return (RARE_CLASS if i == RARE_IMAGE else PATCH_CLASSES[i % 4]), top, left


def make_split(root: Path, prepared: bool = False) -> Path:
    """A prepared folder: background 0, one 8x8 patch per image, an ignored first row."""
    samples = []
    for i in range(NUM_IMAGES):
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        label[0] = IGNORE_INDEX
        cls, top, left = patch_of(i)
        label[top:top + PATCH, left:left + PATCH] = cls
        image = np.stack([label, 255 - label, np.full_like(label, 9 * i)], axis=-1)
        stem = f"img_{i:02d}"
        write_png(root / "images" / f"{stem}.png", image)
        write_png(root / "labels" / f"{stem}.png", label)
        samples.append(Sample(stem, f"images/{stem}.png", f"labels/{stem}.png", None, None,
                              HEIGHT, WIDTH))
    Manifest("cityscapes", NUM_CLASSES, [f"c{i}" for i in range(NUM_CLASSES)], IGNORE_INDEX,
             {"train": samples}, root).save()
    if prepared:  # as written by gsbench prepare-data
        document = read_json(root / MANIFEST_NAME)
        document["prepare"] = {"version": 1, "dataset": "cityscapes", "files": {}}
        atomic_write_json(root / MANIFEST_NAME, document)
    return root


@pytest.fixture(scope="module")
def split_root(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("uniform"))


def config(**overrides) -> DataConfig:
    values = dict(dataset="cityscapes", num_classes=NUM_CLASSES, crop_size=[24, 24],
                  scale_range=[0.5, 2.0], rotate_degrees=10.0, flip=True)
    return DataConfig(**{**values, **overrides})


def dataset(root: Path, p: float, seed: int = 0, **overrides) -> SegmentationDataset:
    return SegmentationDataset(Manifest.load(root), "train", train_transform(config(**overrides)),
                               seed=seed, with_edges=False, class_uniform=p)


# --- index ----------------------------------------------------------------------------------------


def test_index_counts_every_class_but_not_ignore(split_root):
    index = build_class_index(Manifest.load(split_root), "train")
    expected = np.zeros((NUM_IMAGES, NUM_CLASSES), np.int64)
    for i in range(NUM_IMAGES):
        cls, _, _ = patch_of(i)
        expected[i, cls] = PATCH * PATCH
        expected[i, 0] = (HEIGHT - 1) * WIDTH - PATCH * PATCH  # minus the ignored row
    assert index.counts.dtype == np.int64 and np.array_equal(index.counts, expected)
    assert index.present.tolist() == list(PRESENT)
    assert index.images_with(RARE_CLASS).tolist() == [RARE_IMAGE]
    assert index.cache is None  # a hand-written manifest: nothing is written next to it
    assert sorted(p.name for p in split_root.iterdir()) == ["images", "labels", MANIFEST_NAME]


def test_index_is_cached_in_a_prepared_folder_keyed_by_the_manifest(tmp_path, monkeypatch):
    root = make_split(tmp_path / "prepared", prepared=True)
    first = build_class_index(Manifest.load(root), "train")
    assert first.cache is not None and first.cache.parent == root
    assert first.cache.name.startswith(".class-pixels-") and first.cache.is_file()

    def no_reads(path):
        raise AssertionError(f"read {path} although the index is cached")

    with monkeypatch.context() as m:
        m.setattr(uniform, "read_label", no_reads)
        again = build_class_index(Manifest.load(root), "train")
    assert again.cache == first.cache and np.array_equal(again.counts, first.counts)

    # another manifest (a re-prepared label changes its fingerprints) gets another file
    document = read_json(root / MANIFEST_NAME)
    document["prepare"]["files"] = {"img_00": [1, 2]}
    atomic_write_json(root / MANIFEST_NAME, document)
    changed = build_class_index(Manifest.load(root), "train")
    assert changed.cache != first.cache and np.array_equal(changed.counts, first.counts)

    # a damaged cache file is recomputed and rewritten; a read-only folder keeps it in memory
    changed.cache.write_bytes(b"not an array")
    assert np.array_equal(build_class_index(Manifest.load(root), "train").counts, first.counts)
    assert np.load(changed.cache).shape == (NUM_IMAGES, NUM_CLASSES)
    changed.cache.unlink()

    def read_only(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(uniform, "atomic_write_bytes", read_only)
    in_memory = build_class_index(Manifest.load(root), "train")
    assert in_memory.cache is None and np.array_equal(in_memory.counts, first.counts)


# --- epoch plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize("p, slots", [(1.0, 12), (0.5, 6), (0.75, 9), (0.04, 0)])
def test_plan_spreads_round_p_n_positions_evenly_over_present_classes(split_root, p, slots):
    index = build_class_index(Manifest.load(split_root), "train")
    seen_positions = set()
    for epoch in range(20):
        plan = plan_epoch(index, p, np.random.default_rng(epoch))
        uniform_positions = np.flatnonzero(plan.classes >= 0)
        assert uniform_positions.size == slots
        per_class = np.bincount(plan.classes[uniform_positions], minlength=NUM_CLASSES)
        assert set(np.flatnonzero(per_class)) <= set(PRESENT)
        if slots:
            assert per_class[list(PRESENT)].min() == slots // len(PRESENT)
            assert per_class.max() == -(-slots // len(PRESENT))
        for position in uniform_positions:  # the image drawn for a class contains it
            assert index.counts[plan.images[position], plan.classes[position]] > 0
        ordinary = plan.classes < 0
        assert np.array_equal(plan.images[ordinary], np.flatnonzero(ordinary))
        seen_positions.update(uniform_positions.tolist())
        # without replacement: background (in every image) never repeats an image in an epoch
        background = plan.images[plan.classes == 0]
        assert len(set(background.tolist())) == background.size
    if 0 < slots < NUM_IMAGES:
        assert len(seen_positions) == NUM_IMAGES  # the class-uniform positions change per epoch


# --- crops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scales, degrees", [((0.5, 2.0), 10.0), ((1.0, 1.0), 0.0)])
def test_class_uniform_crop_contains_the_chosen_class(split_root, scales, degrees):
    data = dataset(split_root, 1.0, seed=3, scale_range=list(scales), rotate_degrees=degrees)
    chosen = []
    for epoch in range(6):
        data.set_epoch(epoch)
        for i in range(len(data)):
            source, cls = data.crop_source(i)
            item = data[i]
            assert cls is not None and item["stem"] == f"img_{source:02d}"
            assert item["label"].shape == (24, 24)
            assert (item["label"] == cls).any(), (epoch, i, source, cls)
            chosen.append(cls)
    assert set(chosen) == set(PRESENT)


def test_fraction_is_respected_and_rare_class_crops_become_frequent(split_root):
    def rare_share(p: float) -> float:
        data = dataset(split_root, p, seed=1, scale_range=[1.0, 1.0], rotate_degrees=0.0)
        hits = total = 0
        for epoch in range(30):
            data.set_epoch(epoch)
            for i in range(len(data)):
                hits += int((data[i]["label"] == RARE_CLASS).any())
                total += 1
        return hits / total

    uniform_share, random_share = rare_share(1.0), rare_share(0.0)
    # p = 1: the rare class is chosen for 1/6 of the crops (plus the background crops that land
    # on image 5 and happen to cover its patch); p = 0: image 5 (1/12) and a crop covering the
    # patch (about 0.17 of the positions): about 0.014
    assert 1 / len(PRESENT) <= uniform_share < 1 / len(PRESENT) + 0.05
    assert random_share < 0.04 and uniform_share > 5 * random_share
    half = dataset(split_root, 0.5, seed=1)
    for epoch in range(5):
        half.set_epoch(epoch)
        sources = [half.crop_source(i) for i in range(len(half))]
        assert sum(cls is not None for _, cls in sources) == NUM_IMAGES // 2


def test_p_zero_is_the_plain_dataset_and_ordinary_positions_are_unchanged(split_root, monkeypatch):
    manifest = Manifest.load(split_root)
    transform = train_transform(config())

    def no_index(*args, **kwargs):
        raise AssertionError("p = 0 must not build the class index")

    with monkeypatch.context() as m:
        m.setattr(dataset_module, "build_class_index", no_index)
        plain = SegmentationDataset(manifest, "train", transform, seed=2, with_edges=False)
        zero = SegmentationDataset(manifest, "train", transform, seed=2, with_edges=False,
                                   class_uniform=0.0)
    half = SegmentationDataset(manifest, "train", transform, seed=2, with_edges=False,
                               class_uniform=0.5)
    ordinary = 0
    for epoch in (0, 3):
        for d in (plain, zero, half):
            d.set_epoch(epoch)
        for i in range(len(plain)):
            sample = manifest.split("train")[i]
            # the pre-class-uniform definition of an item: its own image, the (seed, epoch, index)
            # generator, the recipe's transform
            expected = transform(Pair(read_rgb(manifest.path(sample.image)),
                                      read_label(manifest.path(sample.label))),
                                 np.random.default_rng([2, epoch, i]))
            for d in (plain, zero):
                item = d[i]
                assert torch.equal(item["image"], expected.image)
                assert torch.equal(item["label"], torch.from_numpy(expected.label.astype(np.int64)))
                assert d.crop_source(i) == (i, None)
            if half.crop_source(i) == (i, None):  # p > 0 draws nothing extra for these
                ordinary += 1
                assert torch.equal(half[i]["image"], expected.image)
    assert ordinary == NUM_IMAGES  # half of the 12 positions in each of the two epochs


def test_items_do_not_depend_on_workers(split_root):
    data = dataset(split_root, 0.5, seed=4)
    data.set_epoch(2)
    single = list(DataLoader(data, batch_size=4, num_workers=0))
    workers = list(DataLoader(data, batch_size=4, num_workers=2))
    for a, b in zip(single, workers, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert a["stem"] == b["stem"]


# --- transforms with an anchor --------------------------------------------------------------------


def test_crops_always_contain_the_anchor():
    label = np.arange(30 * 40, dtype=np.int64).reshape(30, 40)
    image = np.zeros((30, 40, 3), np.uint8)
    for anchor in [(0, 0), (29, 39), (0, 39), (15, 20), (3, 37)]:
        for seed in range(40):
            out = RandomCrop(8, 12)(Pair(image, label.astype(np.float32), None, anchor),
                                    np.random.default_rng(seed))
            assert (out.label == label[anchor]).any() and out.anchor is None
    # the window starts are uniform over the windows holding the anchor, clamped into the image
    tops = [RandomCrop(8, 12)(Pair(image, label.astype(np.float32), None, (15, 20)),
                              np.random.default_rng(s)).label[0, 0] // 40 for s in range(400)]
    assert set(tops) == set(range(8, 16))


def test_fused_crop_with_anchor_equals_the_sequential_steps_at_scale_one():
    label = (np.arange(60)[:, None] // 10 * 8 + np.arange(80)[None] // 10).astype(np.uint8)
    image = np.repeat(label[..., None] * 5, 3, axis=-1)
    sequential = Compose([RandomScale(1, 1), RandomCrop(16, 24)])
    fused = RandomScaleRotateCrop((1, 1), 0, (16, 24))
    for seed in range(20):
        anchor = (int(seed * 7 % 60), int(seed * 13 % 80))
        a = sequential(Pair(image, label, label, anchor), np.random.default_rng(seed))
        b = fused(Pair(image, label, label, anchor), np.random.default_rng(seed))
        assert np.array_equal(a.label, b.label) and np.array_equal(a.image, b.image)
        assert (b.label == label[anchor]).any()


def test_geometric_steps_move_the_anchor_with_the_image():
    label = (np.arange(40)[:, None] // 5 * 16 + np.arange(64)[None] // 4).astype(np.uint8)
    image = np.zeros((40, 64, 3), np.uint8)
    for anchor in [(2, 3), (21, 30), (39, 63)]:
        value = label[anchor]
        flipped = HorizontalFlip(1.0)(Pair(image, label, None, anchor), np.random.default_rng(0))
        assert flipped.label[flipped.anchor] == value
        for factor in (0.5, 1.5, 2.0):
            scaled = RandomScale(factor, factor)(Pair(image, label, None, anchor), np.random.default_rng(0))
            assert scaled.label[scaled.anchor] == value
        rotated = RandomRotate(8)(Pair(image, label, None, (22, 33)), np.random.default_rng(1))
        assert rotated.label[rotated.anchor] == label[22, 33]


# --- errors and recipes ---------------------------------------------------------------------------


def test_bad_fraction_stale_index_and_unlabelled_split_are_one_line_errors(split_root, tmp_path):
    with pytest.raises(GsbenchError) as info:
        load_recipe("gscnn_wrn38", ["data.class_uniform=1.5"])
    assert str(info.value) == "--set data.class_uniform: data.class_uniform must be in [0, 1], got 1.5"
    with pytest.raises(GsbenchError, match=r"data.class_uniform must be in \[0, 1\], got -0.1"):
        dataset(split_root, -0.1)

    manifest = Manifest.load(split_root)
    counts = np.zeros((NUM_IMAGES, NUM_CLASSES), np.int64)
    counts[:, 9] = 1  # claims class 9, which no label has
    stale = SegmentationDataset(manifest, "train", train_transform(config()), with_edges=False,
                                class_uniform=1.0, class_index=ClassPixelIndex(counts))
    with pytest.raises(GsbenchError, match=r"img_\d\d\.png: no pixel of class 9, though the class-uniform"):
        stale[0]
    with pytest.raises(GsbenchError, match=r"class index of split 'train' has shape \(12, 3\)"):
        SegmentationDataset(manifest, "train", class_uniform=1.0, class_index=ClassPixelIndex(counts[:, :3]))

    blank = tmp_path / "blank"
    write_png(blank / "i.png", np.zeros((8, 8, 3), np.uint8))
    write_png(blank / "l.png", np.full((8, 8), IGNORE_INDEX, np.uint8))
    Manifest("cityscapes", NUM_CLASSES, [f"c{i}" for i in range(NUM_CLASSES)], IGNORE_INDEX,
             {"train": [Sample("s", "i.png", "l.png", None, None, 8, 8)]}, blank).save()
    with pytest.raises(GsbenchError, match="split 'train' has no labelled pixel of any class"):
        SegmentationDataset(Manifest.load(blank), "train", class_uniform=0.5)


def test_only_the_test_server_recipe_samples_class_uniformly():
    users = {name for name in list_recipes() if load_recipe(name).data.class_uniform}
    assert users == {"gscnn_wrn38_test"}
