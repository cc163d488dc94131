"""`gsbench predict` on JPEG and PNG images of odd sizes, and the panels of `gsbench eval --show`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.data.registry import get_dataset
from gsbench.data.synthetic import prepare_synthetic
from gsbench.engine.checkpoint import save_checkpoint
from gsbench.io import read_label, read_rgb
from gsbench.predict import OUTPUT_FOLDERS, find_images, predict_images
from gsbench.recipes import build_model_from_recipe, load_recipe
from gsbench.visualize import PANELS_DIR, colorize


def make_run(run_dir: Path, recipe_name: str, overrides=(), data: Path | None = None) -> Path:
    """A run folder with the recipe's randomly initialised weights as its final checkpoint."""
    recipe = load_recipe(recipe_name, [*overrides, *([f"data.root={data}"] if data else [])])
    torch.manual_seed(0)
    model = build_model_from_recipe(recipe, pretrained=None)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    save_checkpoint(run_dir / "checkpoints" / "final.pt",
                    {"model": model.state_dict(), "iteration": 1, "recipe": recipe.to_dict()})
    return run_dir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A PNG of 37x91, a JPEG of 101x67 and a folder with a second JPEG (.JPEG) of 50x50."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "odd.png"), rng.integers(0, 255, (37, 91, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "tall.jpg"), rng.integers(0, 255, (101, 67, 3), dtype=np.uint8))
    (root / "folder").mkdir()
    cv2.imwrite(str(root / "folder" / "square.JPEG"), rng.integers(0, 255, (50, 50, 3), dtype=np.uint8))
    (root / "folder" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "psp", "pspnet101-smoke")


def test_predict_writes_every_output_at_the_images_size(run, images, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(run), str(images / "odd.png"), str(images / "tall.jpg"),
            str(images / "folder"), "--out", str(out), "--labelids"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "predicted 3 image(s)" in result.output
    palette = get_dataset("cityscapes").palette
    for stem, size in (("odd", (37, 91)), ("tall", (101, 67)), ("square", (50, 50))):
        train_ids = read_label(out / "trainIds" / f"{stem}.png")
        assert train_ids.shape == size and train_ids.dtype == np.uint8 and train_ids.max() < 19
        colour = read_rgb(out / "color" / f"{stem}.png")
        assert (colour == colorize(train_ids, palette)).all()  # the official Cityscapes colours
        assert read_rgb(out / "overlay" / f"{stem}.png").shape == (*size, 3)
        label_ids = read_label(out / "labelIds" / f"{stem}.png")
        assert set(np.unique(label_ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25,
                                             26, 27, 28, 31, 32, 33}
    assert not (out / "boundary").exists()  # PSPNet has no boundary output


def test_predict_options_and_folders_that_can_be_scored(run, images, tmp_path):
    plain = predict_images(run, [images / "odd.png"], tmp_path / "a")
    flipped = predict_images(run, [images / "odd.png"], tmp_path / "b",
                             protocol={"scales": (0.75, 1.0), "flip": True, "mode": "slide"})
    assert plain[0].train_ids.is_file() and flipped[0].train_ids.is_file()
    result = CliRunner().invoke(app, ["predict", str(run), str(images / "tall.jpg"), "--out",
                                      str(tmp_path / "c"), "--slide", "--flip", "--scales",
                                      "0.75,1.0", "--batch", "2", "--quiet"])
    assert result.exit_code == 0 and result.output == ""
    assert read_label(tmp_path / "c" / "trainIds" / "tall.png").shape == (101, 67)
    assert plain[0].boundary is None and plain[0].label_ids is None
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        set(OUTPUT_FOLDERS) - {"boundary", "labelIds"})


@pytest.mark.parametrize("recipe", ["gscnn101-smoke", "ranet101-smoke"])
def test_boundary_map_of_a_model_with_a_boundary_output(images, tmp_path, recipe):
    run = make_run(tmp_path / "run", recipe)  # Gated-SCNN's "edge", RANet's "boundary"
    (written,) = predict_images(run, [images / "tall.jpg"], tmp_path / "out")
    assert written.boundary is not None
    boundary = read_rgb(written.boundary)
    assert boundary.shape == (101, 67, 3) and (boundary[..., 0] == boundary[..., 1]).all()


@pytest.mark.parametrize("name, content, message", [
    ("fake.png", b"GIF89a not a png", "not a PNG or JPEG image"),
    ("missing.png", None, "no such image file or folder"),
])
def test_bad_images_are_one_line_and_nothing_is_written(run, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(run), str(path), "--out", str(out)])
    assert result.exit_code == 2 and f"{path}: {message}" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_same_stem_twice_and_empty_folder_are_refused(images, tmp_path):
    cv2.imwrite(str(tmp_path / "odd.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(Exception, match="same name as"):
        find_images([images / "odd.png", tmp_path / "odd.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no .jpg, .jpeg, .png files"):
        find_images([tmp_path / "empty"])


def test_labelids_need_a_cityscapes_model(images, tmp_path):
    run = make_run(tmp_path / "ade", "pspnet101-smoke", ["data.dataset=ade20k",
                                                         "data.num_classes=150"])
    result = CliRunner().invoke(app, ["predict", str(run), str(images / "odd.png"), "--out",
                                      str(tmp_path / "out"), "--labelids"])
    assert result.exit_code == 2 and "--labelids" in result.output
    written = predict_images(run, [images / "odd.png"], tmp_path / "ok")
    colour = read_rgb(written[0].color)
    train_ids = read_label(written[0].train_ids)
    assert (colour == colorize(train_ids, get_dataset("ade20k").palette)).all()


# --- gsbench eval --show ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    prepare_synthetic(root / "raw", n_train=2, n_val=3, size=(64, 128), workers=1, progress=False)
    return root / "raw" / "gsbench"


def test_eval_of_a_run_writes_panels_beside_its_metrics(data, tmp_path):
    run = make_run(tmp_path / "run", "pspnet101-smoke", data=data)
    result = CliRunner().invoke(app, ["eval", str(run), "--data", str(data), "--show", "2"])
    assert result.exit_code == 0, result.output
    folder = run / "eval" / "val_ss" / PANELS_DIR
    panels = sorted(folder.glob("*.png"))
    assert len(panels) == 2 and "wrote 2 prediction panel(s)" in result.output
    picture = read_rgb(panels[0])
    assert picture.shape[1:] == (3 * 128, 3) and picture.shape[0] > 2 * 64
    assert json.loads((run / "eval" / "val_ss" / "metrics.json").read_text())["num_images"] == 3


def test_eval_show_dir_and_show_zero(data, tmp_path):
    run = make_run(tmp_path / "run", "pspnet101-smoke", data=data)
    shown = tmp_path / "shown"
    result = CliRunner().invoke(app, ["eval", str(run), "--data", str(data), "--show-dir",
                                      str(shown), "--radii", "5,9", "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert len(list(shown.glob("*.png"))) == 3  # --show 4, three val images
    assert not (run / "eval").exists()  # metrics went to --out, panels to --show-dir
    again = CliRunner().invoke(app, ["eval", str(run), "--data", str(data), "--show", "0"])
    assert again.exit_code == 0 and not (run / "eval" / "val_ss" / PANELS_DIR).exists()


def test_eval_pred_dir_panels(data, tmp_path):
    preds = tmp_path / "preds"
    images = sorted((data.parent / "leftImg8bit" / "val").rglob("*.png"))  # city subfolders
    run = make_run(tmp_path / "run", "pspnet101-smoke")
    result = CliRunner().invoke(app, ["predict", str(run), *map(str, images), "--out", str(preds)])
    assert result.exit_code == 0, result.output
    shown = tmp_path / "shown"
    result = CliRunner().invoke(app, ["eval", "--pred-dir", str(preds / "trainIds"), "--data",
                                      str(data), "--show-dir", str(shown), "--show", "1"])
    assert result.exit_code == 0, result.output
    assert len(list(shown.glob("*.png"))) == 1
