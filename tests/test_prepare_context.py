"""prepare-data for PASCAL Context 59 on a tiny layout built in tmp_path (the 59-class PNGs of
mmsegmentation's converter, images from the VOC 2010 tar archive)."""

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.context import CONTEXT_CLASS_NAMES
from gsbench.data.edges import edge_map
from gsbench.data.prepare import prepare_raw
from test_prepare import assert_refused, tree_digest, write
from test_prepare_voc import H, W, blocks, read_png, write_jpg

runner = CliRunner()

CONTEXT_SPLITS = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}


def make_context(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2010"
    for split, stems in CONTEXT_SPLITS.items():
        for stem in stems:
            write_jpg(base / "JPEGImages" / f"{stem}.jpg", rng)
            write(base / "SegmentationClassContext" / f"{stem}.png", blocks(rng, 60))
        lists = base / "ImageSets" / "SegmentationContext"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("\n".join(stems) + "\n")
    write_jpg(base / "JPEGImages" / "2010_000001.jpg", rng)  # a VOC2010 image outside Context
    return root


def test_context_59_ignores_background(tmp_path):
    root = make_context(tmp_path / "ctx")
    before = tree_digest(root)
    manifest = prepare_raw("pascal_context", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before
    assert manifest.dataset == "pascal_context" and manifest.num_classes == 59
    assert manifest.class_names == list(CONTEXT_CLASS_NAMES) and len(set(CONTEXT_CLASS_NAMES)) == 59
    assert {s: [x.stem for x in manifest.split(s)] for s in manifest.splits} == CONTEXT_SPLITS
    for split in CONTEXT_SPLITS:
        for sample in manifest.split(split):
            labels = root / "VOCdevkit/VOC2010/SegmentationClassContext"
            raw = read_png(labels / f"{sample.stem}.png")
            expected = np.full(raw.shape, 255, np.uint8)
            for value in range(1, 60):
                expected[raw == value] = value - 1
            train_ids = read_png(manifest.path(sample.label))
            np.testing.assert_array_equal(train_ids, expected)
            np.testing.assert_array_equal(read_png(manifest.path(sample.edge)),
                                          edge_map(train_ids, 2))


def test_context_images_from_the_voc2010_tar_and_raw_json_is_refused(tmp_path):
    src = make_context(tmp_path / "src")
    root = tmp_path / "root"
    base = root / "VOCdevkit/VOC2010"
    base.mkdir(parents=True)
    for name in ("SegmentationClassContext", "ImageSets"):
        shutil.copytree(src / "VOCdevkit/VOC2010" / name, base / name)
    with tarfile.open(root / "VOCtrainval_03-May-2010.tar", "w") as tf:
        tf.add(src / "VOCdevkit", arcname="VOCdevkit")
    manifest = prepare_raw("pascal_context", root, workers=1, progress=False).manifest
    assert manifest.split("val")[0].image == "raw/VOCdevkit/VOC2010/JPEGImages/2008_000007.jpg"
    assert not (root / "gsbench/raw/VOCdevkit/VOC2010/SegmentationClassContext").exists()

    raw_only = tmp_path / "raw_only"
    raw_only.mkdir()
    (raw_only / "trainval_merged.json").write_text("{}")
    result = runner.invoke(app, ["prepare-data", "context", "--root", str(raw_only), "--quiet"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert str(raw_only / "trainval_merged.json") in message
    assert "Detail API" in message and "SegmentationClassContext/" in message


# --- bad input through the CLI ------------------------------------------------------------------

def context_missing_list(root):
    path = root / "VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt"
    path.unlink()
    return path


def context_label_value(root):
    path = root / "VOCdevkit/VOC2010/SegmentationClassContext/2008_000003.png"
    write(path, np.full((H, W), 60, np.uint8))
    return path


def context_missing_root(root):
    shutil.rmtree(root / "VOCdevkit")
    return root


@pytest.mark.parametrize("breaker, words", [
    (context_missing_list, "missing split list"),
    (context_label_value, "label ids [60] are not in the official table"),
    (context_missing_root, "missing VOCdevkit/VOC2010/"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, breaker, words):
    root = make_context(tmp_path / "context")
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", "context", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    assert_refused(result, words, culprit, root, before)
