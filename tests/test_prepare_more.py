"""prepare-data for PASCAL VOC 2012 (+ SBD), PASCAL Context 59 and COCO-Stuff 164k on tiny
official layouts built in tmp_path (palette PNGs, SBD .mat files, tar and zip archives)."""

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.cocostuff import COCOSTUFF_CLASS_NAMES
from gsbench.data.context import CONTEXT_CLASS_NAMES
from gsbench.data.edges import edge_map
from gsbench.data.prepare import prepare_raw
from gsbench.data.raw import extract_tar
from gsbench.data.voc import VOC_CLASS_NAMES, trainaug_stems
from gsbench.errors import GsbenchError
from test_prepare import assert_refused, output_mtimes, tree_digest, write

H, W = 24, 40
runner = CliRunner()

# VOC: two train images, one val image, two images only SBD annotates.
VOC_TRAIN, VOC_VAL = ["2007_000001", "2007_000002"], ["2007_000003"]
SBD_TRAIN, SBD_VAL = ["2007_000003", "2008_000010"], ["2008_000011", "2007_000001"]
# (SBD train + SBD val + VOC train) - VOC val, written out by hand
TRAINAUG = ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def blocks(rng, high: int, values=None) -> np.ndarray:
    """An HxW uint8 map of 4x4 blocks drawn from range(high) (or from ``values``)."""
    pool = np.arange(high) if values is None else np.asarray(values)
    coarse = rng.choice(pool, size=(H // 4, W // 4))
    return np.kron(coarse, np.ones((4, 4), dtype=np.int64)).astype(np.uint8)


def voc_colormap() -> list[int]:
    """The VOC devkit's ``labelcolormap(256)`` as a flat PIL palette."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices, mode="L")
    image.putpalette(voc_colormap())
    assert image.mode == "P"
    image.save(path)


def write_jpg(path: Path, rng, height: int = H, width: int = W) -> None:
    write(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"GTcls": {"Segmentation": segmentation,
                             "Boundaries": np.zeros((21, 1), dtype=object),
                             "CategoriesPresent": np.unique(segmentation)[:, None]}})


def voc_label(rng) -> np.ndarray:
    label = blocks(rng, 21)
    label[0, :] = 255  # the void band of VOC annotations
    return label


def make_voc(root: Path, sbd: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for stem in VOC_TRAIN + VOC_VAL:
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", rng)
        write_palette_png(voc / "SegmentationClass" / f"{stem}.png", voc_label(rng))
    for stem in ("2008_000010", "2008_000011", "2009_000099"):  # JPEGImages holds more images
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", rng)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (lists / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (lists / "trainval.txt").write_text("\n".join(VOC_TRAIN + VOC_VAL) + "\n")
    if sbd:
        dataset = root / "benchmark_RELEASE" / "dataset"
        for stem in sorted(set(SBD_TRAIN + SBD_VAL)):
            write_sbd_mat(dataset / "cls" / f"{stem}.mat", blocks(rng, 21))
        (dataset / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
        (dataset / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return root


def voc_reference(raw: np.ndarray) -> np.ndarray:
    """trainIds by the VOC rule, one value at a time: 0..20 stay, everything else is ignore."""
    expected = np.full(raw.shape, 255, dtype=np.uint8)
    for value in np.unique(raw):
        if value <= 20:
            expected[raw == value] = value
    return expected


def palette_indices(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def sbd_segmentation(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    return loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation


# --- VOC ----------------------------------------------------------------------------------------

def test_trainaug_rule():
    assert trainaug_stems(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL) == TRAINAUG
    assert trainaug_stems(["a"], ["b"], ["b", "c"], ["a", "d"]) == ["a", "c", "d"]


def test_voc_with_sbd_splits_labels_and_raw_files_untouched(tmp_path):
    root = make_voc(tmp_path / "voc")
    before = tree_digest(root)
    manifest = prepare_raw("voc2012", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before
    assert manifest.dataset == "voc2012" and manifest.num_classes == 21
    assert manifest.class_names == list(VOC_CLASS_NAMES) and manifest.class_names[0] == "background"
    assert list(manifest.splits) == ["train", "val", "trainaug"]
    assert [s.stem for s in manifest.split("train")] == VOC_TRAIN
    assert [s.stem for s in manifest.split("val")] == VOC_VAL
    assert [s.stem for s in manifest.split("trainaug")] == TRAINAUG

    voc = root / "VOCdevkit/VOC2012"
    sbd = root / "benchmark_RELEASE/dataset"
    sources = {}
    for split in ("train", "val", "trainaug"):
        for sample in manifest.split(split):
            assert sample.image == f"../VOCdevkit/VOC2012/JPEGImages/{sample.stem}.jpg"
            assert sample.label == f"labels/{split}/{sample.stem}_trainIds.png"
            assert (sample.height, sample.width) == (H, W) and sample.instance is None
            voc_png = voc / "SegmentationClass" / f"{sample.stem}.png"
            raw = (palette_indices(voc_png) if voc_png.exists()
                   else sbd_segmentation(sbd / "cls" / f"{sample.stem}.mat"))
            sources[(split, sample.stem)] = "voc" if voc_png.exists() else "sbd"
            train_ids = read_png(manifest.path(sample.label))
            assert train_ids.dtype == np.uint8
            np.testing.assert_array_equal(train_ids, voc_reference(raw))
            np.testing.assert_array_equal(read_png(manifest.path(sample.edge)),
                                          edge_map(train_ids, 2))
            assert set(sample.sha256) == {"image", "raw_label", "label", "edge"}
    # VOC annotations where they exist (the void band survives), SBD .mat otherwise
    assert sources[("trainaug", "2007_000001")] == "voc"
    assert sources[("trainaug", "2008_000010")] == "sbd"
    label = read_png(manifest.path(manifest.split("trainaug")[0].label))
    assert np.all(label[0] == 255)


def test_voc_without_sbd_has_no_trainaug(tmp_path):
    root = make_voc(tmp_path / "voc", sbd=False)
    # VOCdevkit as root
    manifest = prepare_raw("voc2012", root / "VOCdevkit", workers=1, progress=False).manifest
    assert list(manifest.splits) == ["train", "val"]


def make_tar(folder: Path, archive: Path, mode: str = "w") -> None:
    with tarfile.open(archive, mode) as tf:
        tf.add(folder, arcname=folder.name)


def test_voc_from_official_tar_archives_rerun_noop_and_changed_mat(tmp_path):
    src = make_voc(tmp_path / "src")
    root = tmp_path / "archives"
    root.mkdir()
    make_tar(src / "VOCdevkit", root / "VOCtrainval_11-May-2012.tar")
    make_tar(src / "benchmark_RELEASE", root / "benchmark.tgz", "w:gz")
    archives = tree_digest(root)
    from_tar = prepare_raw("voc2012", root, workers=2, progress=False)
    assert tree_digest(root) == archives
    sample = from_tar.manifest.split("trainaug")[2]
    assert sample.image == "raw/VOCdevkit/VOC2012/JPEGImages/2008_000010.jpg"
    from_folders = prepare_raw("voc2012", src, workers=1, progress=False).manifest
    for split in ("train", "val", "trainaug"):
        assert [s.sha256 for s in from_tar.manifest.split(split)] == [
            s.sha256 for s in from_folders.split(split)]

    out = root / "gsbench"
    mtimes = output_mtimes(out)
    again = prepare_raw("voc2012", root, workers=1, progress=False)
    assert again.up_to_date and output_mtimes(out) == mtimes  # no re-extraction, no rewrite

    write_sbd_mat(src / "benchmark_RELEASE/dataset/cls/2008_000010.mat",
                  np.full((H, W), 15, np.uint8))  # all person
    changed = prepare_raw("voc2012", src, workers=1, progress=False)
    assert (changed.prepared, changed.reused) == (1, 6)
    assert np.all(read_png(src / "gsbench/labels/trainaug/2008_000010_trainIds.png") == 15)


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_tar_members_are_refused(tmp_path, kind):
    archive = tmp_path / "VOCtrainval_11-May-2012.tar"
    with tarfile.open(archive, "w") as tf:
        ok = tarfile.TarInfo("VOCdevkit/ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        name = {"parent": "VOCdevkit/../../evil.txt", "absolute": "/abs/evil.txt"}.get(
            kind, "VOCdevkit/special")
        info = tarfile.TarInfo(name)
        if kind in ("parent", "absolute"):
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
        else:
            info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "device": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = "/etc/passwd" if kind in ("symlink", "hardlink") else ""
            tf.addfile(info)
    words = {"parent": "'..' component", "absolute": "absolute path", "symlink": "link member",
             "hardlink": "link member", "device": "special", "fifo": "special"}[kind]
    with pytest.raises(GsbenchError, match=words) as err:
        extract_tar(archive, tmp_path / "dest")
    assert str(archive) in str(err.value) and repr(name) in str(err.value)
    assert not (tmp_path / "dest").exists() and not (tmp_path / "evil.txt").exists()


def test_tar_extraction_skips_members_with_the_right_size_and_filters_by_path(tmp_path):
    src = tmp_path / "src" / "top"
    (src / "keep/sub").mkdir(parents=True)
    (src / "skip").mkdir()
    (src / "keep/sub/a.txt").write_bytes(b"a" * 10)
    (src / "keep/b.txt").write_bytes(b"b" * 20)
    (src / "skip/c.txt").write_bytes(b"c")
    make_tar(src, tmp_path / "a.tar.gz", "w:gz")
    dest = tmp_path / "dest"
    (dest / "top/keep/sub").mkdir(parents=True)
    (dest / "top/keep/sub/a.txt").write_bytes(b"x" * 10)  # right size: kept
    (dest / "top/keep/b.txt").write_bytes(b"cut")  # cut short: extracted again
    extract_tar(tmp_path / "a.tar.gz", dest, only_under=["top/keep"])
    assert (dest / "top/keep/sub/a.txt").read_bytes() == b"x" * 10
    assert (dest / "top/keep/b.txt").read_bytes() == b"b" * 20
    assert not (dest / "top/skip").exists()
    with pytest.raises(GsbenchError, match="not a readable tar archive"):
        (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 64)
        extract_tar(tmp_path / "bad.tar", dest)


# --- PASCAL Context 59 --------------------------------------------------------------------------

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


# --- COCO-Stuff 164k ----------------------------------------------------------------------------

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

def voc_missing_folder(root):
    shutil.rmtree(root / "VOCdevkit/VOC2012/SegmentationClass")
    return root / "VOCdevkit/VOC2012/SegmentationClass"


def voc_listed_without_image(root):
    lists = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
    lists.write_text("2007_000003\n2007_000004\n")
    return lists


def voc_bad_list_line(root):
    lists = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    lists.write_text("2007_000001\nnot an image\n")
    return lists


def voc_label_without_image(root):
    path = root / "VOCdevkit/VOC2012/SegmentationClass/2011_000005.png"
    write_palette_png(path, np.zeros((H, W), np.uint8))
    return path


def voc_label_size(root):
    path = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000002.png"
    write_palette_png(path, np.zeros((H, W // 2), np.uint8))
    return path


def voc_label_value(root):
    path = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000003.png"
    label = np.zeros((H, W), np.uint8)
    label[5, 5] = 21
    write_palette_png(path, label)
    return path


def voc_corrupt_png(root):
    path = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png"
    path.write_bytes(path.read_bytes()[:60])
    return path


def sbd_mat_without_struct(root):
    path = root / "benchmark_RELEASE/dataset/cls/2008_000011.mat"
    savemat(path, {"GTinst": {"Segmentation": np.zeros((H, W), np.uint8)}})
    return path


def sbd_corrupt_mat(root):
    path = root / "benchmark_RELEASE/dataset/cls/2008_000010.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    return path


def sbd_missing_mat(root):
    path = root / "benchmark_RELEASE/dataset/cls/2008_000010.mat"
    path.unlink()
    return path


def sbd_mat_size(root):
    path = root / "benchmark_RELEASE/dataset/cls/2008_000011.mat"
    write_sbd_mat(path, np.zeros((H + 1, W), np.uint8))
    return path


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


@pytest.mark.parametrize("dataset, breaker, words", [
    ("voc", voc_missing_folder, "missing folder"),
    ("voc", voc_listed_without_image, "2007_000004 has no image"),
    ("voc", voc_bad_list_line, "line 2 'not an image' does not match"),
    ("voc", voc_label_without_image, "label without its image 2011_000005.jpg"),
    ("voc", voc_label_size, "label is 20x24 but its image 2007_000002.jpg is 40x24"),
    ("voc", voc_label_value, "label ids [21] are not in the official table"),
    ("voc", voc_corrupt_png, "not a readable image"),
    ("voc", sbd_mat_without_struct, "no struct field GTcls.Segmentation"),
    ("voc", sbd_corrupt_mat, "not a readable MATLAB file"),
    ("voc", sbd_missing_mat, "missing SBD label of the trainaug sample 2008_000010"),
    ("voc", sbd_mat_size, "label is 40x25 but its image"),
    ("context", context_missing_list, "missing split list"),
    ("context", context_label_value, "label ids [60] are not in the official table"),
    ("context", context_missing_root, "missing VOCdevkit/VOC2010/"),
    ("cocostuff", coco_unpaired_image, "image without its label 000000000285.png"),
    ("cocostuff", coco_unused_id, "label ids [11] are not in the official table"),
    ("cocostuff", coco_bad_name, "not a 12-digit COCO image id"),
    ("cocostuff", coco_colour_label, "expected a single-channel label image"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, dataset, breaker, words):
    make = {"voc": make_voc, "context": make_context, "cocostuff": make_cocostuff}[dataset]
    root = make(tmp_path / dataset)
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", dataset, "--root", str(root),
                                 "--workers", "1", "--quiet"])
    assert_refused(result, words, culprit, root, before)


def test_cli_summary_names_the_splits(tmp_path):
    root = make_voc(tmp_path / "voc")
    args = ["prepare-data", "voc", "--root", str(root), "--workers", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "train 2, val 1, trainaug 4" in first.output and "prepared 7" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "up to date" in second.output


def test_manifest_names_are_the_paper_tables_dataset_names():
    from gsbench.data.registry import DATASETS
    from gsbench.tables.registry import KNOWN_DATASETS

    assert set(DATASETS) <= set(KNOWN_DATASETS)
