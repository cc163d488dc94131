"""prepare-data for PASCAL VOC 2012 (+ SBD) on a tiny official layout built in tmp_path (palette
PNGs, SBD .mat files, the official tar archives), and the safe extraction of tar archives."""

import io
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from gsbench.cli import app
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


@pytest.mark.parametrize("breaker, words", [
    (voc_missing_folder, "missing folder"),
    (voc_listed_without_image, "2007_000004 has no image"),
    (voc_bad_list_line, "line 2 'not an image' does not match"),
    (voc_label_without_image, "label without its image 2011_000005.jpg"),
    (voc_label_size, "label is 20x24 but its image 2007_000002.jpg is 40x24"),
    (voc_label_value, "label ids [21] are not in the official table"),
    (voc_corrupt_png, "not a readable image"),
    (sbd_mat_without_struct, "no struct field GTcls.Segmentation"),
    (sbd_corrupt_mat, "not a readable MATLAB file"),
    (sbd_missing_mat, "missing SBD label of the trainaug sample 2008_000010"),
    (sbd_mat_size, "label is 40x25 but its image"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, breaker, words):
    root = make_voc(tmp_path / "voc")
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", "voc", "--root", str(root),
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
