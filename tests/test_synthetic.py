"""The built-in synthetic dataset: raw Cityscapes / ADE20K layout, label consistency (checked
against cityscapesscripts' own polygon rasteriser), class quotas, determinism, perspective."""

import json
import re
import time

import cv2
import numpy as np
from PIL import Image
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.ade20k import ADE20K_CLASS_NAMES
from gsbench.data.cityscapes import (
    CITYSCAPES_LABEL_BY_NAME, CITYSCAPES_LABEL_TO_TRAIN, CITYSCAPES_LABELS, CITYSCAPES_NUM_CLASSES,
)
from gsbench.data.synthetic import generate_synthetic, render_scene
from gsbench.data.synthetic.scene import QUOTA_CLASSES
from gsbench.data.synthetic.write import CITYSCAPES_ID_TO_ADE20K, MARKER_NAME, quota_classes
from gsbench.errors import GsbenchError
from gsbench.io import read_label, read_rgb

SMALL = (64, 128)
OFFICIAL_IDS = {label.id for label in CITYSCAPES_LABELS if label.id >= 0}
INSTANCE_IDS = {label.id for label in CITYSCAPES_LABELS if label.has_instances}
STEM = r"(?P<city>[a-z]+)_\d{6}_\d{6}"


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, n_train=3, n_val=2, size=SMALL, seed=3, workers=2, progress=False)
    return out


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_cityscapes_layout_and_file_names(small_dataset):
    files = _files(small_dataset)
    images = [f for f in files if f.startswith("leftImg8bit/")]
    assert len([f for f in images if "/train/" in f]) == 3
    assert len([f for f in images if "/val/" in f]) == 2
    for image in images:
        m = re.fullmatch(rf"leftImg8bit/(train|val)/([a-z]+)/{STEM}_leftImg8bit\.png", image)
        assert m and m.group(2) == m.group("city"), image
        stem_path = image.replace("leftImg8bit/", "gtFine/", 1).removesuffix("_leftImg8bit.png")
        for suffix in ("labelIds.png", "instanceIds.png", "color.png", "polygons.json"):
            assert f"{stem_path}_gtFine_{suffix}" in files
    assert len(files) == 5 * 5 + 1  # image + 4 gtFine files per sample, and the marker
    marker = json.loads((small_dataset / MARKER_NAME).read_text())
    assert marker["complete"] is True and marker["size"] == list(SMALL)
    assert not [f for f in files if f.endswith(".tmp")]


def test_labels_instances_colours_and_polygons_agree(small_dataset):
    Annotation = pytest.importorskip("cityscapesscripts.helpers.annotation").Annotation
    createInstanceImage = pytest.importorskip(
        "cityscapesscripts.preparation.json2instanceImg").createInstanceImage
    createLabelImage = pytest.importorskip(
        "cityscapesscripts.preparation.json2labelImg").createLabelImage

    colour_of = {label.id: label.color for label in CITYSCAPES_LABELS if label.id >= 0}
    for label_path in sorted(small_dataset.glob("gtFine/*/*/*_gtFine_labelIds.png")):
        prefix = str(label_path).removesuffix("labelIds.png")
        labels = read_label(label_path)
        instances = read_label(prefix + "instanceIds.png")
        colour = read_rgb(prefix + "color.png")
        with Image.open(prefix + "color.png") as png:  # RGBA, opaque, as json2labelImg writes it
            assert png.mode == "RGBA" and np.asarray(png)[..., 3].min() == 255
        split, city = label_path.parent.parent.name, label_path.parent.name
        stem = label_path.name.removesuffix("_gtFine_labelIds.png")
        image = read_rgb(small_dataset / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        assert labels.dtype == np.uint8 and instances.dtype == np.uint16
        assert labels.shape == instances.shape == colour.shape[:2] == image.shape[:2] == SMALL
        assert set(np.unique(labels).tolist()) <= OFFICIAL_IDS
        # instance ids: labelId*1000+k for instance classes, the plain labelId otherwise
        is_instance = np.isin(labels, list(INSTANCE_IDS))
        np.testing.assert_array_equal(instances[is_instance] // 1000, labels[is_instance])
        np.testing.assert_array_equal(instances[~is_instance], labels[~is_instance])
        for value in np.unique(labels):
            assert (colour[labels == value] == colour_of[int(value)]).all()
        # the polygons, rasterised by the official scripts (PIL), give the same maps up to
        # rasteriser differences on polygon edges
        annotation = Annotation()
        annotation.fromJsonFile(prefix + "polygons.json")
        assert (annotation.imgHeight, annotation.imgWidth) == SMALL
        official = np.asarray(createLabelImage(annotation, "ids"))
        official_instances = np.asarray(createInstanceImage(annotation, "ids"))
        assert (official == labels).mean() > 0.97
        assert (official_instances == instances).mean() > 0.97


def test_every_split_has_all_19_classes_even_with_two_images(small_dataset):
    for split in ("train", "val"):
        present = set()
        for path in small_dataset.glob(f"gtFine/{split}/*/*_gtFine_labelIds.png"):
            present |= set(CITYSCAPES_LABEL_TO_TRAIN[read_label(path)].ravel().tolist())
        assert present - {255} == set(range(CITYSCAPES_NUM_CLASSES)), split


def test_quotas_deal_every_rare_class_once_per_split():
    for n in (1, 2, 5, 9, 20):
        dealt = [name for i in range(n) for name in quota_classes(i, n)]
        assert sorted(dealt) == sorted(QUOTA_CLASSES)


def test_required_classes_are_visible_for_many_seeds():
    for seed in range(6):
        scene = render_scene(np.random.default_rng(seed), 64, 96, required=QUOTA_CLASSES)
        train_ids = set(CITYSCAPES_LABEL_TO_TRAIN[scene.label_ids].ravel().tolist())
        assert train_ids - {255} == set(range(CITYSCAPES_NUM_CLASSES)), seed


def test_same_seed_same_bytes_whatever_the_workers(small_dataset, tmp_path):
    again = tmp_path / "again"
    generate_synthetic(again, n_train=3, n_val=2, size=SMALL, seed=3, workers=1, progress=False)
    files = _files(small_dataset)
    assert files == _files(again)
    for name in files:
        assert (small_dataset / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate_synthetic(other, n_train=1, n_val=1, size=SMALL, seed=4, workers=1, progress=False)
    name = next(f for f in _files(other) if f.endswith("_leftImg8bit.png"))
    assert (other / name).read_bytes() != (small_dataset / name).read_bytes()


def test_objects_lower_in_the_image_are_larger():
    """Perspective: across many scenes, an object's height in pixels grows with the row of its
    bottom edge (nearer objects stand lower in the image)."""
    bottoms, heights = [], []
    wanted = {CITYSCAPES_LABEL_BY_NAME[n].id for n in ("person", "car", "traffic sign", "pole")}
    for seed in range(8):
        scene = render_scene(np.random.default_rng(1000 + seed), 128, 256)
        for value in np.unique(scene.instance_ids):
            label = value // 1000 if value >= 1000 else value
            if label not in wanted or value < 1000:
                continue
            rows = np.flatnonzero((scene.instance_ids == value).any(axis=1))
            bottoms.append(rows.max())
            heights.append(rows.max() - rows.min() + 1)
    assert len(bottoms) >= 30
    rho, p_value = spearmanr(bottoms, heights)
    assert rho > 0.4 and p_value < 1e-3


def test_ade20k_layout(tmp_path):
    assert len(ADE20K_CLASS_NAMES) == 150
    assert ADE20K_CLASS_NAMES[:3] == ("wall", "building", "sky") and ADE20K_CLASS_NAMES[-1] == "flag"
    root = generate_synthetic(tmp_path, n_train=2, n_val=1, size=SMALL, seed=1, layout="ade20k",
                              workers=1, progress=False)
    assert root == tmp_path / "ADEChallengeData2016"
    assert _files(root) == [
        "annotations/training/ADE_train_00000001.png", "annotations/training/ADE_train_00000002.png",
        "annotations/validation/ADE_val_00000001.png",
        "images/training/ADE_train_00000001.jpg", "images/training/ADE_train_00000002.jpg",
        "images/validation/ADE_val_00000001.jpg",
    ]
    annotation = read_label(root / "annotations/validation/ADE_val_00000001.png")
    assert annotation.dtype == np.uint8 and annotation.shape == SMALL
    assert read_rgb(root / "images/validation/ADE_val_00000001.jpg").shape == (*SMALL, 3)
    names = {ADE20K_CLASS_NAMES[v - 1] for v in np.unique(annotation) if v > 0}
    assert {"road", "sidewalk", "building", "sky", "tree", "car", "person", "pole", "signboard",
            "traffic light"} <= names
    assert set(np.unique(annotation).tolist()) <= set(CITYSCAPES_ID_TO_ADE20K.tolist())


def test_full_size_image_renders_quickly():
    start = time.perf_counter()
    scene = render_scene(np.random.default_rng(0), 1024, 2048)
    elapsed = time.perf_counter() - start
    assert scene.rgb.shape == (1024, 2048, 3) and scene.label_ids.shape == (1024, 2048)
    assert elapsed < 5.0  # about 0.6 s on one busy CPU core


def test_refuses_a_foreign_non_empty_folder_and_regenerates_its_own(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(GsbenchError, match="not empty and is not a synthetic dataset"):
        generate_synthetic(tmp_path, n_train=1, n_val=1, size=SMALL, progress=False)
    assert _files(tmp_path) == ["mine.txt"]
    out = tmp_path / "syn"
    generate_synthetic(out, n_train=3, n_val=1, size=SMALL, workers=1, progress=False)
    generate_synthetic(out, n_train=1, n_val=1, size=SMALL, workers=1, progress=False)
    assert len(list(out.glob("leftImg8bit/train/*/*.png"))) == 1  # no stale images left over


@pytest.mark.parametrize("args, message", [
    (["--size", "abc"], "--size 'abc': expected HEIGHTxWIDTH"),
    (["--size", "16x16"], "--size 16x16: height and width must be between"),
    (["--n-val", "0"], "--n-val 0: need at least 1 validation image"),
    (["--layout", "kitti"], "--layout 'kitti': expected one of cityscapes, ade20k"),
])
def test_cli_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["prepare-data", "synthetic", "--out", str(tmp_path / "o"),
                                      *args])
    assert result.exit_code == 2
    output = result.output.strip()
    assert message in output and "\n" not in output
    assert not (tmp_path / "o").exists()


def test_cli_generates_and_prepares(tmp_path):
    from gsbench.data.manifest import Manifest

    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["prepare-data", "synthetic", "--out", str(out), "--n-train",
                                      "2", "--n-val", "1", "--size", "64x128", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "train 2, val 1 images of 64x128" in result.output
    manifest = Manifest.load(out)
    assert manifest.dataset == "cityscapes" and manifest.num_classes == 19
    assert [len(manifest.split(s)) for s in ("train", "val")] == [2, 1]
    sample = manifest.split("val")[0]
    train_ids = read_label(manifest.path(sample.label))
    raw = read_label(out / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png")
    np.testing.assert_array_equal(train_ids, CITYSCAPES_LABEL_TO_TRAIN[raw])
    assert cv2.imread(str(manifest.path(sample.image))).shape == (64, 128, 3)
