"""``train.init_from``: a model initialised from another run's weights (GFF Table 1's fusion
variants from the trained PSPNet)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.engine.checkpoint import initialise_from, load_model_weights, save_checkpoint
from gsbench.engine.train import train
from gsbench.errors import GsbenchError
from gsbench.io import sha256_file
from gsbench.models.registry import build_model
from gsbench.recipes import build_model_from_recipe, load_recipe
from tests.test_train import make_prepared_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ONE_STEP = ["train.iterations=1", "train.val_every=0", "train.log_every=1", "data.crop_size=[32,32]"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_prepared_dataset(tmp_path_factory.mktemp("prepared"), num_train=2, num_val=1)


@pytest.fixture(scope="module")
def pspnet_run(data_root, tmp_path_factory):
    """A trained PSPNet smoke run: the source of the GFF variants' weights."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("runs") / "pspnet"
    train(load_recipe("pspnet101-smoke", ONE_STEP), run, data_root=data_root, quiet=True)
    return run


def test_matching_tensors_come_from_the_source_and_new_ones_stay_as_built(pspnet_run):
    source = load_model_weights(pspnet_run)
    torch.manual_seed(0)
    model = build_model_from_recipe(load_recipe("gff101-smoke"))
    built = {k: v.clone() for k, v in model.state_dict().items()}
    record = initialise_from(model, pspnet_run)
    after = model.state_dict()
    shared = [k for k in after if k in source]
    assert any(k.startswith("decode_head.ppm.") for k in shared)  # PSPNet's head, not only the backbone
    assert all(torch.equal(after[k], source[k]) for k in shared)
    assert any(not torch.equal(built[k], source[k]) for k in shared if built[k].is_floating_point())
    new = [k for k in after if k not in source]
    assert new and all(k.startswith("decode_head.") for k in new)
    assert all(torch.equal(after[k], built[k]) for k in new)
    final = pspnet_run / "checkpoints" / "final.pt"
    assert record["file"] == str(final.resolve()) and record["sha256"] == sha256_file(final)
    assert record["loaded"] == len(shared) and record["as_built"] == len(new)
    assert record["as_built_modules"] == ["decode_head.reduce_context", "decode_head.fusion",
                                          "decode_head.fused_cls"]
    assert record["unused"] == 2 and record["unused_modules"] == ["decode_head.cls"]


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(pspnet_run):
    model = build_model("pspnet", num_classes=5, backbone="resnet_tiny", pretrained=None)
    with pytest.raises(GsbenchError, match=r"tensor decode_head\.cls\.1\.weight has shape "
                       r"\[19, 32, 1, 1\] but the model's has \[5, 32, 1, 1\]"):
        initialise_from(model, pspnet_run / "checkpoints" / "final.pt")


def test_weights_without_a_tensor_of_the_model_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"kind": "model", "model": {"head.weight": torch.zeros(2)}})
    model = build_model("pspnet", num_classes=5, backbone="resnet_tiny", pretrained=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(GsbenchError, match="no tensor name of these weights is one of the model's"):
        initialise_from(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_run_records_its_initialisation_and_resume_does_not_repeat_it(pspnet_run, data_root, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(pspnet_run, source)
    recipe = load_recipe("gff101-smoke", [*ONE_STEP, "train.iterations=2", "train.checkpoint_every=1",
                                          f"train.init_from={source}"])
    run = tmp_path / "gff"
    stopped = train(recipe, run, data_root=data_root, quiet=True, stop_after=1)
    assert not stopped.finished
    record = json.loads((run / "init_from.json").read_text())
    assert record["file"] == str((source / "checkpoints" / "final.pt").resolve())
    assert record["loaded"] > 0 and "decode_head.fused_cls" in record["as_built_modules"]
    weights_at_1 = load_model_weights(run / "checkpoints" / "last.pt")
    shutil.rmtree(source)  # a resumed run takes its weights from its checkpoint, not the source
    resumed = train(recipe, run, data_root=data_root, quiet=True, resume=True, stop_after=1)
    assert resumed.iteration == 1
    assert all(torch.equal(v, weights_at_1[k]) for k, v in
               load_model_weights(run / "checkpoints" / "last.pt").items())
    assert train(recipe, run, data_root=data_root, quiet=True, resume=True).finished


@pytest.mark.parametrize("where", ["missing", "empty folder", "not a checkpoint"])
def test_bad_init_from_is_one_line_exit_2_and_writes_nothing(where, data_root, tmp_path):
    source = tmp_path / "source"
    if where == "empty folder":
        source.mkdir()
    elif where == "not a checkpoint":
        source = tmp_path / "weights.pt"
        source.write_bytes(b"not a checkpoint")
    out = tmp_path / "runs" / "gff"
    args = ["train", "--recipe", "gff101-smoke", "--data", str(data_root), "--out", str(out), "--quiet"]
    for item in [*ONE_STEP, f"train.init_from={source}"]:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(source) in lines[0]
    assert not (tmp_path / "runs").exists()
