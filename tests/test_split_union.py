"""Split unions ``a+b``: one place (Manifest.split), used by training datasets and `gsbench eval`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.dataset import SegmentationDataset
from gsbench.data.manifest import Manifest, Sample
from gsbench.errors import GsbenchError
from gsbench.io import write_png

H, W = 16, 24
NUM_CLASSES = 3
SPLITS = {"train": ["a_1", "a_2"], "val": ["b_1"], "train_extra": ["c_1", "c_2", "c_3"]}
runner = CliRunner()


def make_manifest(root, splits=SPLITS, seed=0):
    """A prepared folder with images and trainId labels; returns the labels and predictions."""
    rng = np.random.default_rng(seed)
    entries, labels, preds = {}, {}, {}
    for split, stems in splits.items():
        entries[split] = []
        for stem in stems:
            write_png(root / "images" / f"{stem}.png",
                      rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            labels[stem] = rng.integers(0, NUM_CLASSES, (H, W), dtype=np.uint8)
            preds[stem] = np.where(rng.random((H, W)) < 0.7, labels[stem],
                                   rng.integers(0, NUM_CLASSES, (H, W))).astype(np.uint8)
            write_png(root / "labels" / split / f"{stem}.png", labels[stem])
            entries[split].append(Sample(
                stem=stem, image=f"images/{stem}.png", label=f"labels/{split}/{stem}.png",
                edge=None, instance=None, height=H, width=W))
    Manifest(dataset="ade20k", num_classes=NUM_CLASSES, class_names=["x", "y", "z"],
             ignore_index=255, splits=entries, root=root).save()
    return labels, preds


def test_union_is_the_concatenation_in_the_order_given(tmp_path):
    make_manifest(tmp_path)
    manifest = Manifest.load(tmp_path)
    stems = lambda name: [s.stem for s in manifest.split(name)]  # noqa: E731
    assert stems("train+val") == ["a_1", "a_2", "b_1"]
    assert stems("val+train") == ["b_1", "a_1", "a_2"]
    assert stems("train+val+train_extra") == ["a_1", "a_2", "b_1", "c_1", "c_2", "c_3"]
    assert manifest.split("train+val")[2] == manifest.split("val")[0]
    assert stems("train") == ["a_1", "a_2"]  # the splits themselves are untouched
    # a training dataset over a union, as a recipe's data.train_split = train+val gives it
    dataset = SegmentationDataset(manifest, "train+val")
    assert len(dataset) == 3 and [dataset[i]["stem"] for i in range(3)] == ["a_1", "a_2", "b_1"]


@pytest.mark.parametrize("name, words", [
    ("train+test", "no split 'test' in 'train+test' (has: train, train_extra, val)"),
    ("test", "no split 'test' (has: train, train_extra, val)"),
    ("train+", "no split '' in 'train+'"),
    ("train+val+train", "split union 'train+val+train' names 'train' twice"),
])
def test_bad_unions_are_one_line_errors_naming_the_manifest(tmp_path, name, words):
    make_manifest(tmp_path)
    with pytest.raises(GsbenchError) as err:
        Manifest.load(tmp_path).split(name)
    message = str(err.value)
    assert words in message and str(tmp_path / "manifest.json") in message and "\n" not in message


def test_a_union_whose_parts_share_an_image_is_refused(tmp_path):
    # VOC's trainaug holds VOC train: train+trainaug would train on (and score) images twice
    make_manifest(tmp_path, {"train": ["a_1", "a_2"], "trainaug": ["a_2", "s_9"]})
    manifest = Manifest.load(tmp_path)
    with pytest.raises(GsbenchError, match="'train\\+trainaug': 'a_2' is in both 'train' and "
                                           "'trainaug'"):
        manifest.split("train+trainaug")


def test_eval_scores_a_union_like_the_confusion_of_all_its_images(tmp_path):
    labels, preds = make_manifest(tmp_path / "data")
    union = ("a_1", "a_2", "b_1")
    for stem in union:  # eval refuses predictions that match no sample of the split
        write_png(tmp_path / "preds" / f"{stem}.png", preds[stem])
    out = tmp_path / "metrics.json"
    args = ["eval", "--pred-dir", str(tmp_path / "preds"), "--data", str(tmp_path / "data"),
            "--radii", "none", "--crop-factors", "none", "--workers", "1", "--quiet"]
    result = runner.invoke(app, args + ["--split", "train+val", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "train+val"
    # independent expectation: one confusion matrix over the three images
    gt = np.concatenate([labels[s].ravel() for s in union]).astype(np.int64)
    pr = np.concatenate([preds[s].ravel() for s in union]).astype(np.int64)
    confusion = np.bincount(gt * NUM_CLASSES + pr, minlength=NUM_CLASSES ** 2).reshape(3, 3)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert metrics["miou"] == pytest.approx(100 * iou.mean(), abs=1e-9)

    bad = runner.invoke(app, args + ["--split", "val+val"])
    assert bad.exit_code == 2 and "names 'val' twice" in bad.output
    assert bad.output.count("\n") == 1
