"""hszhao/semseg's released PSPNet / PSANet checkpoints: every tensor of each architecture and
dataset lands on exactly one tensor of the recipe's model, the imported run records the
source's preprocessing and test procedure, the official form (align_corners) computes what
semseg computes, and bad files stop with one line."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner
from weights_fixtures import load_fixture, random_state_dict

from gsbench.cli import app
from gsbench.errors import GsbenchError
from gsbench.evaluation.model import load_model_for_eval
from gsbench.models import build_model
from gsbench.protocol import TestProtocol
from gsbench.recipes import build_model_from_recipe, load_recipe
from gsbench.weights import SOURCES, get_source
from gsbench.weights.importer import import_weights, imported_recipe
from gsbench.weights.mapping import map_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random-init backbones warn

SOURCE = get_source("semseg")
#: (semseg architecture, dataset) -> the gsbench recipe that receives its released file
RECIPES = {
    ("pspnet50", "cityscapes"): "pspnet50", ("pspnet50", "ade20k"): "pspnet50_ade20k",
    ("pspnet50", "voc2012"): "pspnet50_voc2012",
    ("pspnet101", "cityscapes"): "pspnet101", ("pspnet101", "ade20k"): "pspnet101_ade20k",
    ("pspnet101", "voc2012"): "pspnet101_voc2012",
    ("psanet50", "cityscapes"): "psanet50", ("psanet50", "ade20k"): "psanet50_ade20k",
    ("psanet50", "voc2012"): "psanet50_voc2012",
    ("psanet101", "cityscapes"): "psanet101", ("psanet101", "ade20k"): "psanet101_ade20k",
    ("psanet101", "voc2012"): "psanet101_voc2012",
}


def save_release(path, state, zip_format=True):
    """The file as semseg's tool/train.py writes it (DataParallel keys, epoch, optimizer)."""
    torch.save({"epoch": 200, "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}},
               path, _use_new_zipfile_serialization=zip_format)


@pytest.mark.parametrize("arch, dataset", sorted(RECIPES))
def test_every_tensor_of_every_architecture_and_dataset_is_mapped(arch, dataset):
    """The fixture's state dict (meta tensors) maps onto the recipe's model in its official
    form: each model parameter and buffer receives exactly one source tensor (PSANet's mask-size
    buffers are derived from the recipe), nothing is dropped (the aux head is mapped too)."""
    fixture = load_fixture("semseg", arch)
    recipe = load_recipe(RECIPES[arch, dataset])
    SOURCE.check_recipe(recipe)
    resolved = imported_recipe(recipe, SOURCE, "file.pth")
    with torch.device("meta"):
        model = build_model_from_recipe(resolved)
    target = model.state_dict()
    source = {k[len("module."):]: v
              for k, v in random_state_dict(fixture, dataset, device="meta").items()}
    state, report = map_state_dict(source, SOURCE.mapping(resolved), target, "file.pth")
    assert set(state) == set(target)
    assert sorted(report.mapped.values()) == sorted(set(report.mapped.values()))
    assert set(report.mapped) == set(source) and not report.dropped
    derived = {k for k in target if k.endswith(".mask_hw")}
    assert set(report.kept) == derived
    assert set(report.mapped.values()) == set(target) - derived
    assert len(report.mapped) == fixture["num_tensors"]


@pytest.mark.parametrize("arch, recipe, zip_format", [
    ("pspnet50", "pspnet50", True),
    pytest.param("psanet50", "psanet50_voc2012", False, marks=pytest.mark.slow),
])
def test_imported_run_holds_the_tensors_and_the_sources_facts(tmp_path, arch, recipe,
                                                               zip_format):
    fixture = load_fixture("semseg", arch)
    dataset = load_recipe(recipe).data.dataset
    state = random_state_dict(fixture, dataset)
    release = tmp_path / "train_epoch_200.pth"
    save_release(release, state, zip_format)
    run = tmp_path / "run"
    result = import_weights(release, "semseg", recipe, run, command=["gsbench", "import-weights"])
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "command.txt", "provenance.json", "recipe.yaml", "versions.json"]
    assert not list(tmp_path.glob(".run.*"))  # no staging folder left
    loaded = load_model_for_eval(run)  # gsbench eval reads it like a trained run
    model_state = loaded.model.state_dict()
    for key, target in result.report.mapped.items():
        assert torch.equal(model_state[target], state["module." + key]), key
    p = result.provenance
    assert (p["source"], p["repository"], p["file"]) == ("semseg", "hszhao/semseg",
                                                         "train_epoch_200.pth")
    assert p["sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()
    assert p["checkpoint"]["dropped_entries"].keys() == {"epoch", "optimizer"}
    assert p["mapping"]["keys"] == result.report.mapped
    assert p["requested_recipe"] == load_recipe(recipe).to_dict()  # the cells it fills (report)
    # the source's documented preprocessing (util/dataset.py, tool/test.py): RGB 0-255,
    # mean and std of ImageNet times 255
    assert p["preprocessing"]["channel_order"] == "RGB"
    assert p["preprocessing"]["value_range"] == 255
    assert p["preprocessing"]["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert p["preprocessing"]["std"] == pytest.approx([58.395, 57.12, 57.375])
    # config/<dataset>/<dataset>_<arch>.yaml TEST: base_size, test_h x test_w; ss with flip
    crop, base = {"cityscapes": (713, 2048), "voc2012": (465, 512)}[dataset]
    assert loaded.recipe.test == TestProtocol("semseg", "slide", (1.0,), True, (crop, crop),
                                              None, (base,))
    assert p["test_protocol"] == loaded.recipe.test.to_dict()
    assert loaded.recipe.model.align_corners is True and loaded.model.align_corners is True
    if arch.startswith("psanet"):
        assert loaded.recipe.model.mask_size == [59, 59]


@pytest.mark.parametrize("recipe, branch", [("psanet50_collect", "collect"),
                                            ("psanet50_distribute", "distribute")])
def test_a_one_branch_psa_maps_semsegs_single_branch_by_its_direction(recipe, branch):
    """semseg's psa_type 0 / 1 build one branch named reduce / attention (no ``_p``) whatever its
    direction, and a 512 -> 2048 projection."""
    shapes = {k[len("module."):]: v for k, v in load_fixture("semseg", "psanet50")["tensors"].items()
              if "_p." not in k}
    shapes["psa.proj.0.weight"] = [2048, 512, 1, 1]
    source = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    resolved = imported_recipe(load_recipe(recipe), SOURCE, "file.pth")
    with torch.device("meta"):
        target = build_model_from_recipe(resolved).state_dict()
    _, report = map_state_dict(source, SOURCE.mapping(resolved), target, "file.pth")
    assert report.mapped["psa.attention.3.weight"] == \
        f"decode_head.psa.attention.{branch}.1.weight"
    assert set(report.mapped.values()) == set(target) - set(report.kept)


def test_psanet_mask_follows_the_training_crop():
    """tool/test.py: mask = 2 * ((train_h - 1) // (8 * shrink) + 1) - 1."""
    from gsbench.weights.semseg import psa_mask

    assert (psa_mask(705), psa_mask(465), psa_mask(713), psa_mask(473)) == (89, 59, 89, 59)
    options = SOURCE.model_options(load_recipe("psanet101_ade20k"))
    assert options == {"align_corners": True, "mask_size": [59, 59]}


def _release_with(tmp_path, **tensors):
    path = tmp_path / "release.pth"
    save_release(path, {"module." + k: v for k, v in tensors.items()})
    return path


def test_a_file_of_another_dataset_names_both_shapes(tmp_path):
    release = _release_with(tmp_path, **{"cls.4.weight": torch.zeros(150, 512, 1, 1)})
    with pytest.raises(GsbenchError, match=r"cls.4.weight \[150, 512, 1, 1\] vs "
                                           r"decode_head.cls.1.weight \[19, 512, 1, 1\]"):
        import_weights(release, "semseg", "pspnet50", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_deeper_network_names_the_tensors_without_a_place(tmp_path):
    release = _release_with(tmp_path, **{"layer3.6.conv1.weight": torch.zeros(256, 1024, 1, 1)})
    with pytest.raises(GsbenchError, match=r"have no place in recipe pspnet50's model: "
                                           r"layer3.6.conv1.weight \[256, 1024, 1, 1\]"):
        import_weights(release, "semseg", "pspnet50", tmp_path / "run")


def test_a_pspnet_file_into_a_psanet_recipe_is_refused(tmp_path):
    fixture = load_fixture("semseg", "pspnet50")
    release = tmp_path / "release.pth"
    save_release(release, random_state_dict(fixture, device="cpu"))
    with pytest.raises(GsbenchError) as error:
        import_weights(release, "semseg", "psanet50", tmp_path / "run")
    message = str(error.value)
    assert ("24 have no place in recipe psanet50's model: ppm.features.0.1.weight "
            "[512, 2048, 1, 1] (-> decode_head.ppm.stages.0.1.0.weight)") in message
    assert "\n" not in message and not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe, expected", [
    ("gscnn_wrn38", "model 'gscnn' is not pspnet or psanet"),
    ("deeplabv3plus101", "model 'deeplabv3plus' is not pspnet or psanet"),
    ("pspnet101-smoke", "backbone 'resnet_tiny' is not resnet50 or resnet101"),
])
def test_recipes_semseg_has_no_weights_for(tmp_path, recipe, expected):
    release = _release_with(tmp_path, **{"cls.4.weight": torch.zeros(19, 512, 1, 1)})
    with pytest.raises(GsbenchError, match=f"recipe '{recipe}': {expected}; hszhao/semseg"):
        import_weights(release, "semseg", recipe, tmp_path / "run")


def test_top_level_entries_semseg_does_not_write_are_refused(tmp_path):
    release = tmp_path / "release.pth"
    torch.save({"state_dict": {"module.cls.4.bias": torch.zeros(19)}, "meta": {"a": 1}}, release)
    with pytest.raises(GsbenchError, match="top-level entries 'meta' are not what hszhao/semseg"):
        import_weights(release, "semseg", "pspnet50", tmp_path / "run")


def test_a_non_empty_run_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text("name: x\n")
    release = _release_with(tmp_path, **{"cls.4.bias": torch.zeros(19)})
    with pytest.raises(GsbenchError, match="run: exists and is not an empty folder"):
        import_weights(release, "semseg", "pspnet50", tmp_path / "run")


def test_cli_lists_the_sources_and_fails_in_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["import-weights", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--from" in result.output and "|".join(SOURCES) in result.output
    for name, what in SOURCES.items():
        assert f"{name} ({what.split(':')[0]}" in result.output
    bad = tmp_path / "model.pth"
    bad.write_text("not a checkpoint")
    result = runner.invoke(app, ["import-weights", str(bad), "--from", "semseg", "--recipe",
                                 "pspnet50", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "model.pth: not a PyTorch checkpoint" in result.output
    assert not (tmp_path / "run").exists()
    result = runner.invoke(app, ["import-weights", str(bad), "--from", "caffe", "--recipe",
                                 "pspnet50"])
    assert result.exit_code == 2 and "unknown weights source 'caffe'" in result.output


def _interpolate(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@pytest.mark.parametrize("name", ["pspnet", "psanet"])
def test_align_corners_is_semsegs_upsampling(name):
    """The official form restated: semseg's ``PPM.forward`` upsamples each pooled level and
    ``forward`` the stride-8 logits with ``F.interpolate(..., align_corners=True)``; PSANet's
    PSA module does so in both forms, only its final upsampling changes."""
    torch.manual_seed(0)
    options = {"mask_size": (5, 5)} if name == "psanet" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(name, num_classes=5, backbone="resnet_tiny", align_corners=True,
                            **options).eval()
    images = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        features = model.backbone(images)
        head = model.decode_head
        if name == "pspnet":
            c5 = features[-1]
            levels = [c5] + [_interpolate(stage(c5), c5.shape[-2:]) for stage in head.ppm.stages]
            logits = head.cls(head.bottleneck(torch.cat(levels, dim=1)))
        else:
            logits = head(features)
        expected = _interpolate(logits, (33, 41))
        assert torch.allclose(model(images)["out"], expected, atol=1e-5)
        model.align_corners = False
        if name == "pspnet":
            head.ppm.align_corners = False
        assert not torch.allclose(model(images)["out"], expected, atol=1e-3)
