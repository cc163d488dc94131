"""Hostile input to `gsbench eval`: each case exits with status 2 and one line naming the file,
key or size, before any scoring, and leaves every folder as it was (hashed before and after).

Cases: boundary radii and crop factors larger than the images (once an allocation of 149 GiB),
JPEG predictions under either suffix (lossy compression changes the labels), a prepared label
swapped after prepare-data (`--verify`), an output file in a folder that does not exist,
predictions in the other --pred-format, and no worker process left behind after scoring.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.cityscapes import CITYSCAPES_TRAIN_TO_LABEL
from gsbench.io import read_label, write_png

runner = CliRunner()
N_VAL = 33  # more than the pairs below which scoring stays in one process


def tree_digest(*folders: Path) -> str:
    """One hash of every file's path and bytes under ``folders`` (what 'nothing written or
    changed' is checked against)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*")):
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Synthetic Cityscapes prepared by prepare-data (sha256 sums recorded), and a folder of
    trainId predictions: the GT with a few changed pixels."""
    from gsbench.data.synthetic import prepare_synthetic

    root = tmp_path_factory.mktemp("faults")
    manifest = prepare_synthetic(root / "raw", n_train=1, n_val=N_VAL, size=(64, 128), workers=1,
                                 progress=False)
    preds = root / "preds"
    for sample in manifest.split("val"):
        pred = read_label(manifest.path(sample.label)).copy()
        pred[pred == 255] = 0
        pred[:4] = 8
        write_png(preds / f"{sample.stem}.png", pred)
    return manifest, preds


def _eval(*words: str):
    return runner.invoke(app, ["eval", *words, "--quiet"])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _copy(tmp_path: Path, prepared) -> tuple[Path, Path]:
    manifest, preds = prepared
    raw = manifest.root.parent
    shutil.copytree(raw, tmp_path / "raw", symlinks=True)
    shutil.copytree(preds, tmp_path / "preds")
    return tmp_path / "raw" / manifest.root.name, tmp_path / "preds"


@pytest.mark.parametrize("option, value, message", [
    ("--radii", "100000", "--radii 100000: a boundary radius must be at most half the shorter "
                          "side of the images (64x128: at most 32 px)"),
    ("--radii", "3,33", "at most 32 px"),
    ("--crop-factors", "600", "--crop-factors 600: crop factor 600 leaves nothing of a 64x128 "
                              "image"),
])
def test_radii_and_crops_are_bounded_by_the_images(prepared, tmp_path, option, value, message):
    manifest, preds = prepared
    before = tree_digest(manifest.root, preds)
    start = time.perf_counter()
    result = _eval("--pred-dir", str(preds), "--data", str(manifest.root), option, value,
                   "--out", str(tmp_path / "m.json"))
    _one_line_error(result, message)
    assert time.perf_counter() - start < 30  # refused up front, nothing allocated
    assert tree_digest(manifest.root, preds) == before and not (tmp_path / "m.json").exists()


def _untrained_run(run: Path) -> None:
    """A run folder of fcn101-smoke with its untrained weights as final.pt."""
    from gsbench.engine.checkpoint import save_checkpoint
    from gsbench.io import atomic_write_text
    from gsbench.recipes import build_model_from_recipe, load_recipe

    recipe = load_recipe("fcn101-smoke")
    atomic_write_text(run / "recipe.yaml", recipe.to_yaml())
    save_checkpoint(run / "checkpoints" / "final.pt",
                    {"kind": "model", "iteration": 1, "model": build_model_from_recipe(recipe).state_dict()})


def test_radii_of_a_model_evaluation_are_checked_before_inference(prepared, tmp_path):
    manifest, _ = prepared
    run = tmp_path / "run"
    _untrained_run(run)
    before = tree_digest(run)
    result = _eval(str(run), "--data", str(manifest.root), "--radii", "100000")
    _one_line_error(result, "--radii 100000", "at most 32 px")
    assert tree_digest(run) == before  # no eval/ folder either


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_jpeg_predictions_are_refused_whatever_their_name(prepared, tmp_path, suffix):
    manifest, preds = prepared
    raw, copied = _copy(tmp_path, prepared)
    stem = manifest.split("val")[3].stem
    labels = read_label(copied / f"{stem}.png")
    (copied / f"{stem}.png").unlink()
    ok, jpeg = cv2.imencode(".jpg", labels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (copied / f"{stem}{suffix}").write_bytes(jpeg.tobytes())
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    assert (decoded != labels).any()  # what the refusal protects from
    before = tree_digest(raw, copied)
    result = _eval("--pred-dir", str(copied), "--data", str(raw), "--out", str(tmp_path / "m.json"))
    _one_line_error(result, f"{stem}{suffix}: a JPEG image; predictions must be lossless PNG")
    assert tree_digest(raw, copied) == before and not (tmp_path / "m.json").exists()


def test_verify_finds_a_label_swapped_after_prepare_data(prepared, tmp_path):
    manifest, _ = prepared
    raw, preds = _copy(tmp_path, prepared)
    first, second = manifest.split("val")[:2]
    label = raw / first.label
    shutil.copyfile(raw / second.label, label)  # a valid label map, of another image
    args = ["--pred-dir", str(preds), "--data", str(raw), "--radii", "3"]
    assert _eval(*args).exit_code == 0  # scored without a word unless asked to verify
    before = tree_digest(raw, preds)
    result = _eval(*args, "--verify", "--out", str(tmp_path / "m.json"))
    _one_line_error(result, f"{label.resolve()}: sha256 differs from the one prepare-data "
                            "recorded", f"(the label of {first.stem} changed since)")
    assert tree_digest(raw, preds) == before and not (tmp_path / "m.json").exists()
    shutil.copyfile(manifest.path(first.label), label)
    assert _eval(*args, "--verify").exit_code == 0


@pytest.mark.parametrize("option", ["--out", "--csv", "--markdown", "--save-pred"])
def test_an_output_in_a_missing_folder_is_refused_not_created(prepared, tmp_path, option):
    manifest, preds = prepared
    target = tmp_path / "no" / "such" / "m.json"
    mode = ["--pred-dir", str(preds)] if option != "--save-pred" else [str(tmp_path / "run")]
    result = _eval(*mode, "--data", str(manifest.root), option, str(target))
    _one_line_error(result, f"{option} {target}: the folder {target.parent} does not exist")
    assert not (tmp_path / "no").exists()


def test_predictions_in_the_other_format_stop_with_its_name(prepared, tmp_path):
    manifest, preds = prepared
    before = tree_digest(manifest.root, preds)
    result = _eval("--pred-dir", str(preds), "--data", str(manifest.root), "--pred-format",
                   "labelid", "--out", str(tmp_path / "m.json"))
    _one_line_error(result, "of its pixels are no evaluated class as --pred-format labelid",
                    "(--pred-format trainid)")
    assert tree_digest(manifest.root, preds) == before and not (tmp_path / "m.json").exists()
    # the same maps as labelIds are scored as labelIds, and are no trainIds
    label_ids = tmp_path / "label_ids"
    for path in preds.iterdir():
        write_png(label_ids / path.name, CITYSCAPES_TRAIN_TO_LABEL[read_label(path)])
    assert _eval("--pred-dir", str(label_ids), "--data", str(manifest.root), "--pred-format",
                 "labelid", "--radii", "3").exit_code == 0
    result = _eval("--pred-dir", str(label_ids), "--data", str(manifest.root), "--radii", "3")
    _one_line_error(result, "as --pred-format trainid", "(--pred-format labelid)")


def _processes_in_group(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # pgrp, the 5th field of /proc/PID/stat
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_scoring_with_workers_leaves_no_process_behind(prepared, tmp_path):
    manifest, preds = prepared
    out = tmp_path / "m.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "gsbench.cli", "eval", "--pred-dir", str(preds), "--data",
         str(manifest.root), "--workers", "2", "--radii", "3", "--out", str(out), "--quiet"],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output.decode()
    time.sleep(0.5)
    left = {pid: Path(f"/proc/{pid}/stat").read_text().strip()
            for pid in _processes_in_group(process.pid)}
    assert left == {}
    one = tmp_path / "one.json"
    assert _eval("--pred-dir", str(preds), "--data", str(manifest.root), "--workers", "1",
                 "--radii", "3", "--out", str(one)).exit_code == 0
    assert out.read_bytes() == one.read_bytes()


def test_verify_checks_the_images_of_a_model_evaluation_before_inference(prepared, tmp_path):
    manifest, _ = prepared
    raw, _ = _copy(tmp_path, prepared)
    first, second = manifest.split("val")[:2]
    image = (raw / first.image).resolve()
    shutil.copyfile((raw / second.image).resolve(), image)
    run = tmp_path / "run"
    _untrained_run(run)
    before = tree_digest(run)
    result = _eval(str(run), "--data", str(raw), "--verify")
    _one_line_error(result, f"{image}: sha256 differs", f"(the image of {first.stem} changed since)")
    assert tree_digest(run) == before


def test_verify_refuses_a_manifest_without_the_sums(prepared, tmp_path):
    import json

    manifest, _ = prepared
    raw, preds = _copy(tmp_path, prepared)
    path = raw / "manifest.json"
    data = json.loads(path.read_text())
    first = data["splits"]["val"][0]
    del first["sha256"]["label"]
    path.write_text(json.dumps(data))
    result = _eval("--pred-dir", str(preds), "--data", str(raw), "--verify")
    _one_line_error(result, f"no sha256 recorded for the label of {first['stem']}; prepare the "
                            "dataset again")


def test_pred_format_is_refused_for_a_model_evaluation(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--data", str(tmp_path),
                                "--pred-format", "labelid"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --pred-format: only for scoring --pred-dir, not for "
                                     "evaluating a TARGET (run folder or checkpoint)")
