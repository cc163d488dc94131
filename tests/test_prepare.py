"""prepare-data for Cityscapes and ADE20K on tiny raw datasets built in tmp_path."""

import hashlib
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data import prepare as prepare_module
from gsbench.data.ade20k import ADE20K_CLASS_NAMES
from gsbench.data.cityscapes import CITYSCAPES_CLASS_NAMES
from gsbench.data.edges import edge_map
from gsbench.data.manifest import Manifest
from gsbench.data.prepare import JOURNAL_NAME, prepare_raw
from gsbench.data.raw import extract_zip
from gsbench.errors import GsbenchError

H, W = 32, 64
CITIES = {"train": ["aachen", "aachen", "bad_honnef"], "val": ["frankfurt"], "test": ["berlin"]}
runner = CliRunner()


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = array[..., ::-1]
    assert cv2.imwrite(str(path), array)


def label_ids(rng) -> np.ndarray:
    """Blocks of labelIds 0..33 (valid ids of the official table)."""
    coarse = rng.integers(0, 34, size=(H // 8, W // 8))
    return np.kron(coarse, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


def make_cityscapes(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, cities in CITIES.items():
        for frame, city in enumerate(cities):
            stem = f"{city}_000000_{frame:06d}"
            write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                  rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            gt = root / "gtFine" / split / city
            labels = label_ids(rng) if split != "test" else np.zeros((H, W), np.uint8)
            write(gt / f"{stem}_gtFine_labelIds.png", labels)
            write(gt / f"{stem}_gtFine_instanceIds.png", (labels.astype(np.uint16) * 1000))
            write(gt / f"{stem}_gtFine_color.png", np.zeros((H, W, 3), np.uint8))
    return root


def make_ade20k(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for folder, prefix, count in (("training", "train", 2), ("validation", "val", 1)):
        for i in range(1, count + 1):
            stem = f"ADE_{prefix}_{i:08d}"
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            path = base / "images" / folder / f"{stem}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), image)
            coarse = rng.integers(0, 151, size=(H // 8, W // 8))
            labels = np.kron(coarse, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
            write(base / "annotations" / folder / f"{stem}.png", labels)
    return base


def tree_digest(root: Path, skip: str = "gsbench") -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root, outside the prepared folder."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.relative_to(root).parts
    }


def assert_refused(result, words: str, culprit: Path, root: Path, before) -> str:
    """``prepare-data`` refused bad input: exit 2, one ``error:`` line naming ``culprit`` with
    ``words``, no manifest written and the raw tree under ``root`` unchanged (``before`` is its
    :func:`tree_digest`). Returns the message."""
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1  # one line (rich's soft wrap keeps it whole)
    message = result.output.strip()
    assert message.startswith("error:") and words in message, message
    assert str(culprit) in message
    assert not (root / "gsbench/manifest.json").exists()
    assert tree_digest(root) == before
    return message


def output_mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def zip_folder(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)


# --- Cityscapes ---------------------------------------------------------------------------------

def test_cityscapes_outputs_manifest_and_raw_files_untouched(tmp_path):
    id2label = pytest.importorskip("cityscapesscripts.helpers.labels").id2label
    root = make_cityscapes(tmp_path / "cityscapes")
    before = tree_digest(root)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    assert tree_digest(root) == before  # raw files are never modified

    out = root / "gsbench"
    loaded = Manifest.load(root)  # finds root/gsbench/manifest.json
    assert loaded.root == out.resolve()
    assert loaded.dataset == manifest.dataset == "cityscapes"
    assert loaded.class_names == list(CITYSCAPES_CLASS_NAMES) and loaded.num_classes == 19
    assert list(loaded.splits) == ["train", "val", "test"]
    assert [len(loaded.split(s)) for s in ("train", "val", "test")] == [3, 1, 1]
    assert loaded.splits == manifest.splits

    sample = loaded.split("train")[2]
    assert sample.stem == "bad_honnef_000000_000002"
    assert sample.image == f"../leftImg8bit/train/bad_honnef/{sample.stem}_leftImg8bit.png"
    assert sample.label == f"labels/train/bad_honnef/{sample.stem}_trainIds.png"
    assert sample.edge == f"edges/train/bad_honnef/{sample.stem}_edge.png"
    assert sample.instance == f"../gtFine/train/bad_honnef/{sample.stem}_gtFine_instanceIds.png"
    assert (sample.height, sample.width) == (H, W)
    raw_label = root / "gtFine/train/bad_honnef" / f"{sample.stem}_gtFine_labelIds.png"
    for key, path in {"image": loaded.path(sample.image), "label": loaded.path(sample.label),
                      "edge": loaded.path(sample.edge), "instance": loaded.path(sample.instance),
                      "raw_label": raw_label}.items():
        assert sample.sha256[key] == hashlib.sha256(path.read_bytes()).hexdigest(), key

    for split in ("train", "val"):
        for s in loaded.split(split):
            raw = cv2.imread(str(loaded.path(s.instance).parent / f"{s.stem}_gtFine_labelIds.png"),
                             cv2.IMREAD_UNCHANGED)
            train_ids = cv2.imread(str(loaded.path(s.label)), cv2.IMREAD_UNCHANGED)
            edges = cv2.imread(str(loaded.path(s.edge)), cv2.IMREAD_UNCHANGED)
            assert train_ids.dtype == np.uint8 and edges.dtype == np.uint8
            expected = np.vectorize(lambda i: id2label[int(i)].trainId)(raw)
            expected[(expected < 0) | (expected >= 255)] = 255
            np.testing.assert_array_equal(train_ids, expected)
            np.testing.assert_array_equal(edges, edge_map(train_ids, 2))
            assert edges.any() and set(np.unique(edges)) <= {0, 1}

    test = loaded.split("test")[0]
    assert (test.label, test.edge, test.instance) == (None, None, None)
    assert set(test.sha256) == {"image"}
    assert not (out / JOURNAL_NAME).exists()


def test_every_official_label_id_converts_to_its_train_id(tmp_path):
    official = pytest.importorskip("cityscapesscripts.helpers.labels")
    root = make_cityscapes(tmp_path / "cs")
    ids = np.array([lab.id for lab in official.labels if lab.id >= 0], dtype=np.uint8)
    raw = np.resize(ids, (H, W))  # every labelId 0..33 appears
    write(root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_labelIds.png", raw)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    train_ids = cv2.imread(str(manifest.path(manifest.split("val")[0].label)), cv2.IMREAD_UNCHANGED)
    for lab in official.labels:
        if lab.id < 0:
            continue
        expected = lab.trainId if 0 <= lab.trainId < 255 else 255
        assert np.all(train_ids[raw == lab.id] == expected), lab.name


def test_rerun_is_noop_and_a_changed_file_redoes_only_its_sample(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    out = tmp_path / "prepared"
    first = prepare_raw("cityscapes", root, out, workers=1, progress=False)
    assert (first.prepared, first.reused, first.up_to_date) == (5, 0, False)
    mtimes = output_mtimes(out)

    again = prepare_raw("cityscapes", root, out, workers=1, progress=False)
    assert again.up_to_date and again.prepared == 0
    assert output_mtimes(out) == mtimes  # nothing rewritten, not even manifest.json
    assert again.manifest.splits == first.manifest.splits

    raw = root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_labelIds.png"
    write(raw, np.full((H, W), 7, np.uint8))  # all road
    changed = prepare_raw("cityscapes", root, out, workers=1, progress=False)
    assert (changed.prepared, changed.reused, changed.up_to_date) == (1, 4, False)
    now = output_mtimes(out)
    redone = {k for k in mtimes if now[k] != mtimes[k]}
    assert redone == {"manifest.json", "labels/val/frankfurt/frankfurt_000000_000000_trainIds.png",
                      "edges/val/frankfurt/frankfurt_000000_000000_edge.png"}
    label = cv2.imread(str(out / "labels/val/frankfurt/frankfurt_000000_000000_trainIds.png"), 0)
    assert np.all(label == 0)


def test_failed_rerun_leaves_no_stale_manifest_and_the_fixed_rerun_reuses_outputs(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    prepare_raw("cityscapes", root, workers=1, progress=False)
    label = root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_labelIds.png"
    good = label.read_bytes()
    write(label, np.full((H, W), 99, np.uint8))
    with pytest.raises(GsbenchError, match=r"label ids \[99\]"):
        prepare_raw("cityscapes", root, workers=1, progress=False)
    assert not (root / "gsbench/manifest.json").exists()
    label.write_bytes(good)
    result = prepare_raw("cityscapes", root, workers=1, progress=False)
    assert (result.prepared, result.reused) == (1, 4)


def test_interrupted_run_resumes_from_the_journal(tmp_path, monkeypatch):
    root = make_cityscapes(tmp_path / "cs")
    out = root / "gsbench"
    real_job = prepare_module._prepare_job
    calls = []

    def interrupted_after_two(job):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(job[0].key)
        return real_job(job)

    monkeypatch.setattr(prepare_module, "_prepare_job", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare_raw("cityscapes", root, workers=1, progress=False)
    assert not (out / "manifest.json").exists()
    assert len((out / JOURNAL_NAME).read_text().splitlines()) == 1 + 2  # header + 2 samples
    with open(out / JOURNAL_NAME, "a") as journal:  # a line cut short by the interruption
        journal.write('{"key": "val/frankfurt_000000_000000", "sam')
    mtimes = output_mtimes(out)
    monkeypatch.setattr(prepare_module, "_prepare_job", real_job)

    resumed = prepare_raw("cityscapes", root, workers=1, progress=False)
    assert (resumed.prepared, resumed.reused) == (3, 2)
    now = output_mtimes(out)
    finished = [k for k in mtimes if k.startswith(("labels/", "edges/"))]
    assert len(calls) == 2 and all(k.rsplit("/", 1)[1] in " ".join(finished) for k in calls)
    assert len(finished) == 4 and all(now[k] == mtimes[k] for k in finished)
    assert not (out / JOURNAL_NAME).exists()
    fresh = prepare_raw("cityscapes", root, tmp_path / "fresh", workers=1, progress=False)
    for a, b in zip(resumed.manifest.split("train"), fresh.manifest.split("train")):
        assert a.sha256 == b.sha256


def test_two_worker_processes_give_the_same_manifest(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    one = prepare_raw("cityscapes", root, tmp_path / "one", workers=1, progress=False)
    two = prepare_raw("cityscapes", root, tmp_path / "two", workers=2, progress=False)
    assert (one.prepared, two.prepared) == (5, 5)
    # same relative depth of both prepared folders, so even the paths agree
    assert one.manifest.to_json()["splits"] == two.manifest.to_json()["splits"]


def test_cityscapes_from_official_zip_archives(tmp_path):
    src = make_cityscapes(tmp_path / "src")
    root = tmp_path / "zips"
    root.mkdir()
    zip_folder(src / "leftImg8bit", root / "leftImg8bit_trainvaltest.zip", {"README": b"a"})
    zip_folder(src / "gtFine", root / "gtFine_trainvaltest.zip", {"README": b"bb"})
    archives = tree_digest(root)
    manifest = prepare_raw("cityscapes", root, workers=1, progress=False).manifest
    assert tree_digest(root) == archives
    sample = manifest.split("val")[0]
    assert sample.image.startswith("raw/leftImg8bit/val/frankfurt/")
    assert sample.instance.startswith("raw/gtFine/val/frankfurt/")
    assert manifest.path(sample.image).is_file()
    assert not (root / "gsbench/raw/README").exists()  # only the dataset folders are extracted
    mtimes = output_mtimes(root / "gsbench")
    result = prepare_raw("cityscapes", root, workers=1, progress=False)
    assert result.up_to_date and output_mtimes(root / "gsbench") == mtimes  # no re-extraction


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "leftImg8bit/../../evil.txt",
                                    "symlink"])
def test_zip_slip_members_are_refused(tmp_path, member):
    archive = tmp_path / "leftImg8bit_trainvaltest.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("leftImg8bit/train/ok.txt", b"fine")
        if member == "symlink":
            info = zipfile.ZipInfo("leftImg8bit/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
            member = "leftImg8bit/link"
        else:
            zf.writestr(member, b"evil")
    with pytest.raises(GsbenchError, match=f"refusing .*{member!r}".replace("/", ".")) as err:
        extract_zip(archive, tmp_path / "dest")
    assert str(archive) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "dest").exists() and not (tmp_path / "evil.txt").exists()


def test_extraction_resumes_and_skips_members_with_the_right_size(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("d/one.txt", b"1" * 10)
        zf.writestr("d/two.txt", b"2" * 20)
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "d/one.txt").write_bytes(b"x" * 10)  # right size: kept as is
    (dest / "d/two.txt").write_bytes(b"half")  # cut short: extracted again
    extract_zip(archive, dest)
    assert (dest / "d/one.txt").read_bytes() == b"x" * 10
    assert (dest / "d/two.txt").read_bytes() == b"2" * 20
    assert sorted(p.name for p in (dest / "d").iterdir()) == ["one.txt", "two.txt"]


# --- validation through the CLI -----------------------------------------------------------------

def break_corrupt_png(root):
    path = root / "gtFine/train/aachen/aachen_000000_000001_gtFine_labelIds.png"
    path.write_bytes(path.read_bytes()[:40])
    return path


def break_corrupt_image(root):
    path = root / "leftImg8bit/test/berlin/berlin_000000_000000_leftImg8bit.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    return path


def break_instance_size(root):
    path = root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_instanceIds.png"
    write(path, np.zeros((H // 2, W), np.uint16))
    return path


def break_unpaired_image(root):
    path = root / "leftImg8bit/val/frankfurt/frankfurt_000000_000005_leftImg8bit.png"
    write(path, np.zeros((H, W, 3), np.uint8))
    return path


def break_unpaired_label(root):
    path = root / "gtFine/val/frankfurt/frankfurt_000000_000007_gtFine_labelIds.png"
    write(path, np.zeros((H, W), np.uint8))
    return path


def break_label_size(root):
    path = root / "gtFine/train/aachen/aachen_000000_000000_gtFine_labelIds.png"
    write(path, np.zeros((H, W // 2), np.uint8))
    return path


def break_unknown_id(root):
    path = root / "gtFine/val/frankfurt/frankfurt_000000_000000_gtFine_labelIds.png"
    labels = np.full((H, W), 7, np.uint8)
    labels[3, 3] = 34
    write(path, labels)
    return path


def break_stem(root):
    path = root / "leftImg8bit/train/aachen/aachen_12_000000_leftImg8bit.png"
    write(path, np.zeros((H, W, 3), np.uint8))
    return path


def break_missing_folder(root):
    import shutil

    shutil.rmtree(root / "gtFine")
    return root


def break_missing_split(root):
    import shutil

    shutil.rmtree(root / "leftImg8bit/val")
    return root / "leftImg8bit"


def break_empty_split(root):
    import shutil

    shutil.rmtree(root / "leftImg8bit/train/aachen")
    shutil.rmtree(root / "leftImg8bit/train/bad_honnef")
    return root / "leftImg8bit/train"


@pytest.mark.parametrize("breaker, words", [
    (break_corrupt_png, "not a readable image"),
    (break_corrupt_image, "not a readable image"),
    (break_instance_size, "instance map is 64x16 but its image"),
    (break_unpaired_image, "image without its label"),
    (break_unpaired_label, "label without its image"),
    (break_label_size, "label is 32x32 but its image"),
    (break_unknown_id, "label ids [34] are not in the official table"),
    (break_stem, "does not follow aachen_<seq>_<frame>"),
    (break_missing_folder, "missing folder gtFine/"),
    (break_missing_split, "missing split folder val/"),
    (break_empty_split, "no city folders with *_leftImg8bit.png files"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, breaker, words):
    root = make_cityscapes(tmp_path / "cs")
    culprit = breaker(root)
    before = tree_digest(root)
    result = runner.invoke(app, ["prepare-data", "cityscapes", "--root", str(root),
                                 "--workers", "1", "--quiet"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # undo rich's wrapping of long lines
    assert message.startswith("error:") and words in message
    assert str(culprit) in message
    assert not (root / "gsbench/manifest.json").exists()
    assert tree_digest(root) == before


def test_cli_prints_summary_then_up_to_date(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    args = ["prepare-data", "cityscapes", "--root", str(root), "--workers", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "train 3, val 1, test 1" in first.output and "prepared 5" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "up to date" in second.output
    assert runner.invoke(app, args + ["--quiet"]).output == ""


# --- ADE20K -------------------------------------------------------------------------------------

def test_ade20k_folder_and_zip(tmp_path):
    base = make_ade20k(tmp_path / "ade")
    manifest = prepare_raw("ade20k", base, workers=1, progress=False).manifest
    assert manifest.dataset == "ade20k" and manifest.num_classes == 150
    assert manifest.class_names == list(ADE20K_CLASS_NAMES) and len(set(ADE20K_CLASS_NAMES)) == 150
    assert list(manifest.splits) == ["train", "val"]
    sample = manifest.split("val")[0]
    assert sample.stem == "ADE_val_00000001" and sample.instance is None
    assert sample.image == "../images/validation/ADE_val_00000001.jpg"
    assert sample.label == "labels/val/ADE_val_00000001_trainIds.png"
    raw = cv2.imread(str(base / "annotations/validation/ADE_val_00000001.png"),
                     cv2.IMREAD_UNCHANGED)
    train_ids = cv2.imread(str(manifest.path(sample.label)), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(train_ids, np.where(raw == 0, 255, raw.astype(int) - 1))
    edges = cv2.imread(str(manifest.path(sample.edge)), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(edges, edge_map(train_ids, 2))

    zip_root = tmp_path / "zipped"
    zip_root.mkdir()
    zip_folder(base, zip_root / "ADEChallengeData2016.zip")
    from_zip = prepare_raw("ade20k", zip_root, workers=1, progress=False).manifest
    image = from_zip.split("val")[0].image
    assert image == "raw/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"
    assert [s.sha256 for s in from_zip.split("train")] == [
        s.sha256 for s in manifest.split("train")]


def test_ade20k_bad_input(tmp_path):
    base = make_ade20k(tmp_path / "ade")
    label = base / "annotations/training/ADE_train_00000002.png"
    write(label, np.full((H, W), 151, np.uint8))
    result = runner.invoke(app, ["prepare-data", "ade20k", "--root", str(base), "--quiet"])
    assert result.exit_code == 2
    assert str(label) in " ".join(result.output.split()) and "[151]" in result.output
    (base / "images/validation/ADE_val_00000001.jpg").rename(base / "images/validation/val_1.jpg")
    with pytest.raises(GsbenchError, match="does not follow ADE_val_"):
        prepare_raw("ade20k", base, workers=1, progress=False)
    with pytest.raises(GsbenchError, match="missing folders images/ and annotations/"):
        prepare_raw("ade20k", tmp_path, workers=1, progress=False)
