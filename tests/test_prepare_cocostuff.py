"""prepare-data for COCO-Stuff 164k (171 classes) on a tiny official layout built in tmp_path
(grey stuffthingmaps PNGs, from folders and from the official zip archives)."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.cocostuff import COCOSTUFF_CLASS_NAMES
from gsbench.data.prepare import prepare_raw
from test_prepare import assert_refused, tree_digest, write
from test_prepare_voc import H, W, blocks, read_png, write_jpg

runner = CliRunner()

COCO_SPLITS = {"train2017": ["000000000009", "000000000025"], "val2017": ["000000000139"]}
UNUSED_THING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)  # COCO ids, 1-based


def cocostuff_reference(raw: np.ndarray) -> np.ndarray:
    """trainIds from the id list, one used id at a time: the n-th used id (1..182, skipping the
    11 unused thing ids) is trainId n; the map stores id - 1, and 255 (unlabeled) is ignore."""
    expected = np.full(raw.shape, 255, np.uint8)
    train_id = 0
    for coco_id in range(1, 183):
        if coco_id in UNUSED_THING_IDS:
            continue
        expected[raw == coco_id - 1] = train_id
        train_id += 1
    assert train_id == 171
    return expected


def make_cocostuff(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    used = [v for v in range(182) if v + 1 not in UNUSED_THING_IDS] + [255]
    for folder, stems in COCO_SPLITS.items():
        for stem in stems:
            write_jpg(root / "images" / folder / f"{stem}.jpg", rng)
            write(root / "annotations" / folder / f"{stem}.png", blocks(rng, 0, used))
    # every used value and 255 in one map, to check the whole table
    every = np.resize(np.array(used, np.uint8), (H, W))
    write(root / "annotations/val2017/000000000139.png", every)
    return root


def test_cocostuff_171_classes_from_folders_and_zips(tmp_path):
    root = make_cocostuff(tmp_path / "coco")
    # mmsegmentation's converter output beside the maps is not raw data
    write(root / "annotations/val2017/000000000139_labelTrainIds.png", np.zeros((H, W), np.uint8))
    before = tree_digest(root)
    manifest = prepare_raw("coco_stuff", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before
    assert manifest.dataset == "coco_stuff" and manifest.num_classes == 171
    assert manifest.class_names == list(COCOSTUFF_CLASS_NAMES)
    assert len(set(COCOSTUFF_CLASS_NAMES)) == 171
    names = manifest.class_names
    assert (names[0], names[11], names[79], names[80], names[170]) == (
        "person", "stop sign", "toothbrush", "banner", "wood")
    assert list(manifest.splits) == ["train", "val"]
    assert [s.stem for s in manifest.split("train")] == COCO_SPLITS["train2017"]
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        for sample in manifest.split(split):
            raw = read_png(root / "annotations" / folder / f"{sample.stem}.png")
            train_ids = read_png(manifest.path(sample.label))
            np.testing.assert_array_equal(train_ids, cocostuff_reference(raw))
    every = read_png(manifest.path(manifest.split("val")[0].label))
    assert set(np.unique(every).tolist()) == set(range(171)) | {255}

    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for folder in COCO_SPLITS:
        with zipfile.ZipFile(zipped / f"{folder}.zip", "w") as zf:
            for path in sorted((root / "images" / folder).iterdir()):
                zf.write(path, f"{folder}/{path.name}")
    with zipfile.ZipFile(zipped / "stuffthingmaps_trainval2017.zip", "w") as zf:
        for folder in COCO_SPLITS:
            for path in sorted((root / "annotations" / folder).glob("????????????.png")):
                zf.write(path, f"{folder}/{path.name}")
    from_zip = prepare_raw("coco_stuff", zipped, workers=1, progress=False).manifest
    assert from_zip.split("val")[0].image == "raw/images/val2017/000000000139.jpg"
    assert [s.sha256 for s in from_zip.split("train")] == [
        s.sha256 for s in manifest.split("train")]


# --- bad input through the CLI ------------------------------------------------------------------

def coco_unpaired_image(root):
    path = root / "images/val2017/000000000285.jpg"
    write_jpg(path, np.random.default_rng(1))
    return path


def coco_unused_id(root):
    path = root / "annotations/train2017/000000000025.png"
    write(path, np.full((H, W), 11, np.uint8))  # COCO id 12, "street sign": never annotated
    return path


def coco_bad_name(root):
    path = root / "annotations/train2017/COCO_train2014_000000000009.png"
    write(path, np.zeros((H, W), np.uint8))
    return path


def coco_colour_label(root):
    path = root / "annotations/val2017/000000000139.png"
    write(path, np.zeros((H, W, 3), np.uint8))
    return path


@pytest.mark.parametrize("breaker, words", [
    (coco_unpaired_image, "image without its label 000000000285.png"),
    (coco_unused_id, "label ids [11] are not in the official table"),
    (coco_bad_name, "not a 12-digit COCO image id"),
    (coco_colour_label, "expected a single-channel label image"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, breaker, words):
    root = make_cocostuff(tmp_path / "cocostuff")
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", "cocostuff", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    assert_refused(result, words, culprit, root, before)
