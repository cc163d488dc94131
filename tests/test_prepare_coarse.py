"""prepare-data cityscapes with the coarse annotations (gtCoarse + leftImg8bit/train_extra) on a
tiny fake tree in tmp_path: the train_extra split, archives, half-present sets, --no-coarse."""

import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.edges import edge_map
from gsbench.data.prepare import prepare_raw
from gsbench.errors import GsbenchError
from test_prepare import (
    H, W, assert_refused, make_cityscapes, output_mtimes, tree_digest, write,
)

runner = CliRunner()
# train_extra city -> images; two train_extra cities have hyphens (bad-honnef, muhlheim-ruhr)
EXTRA = {"augsburg": 2, "bad-honnef": 1}
EXTRA_STEMS = ["augsburg_000000_000000", "augsburg_000000_000001", "bad-honnef_000000_000000"]
# labelId -> trainId of a few official Cityscapes labels, written out by hand
LABEL_TO_TRAIN = {0: 255, 7: 0, 8: 1, 9: 255, 11: 2, 21: 8, 23: 10, 26: 13}


def coarse_labels(rng) -> np.ndarray:
    """Coarse polygons: blocks of a few labelIds, with unlabelled (0) gaps."""
    ids = np.array(list(LABEL_TO_TRAIN))
    coarse = rng.choice(ids, p=[0.4] + [0.6 / (len(ids) - 1)] * (len(ids) - 1),
                        size=(H // 8, W // 8))
    return np.kron(coarse, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


def add_coarse(root: Path, seed: int = 1, images: bool = True, labels: bool = True) -> Path:
    """The coarse set as the official archives unpack it, with gtCoarse/train and val too."""
    rng = np.random.default_rng(seed)
    for city, count in EXTRA.items():
        for frame in range(count):
            stem = f"{city}_000000_{frame:06d}"
            if images:
                write(root / "leftImg8bit/train_extra" / city / f"{stem}_leftImg8bit.png",
                      rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            if labels:
                gt = root / "gtCoarse/train_extra" / city
                ids = coarse_labels(rng)
                write(gt / f"{stem}_gtCoarse_labelIds.png", ids)
                write(gt / f"{stem}_gtCoarse_instanceIds.png", ids.astype(np.uint16))
                write(gt / f"{stem}_gtCoarse_color.png", np.zeros((H, W, 3), np.uint8))
                (gt / f"{stem}_gtCoarse_polygons.json").write_text("{}")
    if labels:  # coarse labels of the fine train/val images: not read
        for split, city in (("train", "aachen"), ("val", "frankfurt")):
            write(root / "gtCoarse" / split / city / f"{city}_000000_000000_gtCoarse_labelIds.png",
                  np.full((H, W), 7, np.uint8))
    return root


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_coarse_set_becomes_train_extra_and_fine_splits_are_unchanged(tmp_path):
    fine_only = prepare_raw("cityscapes", make_cityscapes(tmp_path / "fine"), workers=1,
                            progress=False).manifest
    root = add_coarse(make_cityscapes(tmp_path / "cs"))
    before = tree_digest(root)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before
    assert list(manifest.splits) == ["train", "val", "test", "train_extra"]
    document, reference = manifest.to_json(), fine_only.to_json()
    for split in ("train", "val", "test"):  # same raw files, same relative layout: same entries
        assert document["splits"][split] == reference["splits"][split]

    extra = manifest.split("train_extra")
    assert [s.stem for s in extra] == EXTRA_STEMS
    for sample in extra:
        city = sample.stem.rsplit("_", 2)[0]
        assert sample.image == f"../leftImg8bit/train_extra/{city}/{sample.stem}_leftImg8bit.png"
        assert sample.label == f"labels/train_extra/{city}/{sample.stem}_trainIds.png"
        assert sample.edge == f"edges/train_extra/{city}/{sample.stem}_edge.png"
        assert sample.instance is None and (sample.height, sample.width) == (H, W)
        raw = read_png(root / "gtCoarse/train_extra" / city / f"{sample.stem}_gtCoarse_labelIds.png")
        expected = np.full(raw.shape, 99, np.uint8)
        for label_id, train_id in LABEL_TO_TRAIN.items():
            expected[raw == label_id] = train_id
        train_ids = read_png(manifest.path(sample.label))
        np.testing.assert_array_equal(train_ids, expected)
        assert (train_ids == 255).any() and (train_ids < 19).any()
        np.testing.assert_array_equal(read_png(manifest.path(sample.edge)), edge_map(train_ids, 2))
    assert not (root / "gsbench/labels/train_extra/aachen").exists()  # gtCoarse/train not used

    # the papers' coarse + fine training set, in one split name
    assert [s.stem for s in manifest.split("train+val+train_extra")] == [
        s.stem for s in manifest.split("train") + manifest.split("val") + extra]


def test_coarse_added_later_reuses_the_fine_outputs_and_no_coarse_drops_it(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    first = prepare_raw("cityscapes", root, workers=1, progress=False)
    add_coarse(root)
    with_coarse = prepare_raw("cityscapes", root, workers=1, progress=False)
    assert (with_coarse.prepared, with_coarse.reused) == (3, 5)
    mtimes = output_mtimes(root / "gsbench")
    again = prepare_raw("cityscapes", root, workers=1, progress=False)
    assert again.up_to_date and output_mtimes(root / "gsbench") == mtimes

    result = runner.invoke(app, ["prepare-data", "cityscapes", "--root", str(root),
                                 "--workers", "1", "--no-coarse"])
    assert result.exit_code == 0, result.output
    assert "train 3, val 1, test 1 images; prepared 0, reused 5" in " ".join(result.output.split())
    no_coarse = prepare_raw("cityscapes", root, workers=1, progress=False,
                            options={"coarse": False})
    assert no_coarse.up_to_date and no_coarse.manifest.splits == first.manifest.splits


def test_coarse_from_the_official_archives(tmp_path):
    src = add_coarse(make_cityscapes(tmp_path / "src"))
    root = make_cityscapes(tmp_path / "zips")  # fine folders extracted, coarse as zips
    for archive, folder, top in (("gtCoarse.zip", src / "gtCoarse", "gtCoarse"),
                                 ("leftImg8bit_trainextra.zip", src / "leftImg8bit/train_extra",
                                  "leftImg8bit/train_extra")):
        with zipfile.ZipFile(root / archive, "w") as zf:
            for path in sorted(folder.rglob("*")):
                zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
            zf.writestr("README", b"x")
    archives = tree_digest(root)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    assert tree_digest(root) == archives
    sample = manifest.split("train_extra")[0]
    assert sample.image == f"raw/leftImg8bit/train_extra/augsburg/{sample.stem}_leftImg8bit.png"
    assert not (root / "gsbench/raw/gtCoarse/train").exists()  # only train_extra is extracted
    assert not (root / "gsbench/raw/README").exists()
    from_folders = prepare_raw("cityscapes", src, workers=1, progress=False).manifest
    assert [s.sha256 for s in manifest.split("train_extra")] == [
        s.sha256 for s in from_folders.split("train_extra")]


def only_labels(root):
    add_coarse(root, images=False)
    return root / "gtCoarse"


def only_images(root):
    add_coarse(root, labels=False)
    return root / "leftImg8bit/train_extra"


def only_label_archive(root):
    (root / "gtCoarse.zip").write_bytes(b"never opened")
    return root / "gtCoarse.zip"


def coarse_image_without_label(root):
    add_coarse(root)
    path = root / "gtCoarse/train_extra/augsburg/augsburg_000000_000001_gtCoarse_labelIds.png"
    path.unlink()
    return root / "leftImg8bit/train_extra/augsburg/augsburg_000000_000001_leftImg8bit.png"


def coarse_unknown_id(root):
    add_coarse(root)
    path = root / "gtCoarse/train_extra/bad-honnef/bad-honnef_000000_000000_gtCoarse_labelIds.png"
    write(path, np.full((H, W), 40, np.uint8))
    return path


def coarse_without_split_folder(root):
    add_coarse(root)
    shutil.rmtree(root / "gtCoarse/train_extra")
    return root / "gtCoarse"


@pytest.mark.parametrize("breaker, words", [
    (only_labels, "coarse labels without their images"),
    (only_images, "coarse images without their labels"),
    (only_label_archive, "coarse labels without their images"),
    (coarse_image_without_label, "image without its label augsburg_000000_000001_gtCoarse"),
    (coarse_unknown_id, "label ids [40] are not in the official table"),
    (coarse_without_split_folder, "missing split folder train_extra/"),
])
def test_bad_coarse_input_exits_2_and_no_coarse_prepares_the_fine_set(tmp_path, breaker, words):
    root = make_cityscapes(tmp_path / "cs")
    culprit = breaker(root)
    before = tree_digest(root)
    args = ["prepare-data", "cityscapes", "--root", str(root), "--workers", "1", "--quiet"]
    result = runner.invoke(app, args)
    message = assert_refused(result, words, culprit, root, before)
    if breaker in (only_labels, only_images, only_label_archive):
        assert "--no-coarse" in message

    fine = runner.invoke(app, args + ["--no-coarse"])
    assert fine.exit_code == 0, fine.output
    assert tree_digest(root) == before


def test_library_error_without_the_cli(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    only_images(root)
    with pytest.raises(GsbenchError, match="coarse images without their labels"):
        prepare_raw("cityscapes", root, workers=1, progress=False)
    fine = prepare_raw("cityscapes", root, workers=1, progress=False, options={"coarse": False})
    assert list(fine.manifest.splits) == ["train", "val", "test"]
