"""Hostile command-line input: recipe numbers that are NaN, infinite or overflow float32, recipe
files that are not UTF-8, messages with brackets, a profile input of the wrong channel count.

Each test asserts the exit status (2), the one line naming the key or file, and that nothing was
written (the working folder is hashed before and after).
"""

import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from test_faults_data import one_error_line, snapshot

runner = CliRunner()
FLOAT32_RANGE = "must be a finite number within float32's range (|value| <= 3.403e+38)"


def train(tmp_path, *args: str):
    """``gsbench train`` on the pspnet smoke recipe into tmp_path/run (no data is needed: the
    recipe is refused before any is read)."""
    return runner.invoke(app, ["train", "--recipe", "pspnet101-smoke", "--data",
                               str(tmp_path / "data"), "--out", str(tmp_path / "run"), *args])


@pytest.mark.parametrize("value, shown", [
    (".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"),
    ("1e300", "1e300"), ("1e400", "1e400"), ("-1e39", "-1e39"),
    ("1" + "0" * 400, "1" + "0" * 400),
])
def test_a_number_that_is_not_finite_or_overflows_float32_is_refused_naming_the_key(
        tmp_path, value, shown):
    """Issue 13, failures 2 and 3: ``--set train.lr=.nan`` / ``.inf`` were accepted, and
    ``train.lr=1e300`` gave a traceback (``value cannot be converted to type float without
    overflow``) in the SGD step."""
    before = snapshot(tmp_path)
    result = train(tmp_path, "--set", f"train.lr={value}")
    one_error_line(result, f"error: --set train.lr: train.lr {FLOAT32_RANGE}, got {shown}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("override, words", [
    ("model.dropout=.nan", f"--set model.dropout: model.dropout {FLOAT32_RANGE}, got nan"),
    ("data.scale_range=[0.5,.inf]",
     f"--set data.scale_range: data.scale_range {FLOAT32_RANGE}, got inf"),
    ("train.loss_options={edge_weight: .nan}",
     f"--set train.loss_options.edge_weight: train.loss_options.edge_weight {FLOAT32_RANGE}"),
    ("train.lr=1e38", "--set train.lr: train.lr x train.head_lr_mult = 1e+39 (the head's "
                      "learning rate) exceeds float32's range (3.403e+38)"),
    ("train.iterations=" + "9" * 20,
     f"--set train.iterations: train.iterations must fit a 64-bit integer, got {'9' * 20}"),
])
def test_every_number_of_a_recipe_obeys_the_same_rule(tmp_path, override, words):
    before = snapshot(tmp_path)
    one_error_line(train(tmp_path, "--set", override), words)
    assert snapshot(tmp_path) == before


def test_a_non_finite_number_in_a_recipe_file_names_the_file_and_key(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: pspnet101-smoke\ntrain:\n  momentum: .nan\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--data",
                                 str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    one_error_line(result, f"{recipe}: train.momentum {FLOAT32_RANGE}, got nan")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["recipe", "base"])
def test_a_recipe_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, where):
    """Issue 13, failure 7: a recipe file that is not UTF-8 gave a UnicodeDecodeError
    traceback (also when it is the ``base:`` of another recipe)."""
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: café\nmodel:\n  name: pspnet\n".encode("latin-1"))
    recipe = latin1
    if where == "base":
        recipe = tmp_path / "top.yaml"
        recipe.write_text(f"base: {latin1}\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--data",
                                 str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    one_error_line(result, f"{latin1}: not a UTF-8 text file (byte 0xe9 at offset 9)")
    assert snapshot(tmp_path) == before


def test_crop_size_message_keeps_its_brackets(tmp_path):
    """Issue 13, failure 10: rich read ``[height, width]`` as markup and printed "must be a list
    of two values , got"."""
    result = train(tmp_path, "--set", "data.crop_size=[64,64,64]")
    one_error_line(result, "--set data.crop_size: data.crop_size must be a list of two values "
                           "[height, width], got [64, 64, 64]")


def test_every_error_line_is_printed_as_written(tmp_path):
    """Brackets in a user's own path are not markup either (cli.user_errors escapes them)."""
    recipe = tmp_path / "[bold]x[/bold].yaml"
    result = runner.invoke(app, ["train", "--recipe", str(recipe)])
    one_error_line(result, f"error: {recipe}: recipe file not found")


def test_profile_input_with_the_wrong_channel_count_is_one_line(tmp_path, monkeypatch):
    """Issue 13, failure 7: ``profile --input 1x4x64x64`` gave a RuntimeError traceback from
    the first convolution."""
    monkeypatch.chdir(tmp_path)
    args = ["profile", "--model", "pspnet", "--backbone", "resnet18", "--no-latency"]
    result = runner.invoke(app, args + ["--input", "1x4x64x64"])
    one_error_line(result, "error: input shape 1x4x64x64: the model takes 3 input channels "
                           "(its convolution backbone.conv1 receives the input), not 4")
    assert snapshot(tmp_path) == {}
    assert runner.invoke(app, args + ["--input", "1x3x64x64", "--json"]).exit_code == 0
