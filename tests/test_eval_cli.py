"""`gsbench eval --pred-dir`: matching, conversion, outputs, and metrics equal to the library's."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.cityscapes import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_LABEL_TO_TRAIN,
    CITYSCAPES_TRAIN_TO_LABEL,
)
from gsbench.data.manifest import Manifest, Sample
from gsbench.errors import GsbenchError
from gsbench.evaluation.metrics_config import parse_int_list
from gsbench.evaluation.pred_dir import (
    StemFinder,
    match_prediction_files,
    prediction_lut,
    prediction_to_train_ids,
)
from gsbench.io import read_label, write_png
from gsbench.metrics import DEFAULT_CROP_FACTORS, DEFAULT_RADII
from gsbench.metrics.segmentation import SegmentationMetrics

STEMS = ("frankfurt_000000_000294", "lindau_000001_000019", "munster_000002_000003")
HEIGHT, WIDTH = 160, 320
# Crop margins scale with the image height, so the default crop factors fit these small images.
FAST = ["--radii", "3,5", "--workers", "1", "--quiet"]
RADII, CROPS = (3, 5), DEFAULT_CROP_FACTORS
runner = CliRunner()


def _blocky_labels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Region-like trainId map: a coarse random grid upsampled, with some ignore pixels."""
    coarse = rng.integers(0, 19, size=(height // 16, width // 16), dtype=np.uint8)
    labels = np.kron(coarse, np.ones((16, 16), np.uint8))
    labels[rng.random((height, width)) < 0.02] = 255
    return labels


def _perturbed(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A plausible prediction: GT shifted a few pixels, some noise, no ignore values."""
    pred = np.roll(gt, shift=(3, -5), axis=(0, 1)).copy()
    noise = rng.random(gt.shape) < 0.05
    pred[noise] = rng.integers(0, 19, size=int(noise.sum()), dtype=np.uint8)
    pred[pred == 255] = 0
    return pred


def _prepare(root, stems=STEMS, seed=0, with_instances=False):
    """A prepared folder (labels + manifest) and the GT / prediction arrays per stem."""
    rng = np.random.default_rng(seed)
    samples, gts, preds, instances = [], {}, {}, {}
    for stem in stems:
        city = stem.split("_")[0]
        gt = _blocky_labels(rng, HEIGHT, WIDTH)
        label = f"labels/val/{city}/{stem}_trainIds.png"
        write_png(root / label, gt)
        instance = None
        if with_instances:
            ids = CITYSCAPES_TRAIN_TO_LABEL[gt].astype(np.uint16)
            ids[gt == 255] = 0
            things = np.isin(gt, (11, 13))  # person, car: instance ids labelId * 1000 + k
            ids[things] = ids[things] * 1000 + (np.arange(WIDTH)[None, :] // 64).repeat(HEIGHT, 0)[things]
            instance = f"instances/val/{city}/{stem}_instanceIds.png"
            write_png(root / instance, ids)
            instances[stem] = ids
        samples.append(Sample(stem=stem, image=f"images/{stem}.png", label=label, edge=None,
                              instance=instance, height=HEIGHT, width=WIDTH))
        gts[stem], preds[stem] = gt, _perturbed(rng, gt)
    Manifest(dataset="cityscapes", num_classes=19, class_names=list(CITYSCAPES_CLASS_NAMES),
             ignore_index=255, splits={"val": samples}, root=root).save()
    return gts, preds, instances


def _write_preds(pred_dir, preds, pattern="{stem}.png"):
    for stem, pred in preds.items():
        write_png(pred_dir / pattern.format(stem=stem, city=stem.split("_")[0]), pred)


def _direct(gts, preds, instances=None, convention="gscnn"):
    """The library called on the arrays, bypassing files, matching and workers."""
    metrics = SegmentationMetrics(19, list(CITYSCAPES_CLASS_NAMES), radii=RADII, crop_factors=CROPS,
                                  fscore_convention=convention, with_instances=bool(instances))
    for stem in gts:
        metrics.update(preds[stem], gts[stem], instances[stem] if instances else None)
    return metrics.compute()


def _assert_same(actual, expected):
    """Equal dicts where nan equals nan (a class absent from GT and prediction has no IoU)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected)
        for key in expected:
            _assert_same(actual[key], expected[key])
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual)
    else:
        assert actual == expected


def _eval(tmp_path, *extra):
    out = tmp_path / "out" / "metrics.json"
    out.parent.mkdir(exist_ok=True)  # gsbench creates no folders above an output
    result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path / "preds"),
                                 "--data", str(tmp_path / "data"), "--out", str(out), *FAST, *extra])
    return result, out


def _metric_part(metrics):
    return {k: v for k, v in metrics.items() if k not in ("dataset", "split")}


@pytest.mark.parametrize("pattern", [
    "{stem}.png",                          # gsbench
    "{stem}_leftImg8bit.png",              # mmsegmentation format_only
    "{stem}_gtFine_labelIds.png",          # official evaluator naming
    "{city}/pred-{stem}-epoch80.png",      # city subfolders, any prefix and suffix
])
def test_each_naming_convention_matches_and_scores_like_the_library(tmp_path, pattern):
    gts, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds, pattern)
    (tmp_path / "preds" / "notes.txt").write_text("not an image: skipped")
    result, out = _eval(tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "cityscapes" and metrics["split"] == "val"
    _assert_same(_metric_part(metrics), _direct(gts, preds))
    assert "mIoU" in result.stdout and "sidewalk" in result.stdout


def _missing(pred_dir):
    (pred_dir / f"{STEMS[1]}.png").unlink()
    return STEMS[1]


def _duplicate(pred_dir):
    (pred_dir / "copy").mkdir()
    (pred_dir / "copy" / f"{STEMS[0]}_v2.png").write_bytes((pred_dir / f"{STEMS[0]}.png").read_bytes())
    return f"{STEMS[0]}_v2.png"


def _ambiguous(pred_dir):
    name = f"{STEMS[0]}_vs_{STEMS[2]}.png"
    (pred_dir / name).write_bytes((pred_dir / f"{STEMS[0]}.png").read_bytes())
    return name


def _stray(pred_dir):
    write_png(pred_dir / "bochum_000000_000313.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    return "bochum_000000_000313.png"


def _wrong_size(pred_dir):
    write_png(pred_dir / f"{STEMS[2]}.png", np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8))
    return f"{STEMS[2]}.png: prediction is 80x160 but sample {STEMS[2]} is 160x320 (HxW)"


def _not_png(pred_dir):
    """Only PNG predictions are scored, told by their first bytes."""
    (pred_dir / f"{STEMS[2]}.png").unlink()
    cv2.imwrite(str(pred_dir / f"{STEMS[2]}.bmp"), np.zeros((HEIGHT, WIDTH - 1), np.uint8))
    return f"{STEMS[2]}.bmp: a BMP image; predictions must be lossless PNG label maps"


def _colour(pred_dir):
    write_png(pred_dir / f"{STEMS[2]}.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    return f"{STEMS[2]}.png: expected a single-channel label image"


@pytest.mark.parametrize("break_preds", [_missing, _duplicate, _ambiguous, _stray, _wrong_size,
                                         _not_png, _colour])
def test_bad_prediction_folders_exit_2_naming_the_file_and_write_nothing(tmp_path, break_preds):
    _, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds)
    named = break_preds(tmp_path / "preds")
    csv_path, md_path = tmp_path / "out" / "t.csv", tmp_path / "out" / "t.md"
    result, out = _eval(tmp_path, "--csv", str(csv_path), "--markdown", str(md_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr
    assert not out.exists() and not csv_path.exists() and not md_path.exists()


def test_perfect_prediction_scores_100_everywhere(tmp_path):
    gts, _, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", gts)  # the GT itself; its 255 pixels are ignored anyway
    result, out = _eval(tmp_path, "--radii", "3,5,9,12")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["miou"] == metrics["pixel_acc"] == metrics["mean_acc"] == 100.0
    assert metrics["radii"] == list(DEFAULT_RADII)
    assert set(metrics["boundary_f"].values()) == {100.0}
    assert list(metrics["crop_miou"]) == [str(c) for c in DEFAULT_CROP_FACTORS]
    assert set(metrics["crop_miou"].values()) == {100.0}
    assert all(set(per_class.values()) == {100.0} for per_class in metrics["boundary_f_per_class"].values())
    present = {CITYSCAPES_CLASS_NAMES[c] for gt in gts.values() for c in np.unique(gt) if c < 19}
    assert {metrics["per_class_iou"][name] for name in present} == {100.0}
    assert metrics["num_images"] == len(STEMS)


def test_invalid_trainids_count_as_wrong_predictions(tmp_path):
    gts, _, _ = _prepare(tmp_path / "data")
    preds = {}
    for stem, gt in gts.items():
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        pred[:10] = 19        # one past the classes
        pred[10:20, :100] = 200
        pred[20:30, :50] = 255  # "ignore" is not an allowed answer either
        preds[stem] = pred
    _write_preds(tmp_path / "preds", preds)
    result, out = _eval(tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    valid = np.concatenate([gt.ravel() != 255 for gt in gts.values()])
    correct = np.concatenate([(preds[s] == gts[s]).ravel() for s in gts]) & valid
    assert metrics["pixel_acc"] == pytest.approx(100 * correct.sum() / valid.sum(), rel=1e-12)
    as_ignore = {s: np.where(p >= 19, 255, p).astype(np.uint8) for s, p in preds.items()}
    _assert_same(_metric_part(metrics), _direct(gts, as_ignore))


def test_labelid_predictions_convert_with_the_official_table(tmp_path):
    gts, preds, _ = _prepare(tmp_path / "data")
    label_ids = {}
    for stem, pred in preds.items():
        ids = CITYSCAPES_TRAIN_TO_LABEL[pred]
        ids[:8, :40] = 9    # parking: a labelId without trainId is a wrong answer, not ignore
        ids[8:16, :40] = 0  # unlabeled
        label_ids[stem] = ids
    _write_preds(tmp_path / "preds", label_ids, "{stem}_gtFine_labelIds.png")
    result, out = _eval(tmp_path, "--pred-format", "labelid")
    assert result.exit_code == 0, result.output
    expected = {s: CITYSCAPES_LABEL_TO_TRAIN[ids] for s, ids in label_ids.items()}
    assert all((expected[s][:16, :40] == 255).all() for s in expected)
    _assert_same(_metric_part(json.loads(out.read_text())), _direct(gts, expected))


def test_palette_pngs_are_read_as_indices_like_mmsegmentation_writes_them(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    gts, preds, _ = _prepare(tmp_path / "data")
    palette = np.zeros((256, 3), np.uint8)
    palette[:34] = 70  # labelIds 0..33 share one colour: only the indices can tell them apart
    for stem, pred in preds.items():
        image = image_module.fromarray(CITYSCAPES_TRAIN_TO_LABEL[pred]).convert("P")
        image.putpalette(palette.ravel().tolist())
        (tmp_path / "preds").mkdir(exist_ok=True)
        image.save(tmp_path / "preds" / f"{stem}.png")
    result, out = _eval(tmp_path, "--pred-format", "labelid")
    assert result.exit_code == 0, result.output
    _assert_same(_metric_part(json.loads(out.read_text())), _direct(gts, preds))


def test_instances_give_iiou_and_csv_markdown_are_written(tmp_path):
    gts, preds, instances = _prepare(tmp_path / "data", with_instances=True)
    _write_preds(tmp_path / "preds", preds)
    csv_path, md_path = tmp_path / "report" / "per_class.csv", tmp_path / "report" / "eval.md"
    csv_path.parent.mkdir()
    result, out = _eval(tmp_path, "--csv", str(csv_path), "--markdown", str(md_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    _assert_same(_metric_part(metrics), _direct(gts, preds, instances))
    assert metrics["iiou"] is not None and "iIoU" in result.stdout

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["class"] for r in rows] == list(CITYSCAPES_CLASS_NAMES)
    assert list(rows[0]) == ["class", "IoU", "F@3px", "F@5px"] + (["iIoU"] if "per_class_iiou" in metrics else [])
    for row in rows:  # full precision: the CSV holds exactly the JSON values
        iou = metrics["per_class_iou"][row["class"]]
        assert (row["IoU"] == "" and math.isnan(iou)) or float(row["IoU"]) == iou
    markdown = md_path.read_text()
    assert f"| mIoU | {metrics['miou']:.2f} |" in markdown
    assert "| boundary F @ 5 px |" in markdown and "| sidewalk |" in markdown


def test_one_and_two_workers_give_identical_metrics_json(tmp_path):
    stems = [f"{city}_{seq:06d}_{frame:06d}" for city in ("aachen", "bonn") for seq, frame in
             [(0, 19), (1, 7), (2, 3), (3, 15), (4, 4)]]
    _, preds, _ = _prepare(tmp_path / "data", stems=stems, seed=3)
    _write_preds(tmp_path / "preds", preds)
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"metrics_{workers}.json"
        result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path / "preds"), "--data",
                                     str(tmp_path / "data"), "--out", str(out), *FAST, "--workers", workers])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["num_images"] == len(stems)


def test_pred_dir_mode_needs_its_options_and_excludes_a_target(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--pred-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(app, ["eval", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "--pred-dir" in result.stderr
    result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--data" in result.stderr


@pytest.mark.parametrize("option,value,message", [
    ("--radii", "3,x", "--radii: expected comma-separated integers"),
    ("--radii", "0,3", "--radii: values must be >= 1"),
    ("--pred-format", "labelIds", "unknown --pred-format 'labelIds'"),
    ("--fscore-convention", "davis", "unknown --fscore-convention 'davis'"),
    ("--split", "train", "no split 'train'"),
])
def test_bad_options_are_one_line_errors(tmp_path, option, value, message):
    _, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds)
    result, out = _eval(tmp_path, option, value)
    assert result.exit_code == 2 and message in result.stderr and not out.exists()


def test_stem_finder_prefers_the_longest_stem_and_scales(tmp_path):
    finder = StemFinder(["a_000001_000002", "ba_000001_000002", "ADE_val_00000001"])
    assert finder.find("ba_000001_000002_leftImg8bit.png") == ["ba_000001_000002"]
    assert finder.find("x-a_000001_000002.png") == ["a_000001_000002"]
    assert finder.find("ADE_val_00000001.png") == ["ADE_val_00000001"]
    assert finder.find("ADE_val_0000000.png") == []
    # 5000 files against 5000 stems: a dict lookup per slice, not a scan of every stem.
    stems = [f"{city}_{i:06d}_{i * 7 % 999999:06d}" for city in ("aachen", "hamburg") for i in range(2500)]
    files = [tmp_path / f"{stem}_gtFine_labelIds.png" for stem in reversed(stems)]
    matched = match_prediction_files(files, stems)
    assert all(matched[stem].name.startswith(stem + "_gtFine") for stem in stems)


def test_prediction_conversion_and_int_lists():
    pred16 = np.array([[0, 18, 19, 300], [255, 7, 65535, 1]], np.uint16)
    np.testing.assert_array_equal(prediction_to_train_ids(pred16, prediction_lut("trainid", "x", 19)),
                                  [[0, 18, 255, 255], [255, 7, 255, 1]])
    label_ids = np.array([[7, 8, 9, 33], [0, 26, 255, 34]], np.uint8)
    cityscapes = prediction_lut("labelid", "cityscapes", 19)
    np.testing.assert_array_equal(prediction_to_train_ids(label_ids, cityscapes),
                                  [[0, 1, 255, 18], [255, 13, 255, 255]])
    ade_values = np.array([[0, 1, 150, 151]], np.uint8)  # 0 = "other", 1..150 = classes
    np.testing.assert_array_equal(prediction_to_train_ids(ade_values, prediction_lut("labelid", "ade20k", 150)),
                                  [[255, 0, 149, 255]])
    with pytest.raises(GsbenchError, match="no label-id table for dataset 'voc'"):
        prediction_lut("labelid", "voc", 21)
    assert parse_int_list("0, 50,100", "--crop-factors") == (0, 50, 100)
    with pytest.raises(GsbenchError, match="repeated"):
        parse_int_list("3,3", "--radii")


def test_inputs_are_not_modified(tmp_path):
    _, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result, out = _eval(tmp_path)
    assert result.exit_code == 0, result.output
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != out}
    assert after == before
    np.testing.assert_array_equal(read_label(tmp_path / "preds" / f"{STEMS[0]}.png"), preds[STEMS[0]])


def test_an_output_path_that_is_a_folder_is_refused_before_writing_anything(tmp_path):
    _, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds)
    (tmp_path / "taken").mkdir()
    csv_path = tmp_path / "out" / "t.csv"
    result, out = _eval(tmp_path, "--csv", str(csv_path), "--markdown", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "taken: is a folder" in result.stderr
    assert not out.exists() and not csv_path.exists()


def _brute_force_find(stems, name):
    """Slow reference: every occurrence of every stem (str.find from each position), minus the
    occurrences lying inside a longer one."""
    spans = [(i, i + len(s), s) for s in stems for i in range(len(name)) if name.find(s, i) == i]
    return sorted({s for a, b, s in spans
                   if not any(c <= a and b <= d and d - c > b - a for c, d, _ in spans)})


def test_stem_finder_agrees_with_a_brute_force_substring_scan():
    rng = np.random.default_rng(7)
    cities = ["ulm", "jena", "bonn", "aachen", "monchengladbach", "a", "ba"]
    stems = sorted({f"{rng.choice(cities)}_{rng.integers(0, 3):06d}_{rng.integers(0, 3):06d}"
                    for _ in range(60)} | {"ADE_val_00000001", "ADE_val_00000012"})
    pieces = stems + ["pred", "-", "_", "leftImg8bit", ".png", "x", "0", "ADE_val_0000000"]
    finder = StemFinder(stems)
    for _ in range(400):
        name = "".join(rng.choice(pieces, size=rng.integers(1, 5)))
        assert finder.find(name) == _brute_force_find(stems, name), name


def test_ade20k_predictions_match_by_image_name(tmp_path):
    stems = ["ADE_val_00000001", "ADE_val_00000002"]
    files = [tmp_path / "ADE_val_00000002.png", tmp_path / "pred_ADE_val_00000001_seg.png"]
    assert match_prediction_files(files, stems) == {stems[0]: files[1], stems[1]: files[0]}


def test_end_to_end_on_synthetic_cityscapes_equals_the_official_evaluator(tmp_path, monkeypatch):
    """prepare-data's synthetic Cityscapes -> labelId predictions in the official naming ->
    `gsbench eval`; mIoU, per-class IoU and iIoU equal cityscapesscripts on the raw gtFine."""
    official = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")

    from gsbench.data.synthetic import prepare_synthetic

    manifest = prepare_synthetic(tmp_path / "raw", n_train=1, n_val=3, size=(128, 256), seed=1,
                                 workers=1, progress=False)
    rng = np.random.default_rng(5)
    preds, gts = [], []
    for sample in manifest.split("val"):
        gt_ids = read_label(manifest.path(sample.instance).with_name(f"{sample.stem}_gtFine_labelIds.png"))
        pred = gt_ids.copy()
        for label_id in (7, 26, 9, 0, 24):  # road, car, parking (no trainId), unlabeled, person
            top, left = rng.integers(0, 96), rng.integers(0, 200)
            pred[top:top + 32, left:left + 56] = label_id
        city = sample.stem.split("_")[0]
        path = tmp_path / "results" / city / f"{sample.stem}_gtFine_labelIds.png"
        write_png(path, pred)
        preds.append(str(path))
        gts.append(str(manifest.path(sample.instance)).replace("instanceIds", "labelIds"))

    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path / "results"), "--data",
                                 str(tmp_path / "raw"), "--pred-format", "labelid", "--out", str(out),
                                 "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    ours = json.loads(out.read_text())

    monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # removed in NumPy 2.4, used for iIoU
    for key, value in {"evalInstLevelScore": True, "quiet": True, "JSONOutput": False}.items():
        monkeypatch.setattr(official.args, key, value)
    reference = official.evaluateImgLists(preds, gts, official.args)
    assert ours["miou"] == pytest.approx(100 * reference["averageScoreClasses"], abs=1e-9)
    assert ours["iiou"] == pytest.approx(100 * reference["averageScoreInstClasses"], abs=1e-9)
    for name, value in ours["per_class_iou"].items():
        expected = reference["classScores"][name]
        assert value is None if math.isnan(expected) else value == pytest.approx(100 * expected, abs=1e-9)
    assert ours["num_images"] == 3 and ours["miou"] < 100


def test_ade20k_raw_annotations_as_labelid_predictions_score_100_without_crops(tmp_path):
    """ADE20K: official naming (ADE_val_%08d.png), raw values as labelIds (v - 1, 0 = other),
    portrait and odd sizes fine because the distance crops are off by default."""
    from gsbench.data.synthetic import prepare_synthetic

    manifest = prepare_synthetic(tmp_path / "raw", n_train=1, n_val=2, size=(160, 120), seed=2,
                                 layout="ade20k", workers=1, progress=False)
    out = tmp_path / "metrics.json"
    annotations = manifest.root.parent / "annotations" / "validation"
    result = runner.invoke(app, ["eval", "--pred-dir", str(annotations), "--data", str(manifest.root),
                                 "--pred-format", "labelid", "--out", str(out), "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["dataset"] == "ade20k" and metrics["num_images"] == 2
    assert metrics["miou"] == metrics["pixel_acc"] == 100.0 and metrics["crop_miou"] == {}
    assert set(metrics["boundary_f"].values()) == {100.0}


def test_none_switches_boundary_f_and_crops_off(tmp_path):
    gts, preds, _ = _prepare(tmp_path / "data")
    _write_preds(tmp_path / "preds", preds)
    result, out = _eval(tmp_path, "--radii", "none", "--crop-factors", "none")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["boundary_f"] == {} and metrics["crop_miou"] == {} and metrics["radii"] == []
    direct = SegmentationMetrics(19, list(CITYSCAPES_CLASS_NAMES), radii=(), crop_factors=())
    for stem in gts:
        direct.update(preds[stem], gts[stem])
    _assert_same(_metric_part(metrics), direct.compute())


def test_labelid_tables_cover_every_prepared_dataset():
    from gsbench.data.registry import DATASETS
    from gsbench.evaluation.pred_dir import prediction_lut

    for dataset in DATASETS:
        lut = prediction_lut("labelid", dataset, num_classes=1)
        assert lut.shape == (256,) and lut.dtype == np.uint8
