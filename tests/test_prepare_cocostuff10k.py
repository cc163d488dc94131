"""prepare-data cocostuff10k on a tiny cocostuff-10k-v1.1 layout (.mat label maps) in tmp_path."""

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.cocostuff import COCOSTUFF_CLASS_NAMES
from gsbench.data.edges import edge_map
from gsbench.data.prepare import prepare_raw
from gsbench.evaluation.pred_dir import prediction_lut
from test_prepare import assert_refused, output_mtimes, tree_digest, write

H, W = 24, 40
runner = CliRunner()
# list order is kept in the manifest (not sorted)
TRAIN = ["COCO_train2014_000000000077", "COCO_train2014_000000000009", "COCO_val2014_000000000042"]
TEST = ["COCO_train2014_000000000133"]
UNUSED_THING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)  # COCO ids never annotated
USED_IDS = [i for i in range(1, 183) if i not in UNUSED_THING_IDS]


def expected_train_ids(s: np.ndarray) -> np.ndarray:
    """trainIds from the COCO-Stuff ids of S, one id at a time: the n-th used id is trainId n,
    0 (unlabeled) is ignore."""
    expected = np.full(s.shape, 255, np.uint8)
    for train_id, coco_id in enumerate(USED_IDS):
        expected[s == coco_id] = train_id
    return expected


def write_mat(path: Path, s: np.ndarray, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"S": s, "names": np.array(["unlabeled", "person"], dtype=object),
                "captions": np.array(["a caption"], dtype=object)}
    savemat(path, {**document, **extra})


def make_cocostuff10k(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    maps = {}
    for stem in TRAIN + TEST:
        write(root / "images" / f"{stem}.jpg", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        coarse = rng.choice([0] + USED_IDS, size=(H // 4, W // 4))
        maps[stem] = np.kron(coarse, np.ones((4, 4), dtype=np.int64))
    # every used id and 0 in the test map; S as uint16 there, uint8 elsewhere (both occur)
    maps[TEST[0]] = np.resize(np.array([0] + USED_IDS), (H, W))
    for stem, s in maps.items():
        write_mat(root / "annotations" / f"{stem}.mat",
                  s.astype(np.uint16 if stem in TEST else np.uint8))
    write(root / "images" / "COCO_train2014_000000000999.jpg",  # an image on no list
          rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    lists = root / "imageLists"
    lists.mkdir()
    (lists / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (lists / "test.txt").write_text("\n".join(TEST) + "\n")
    (lists / "all.txt").write_text("\n".join(TRAIN + TEST) + "\n")
    return root


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def s_map(root: Path, stem: str) -> np.ndarray:
    from scipy.io import loadmat

    return loadmat(root / "annotations" / f"{stem}.mat")["S"]


def test_cocostuff10k_splits_labels_and_raw_files_untouched(tmp_path):
    root = make_cocostuff10k(tmp_path / "coco10k")
    before = tree_digest(root)
    manifest = prepare_raw("coco_stuff10k", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before
    assert manifest.dataset == "coco_stuff10k" and manifest.num_classes == 171
    assert manifest.class_names == list(COCOSTUFF_CLASS_NAMES)
    assert list(manifest.splits) == ["train", "val"]
    assert [s.stem for s in manifest.split("train")] == TRAIN
    assert [s.stem for s in manifest.split("val")] == TEST
    for split in ("train", "val"):
        for sample in manifest.split(split):
            assert sample.image == f"../images/{sample.stem}.jpg"
            assert sample.label == f"labels/{split}/{sample.stem}_trainIds.png"
            assert (sample.height, sample.width) == (H, W) and sample.instance is None
            assert set(sample.sha256) == {"image", "raw_label", "label", "edge"}
            train_ids = read_png(manifest.path(sample.label))
            assert train_ids.dtype == np.uint8
            np.testing.assert_array_equal(train_ids, expected_train_ids(s_map(root, sample.stem)))
            np.testing.assert_array_equal(read_png(manifest.path(sample.edge)),
                                          edge_map(train_ids, 2))
    every = read_png(manifest.path(manifest.split("val")[0].label))
    assert set(np.unique(every).tolist()) == set(range(171)) | {255}
    # the 10k label ids are S values: --pred-format labelid reads them with the same table
    lut = prediction_lut("labelid", "coco_stuff10k", 171)
    s = s_map(root, TEST[0]).astype(np.uint8)
    np.testing.assert_array_equal(lut[s], expected_train_ids(s))


def test_cocostuff10k_from_the_official_zip_and_rerun_is_noop(tmp_path):
    src = make_cocostuff10k(tmp_path / "src")
    root = tmp_path / "zipped"
    root.mkdir()
    with zipfile.ZipFile(root / "cocostuff-10k-v1.1.zip", "w") as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
        zf.writestr("README.md", b"not a dataset folder")
    archive = tree_digest(root)
    result = prepare_raw("coco_stuff10k", root, workers=2, progress=False)
    assert tree_digest(root) == archive
    sample = result.manifest.split("val")[0]
    assert sample.image == f"raw/images/{TEST[0]}.jpg"
    assert not (root / "gsbench/raw/README.md").exists()
    from_folders = prepare_raw("coco_stuff10k", src, workers=1, progress=False).manifest
    for split in ("train", "val"):
        assert [s.sha256 for s in result.manifest.split(split)] == [
            s.sha256 for s in from_folders.split(split)]
    mtimes = output_mtimes(root / "gsbench")
    again = prepare_raw("coco_stuff10k", root, workers=1, progress=False)
    assert again.up_to_date and output_mtimes(root / "gsbench") == mtimes


# --- bad input through the CLI ------------------------------------------------------------------

def missing_list(root):
    path = root / "imageLists/test.txt"
    path.unlink()
    return path


def bad_list_line(root):
    path = root / "imageLists/train.txt"
    path.write_text(TRAIN[0] + "\n000000000077\n")
    return path


def listed_without_image(root):
    (root / "images" / f"{TRAIN[1]}.jpg").unlink()
    return root / "imageLists/train.txt"


def listed_without_mat(root):
    (root / "annotations" / f"{TEST[0]}.mat").unlink()
    return root / "imageLists/test.txt"


def mat_without_s(root):
    path = root / "annotations" / f"{TRAIN[0]}.mat"
    path.unlink()
    savemat(path, {"regionMapStuff": np.zeros((H, W), np.uint16)})
    return path


def mat_wrong_shape(root):
    path = root / "annotations" / f"{TRAIN[2]}.mat"
    write_mat(path, np.zeros((H, W + 2), np.uint8))
    return path


def mat_ids_above_182(root):
    path = root / "annotations" / f"{TEST[0]}.mat"
    s = np.full((H, W), 7, np.uint16)
    s[0, :2] = (183, 300)
    write_mat(path, s)
    return path


def mat_unused_id(root):
    path = root / "annotations" / f"{TRAIN[1]}.mat"
    write_mat(path, np.full((H, W), 12, np.uint8))  # "street sign": never annotated in COCO
    return path


def mat_not_a_map(root):
    path = root / "annotations" / f"{TRAIN[1]}.mat"
    write_mat(path, np.full((H, W), 1.5))
    return path


def corrupt_mat(root):
    path = root / "annotations" / f"{TRAIN[0]}.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, cut short")
    return path


def missing_folders(root):
    import shutil

    shutil.rmtree(root / "annotations")
    return root


@pytest.mark.parametrize("breaker, words", [
    (missing_list, "missing split list"),
    (bad_list_line, "line 2 '000000000077' does not match"),
    (listed_without_image, f"{TRAIN[1]} has no image"),
    (listed_without_mat, f"{TEST[0]} has no label"),
    (mat_without_s, "no variable S (the label map)"),
    (mat_wrong_shape, "label is 42x24 but its image"),
    (mat_ids_above_182, "S holds ids [183, 300] outside 0..182"),
    (mat_unused_id, "label ids [12] are not in the official table"),
    (mat_not_a_map, "S must be a 2-D integer label map, got float64"),
    (corrupt_mat, "not a readable MATLAB file"),
    (missing_folders, "missing annotations/ (or the archive cocostuff-10k-v1.1.zip)"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, breaker, words):
    root = make_cocostuff10k(tmp_path / "coco10k")
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", "cocostuff10k", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    assert_refused(result, words, culprit, root, before)


def test_cli_summary_names_the_splits(tmp_path):
    root = make_cocostuff10k(tmp_path / "coco10k")
    args = ["prepare-data", "cocostuff10k", "--root", str(root), "--workers", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "coco_stuff10k: train 3, val 1 images; prepared 4" in " ".join(first.output.split())
