"""``gsbench export-weights RUN_DIR --to mmseg``: the exported state dict has exactly the keys and
shapes of mmsegmentation's own models (the fixtures), exporting and importing again gives the
run's tensors back for every form mmseg expresses, the config inherits mmseg's and overrides
what the model differs in, and the forms mmseg cannot express are refused in one line."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner
from weights_fixtures import fixture_shapes, load_fixture, random_state_dict

from gsbench.cli import app
from gsbench.engine.checkpoint import load_model_weights
from gsbench.errors import GsbenchError
from gsbench.recipes import build_model_from_recipe, load_recipe
from gsbench.weights import get_source
from gsbench.weights.export import export_mmseg, mmseg_config
from gsbench.weights.importer import import_weights
from gsbench.weights.mapping import map_state_dict
from gsbench.weights.mmseg import FAMILIES, METHODS, recipe_name, to_mmseg_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random-init backbones warn

SOURCE = get_source("mmseg")
REFERENCE = "cityscapes-512x1024"


def meta_state(recipe) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model_from_recipe(recipe).state_dict()


@pytest.mark.parametrize("method, depth, family", [
    *[(m, d, REFERENCE) for m in METHODS for d in (50, 101)],
    ("psanet", 50, "ade20k-512x512"), ("danet", 50, "voc12aug-512x512"),
])
def test_export_has_the_official_keys_and_shapes(method, depth, family):
    fixture = load_fixture("mmseg", f"{METHODS[method][1]}_r{depth}-d8")
    recipe = load_recipe(recipe_name(method, depth, FAMILIES[family]))
    exported = to_mmseg_state_dict(recipe, meta_state(recipe))
    assert {k: list(v.shape) for k, v in exported.items()} == fixture_shapes(fixture, family)


def random_like(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, tensor in state.items():
        if tensor.dtype.is_floating_point:
            out[key] = torch.randn(tensor.shape, generator=generator)
        else:
            out[key] = torch.randint(0, 1000, tensor.shape, generator=generator)
    return out


@pytest.mark.parametrize("recipe, overrides", [
    ("pspnet101", []),  # gsbench's deep stem 64-64-128 and full dilation
    ("deeplabv3101", []),  # the paper's ASPP head: 1x1 projection, pooling last
    ("fcn50_voc2012", []),  # no conv_cat
    ("danet101", ["model.channel_energy=official"]),
    ("annet101", ["model.aux=false"]),
    ("psanet50_mmseg_cityscapes_769", []),
    ("deeplabv3plus50_mmseg_ade20k", []),
])
def test_export_then_import_gives_the_tensors_back(recipe, overrides):
    recipe = load_recipe(recipe, overrides)
    target = meta_state(recipe)
    state = random_like(target)
    for key in state:  # tensors one module holds under two names (ANN's key / query)
        if ".context.attention.query." in key:
            state[key] = state[key.replace(".query.", ".key.")]
    if recipe.model.name == "psanet":
        for key in state:
            if key.endswith(".mask_hw"):
                state[key] = torch.tensor(recipe.model.mask_size)
    exported = to_mmseg_state_dict(recipe, state)
    back, report = map_state_dict(exported, SOURCE.mapping(recipe), target, "exported.pth")
    assert set(back) == set(state)
    for key, tensor in state.items():
        if key not in report.kept:  # PSANet's mask_hw: the recipe's, as exported
            assert torch.equal(back[key], tensor), key
    if recipe.model.name == "deeplabv3":  # written as a 3x3 kernel, zero off its centre
        kernel = exported["decode_head.bottleneck.conv.weight"]
        assert kernel.shape[-2:] == (3, 3) and torch.count_nonzero(kernel[..., 0, :]) == 0


def read_config(text: str) -> dict:
    namespace: dict = {}
    exec(compile(text, "config.py", "exec"), {"dict": dict}, namespace)  # noqa: S102
    return namespace


def test_config_inherits_mmsegs_and_overrides_what_differs():
    recipe = load_recipe("pspnet101")
    config = read_config(mmseg_config(recipe, meta_state(recipe), "run")[0])
    assert config["_base_"] == "mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py"
    model = config["model"]
    assert model["backbone"] == {"stem_channels": 128, "contract_dilation": False}
    assert model["decode_head"] == {"num_classes": 19, "align_corners": False,
                                    "dropout_ratio": 0.1, "pool_scales": (1, 2, 3, 6)}
    assert model["auxiliary_head"] == {"num_classes": 19, "align_corners": False,
                                       "dropout_ratio": 0.1}
    recipe = load_recipe("deeplabv3101", ["model.aux=false"])
    model = read_config(mmseg_config(recipe, meta_state(recipe), "run")[0])["model"]
    assert model["decode_head"]["channels"] == 256 and model["auxiliary_head"] is None
    assert model["decode_head"]["dilations"] == (1, 12, 24, 36)
    recipe = load_recipe("psanet101_mmseg_ade20k")
    state = meta_state(recipe)
    state = {**state, **{k: torch.tensor([66, 66]) for k in state if k.endswith("mask_hw")}}
    config = read_config(mmseg_config(recipe, state, "run")[0])
    assert config["_base_"] == "mmseg::psanet/psanet_r101-d8_4xb4-80k_ade20k-512x512.py"
    assert config["model"]["backbone"] == {"stem_channels": 64, "contract_dilation": True}
    head = config["model"]["decode_head"]
    assert (head["mask_size"], head["psa_type"], head["num_classes"]) == ((66, 66),
                                                                          "bi-direction", 150)


def _run_folder(tmp_path, recipe: str, overrides=()) -> str:
    run = tmp_path / recipe
    run.mkdir()
    (run / "recipe.yaml").write_text(load_recipe(recipe, overrides).to_yaml())
    return run


@pytest.mark.parametrize("recipe, expected", [
    ("psanet101", "psanet head 'semseg': mmseg's PSAHead pads its fusion conv"),
    ("deeplabv3plus101", "deeplabv3plus head 'paper'"),
    ("danet101", "danet channel_energy 'paper'"),
    ("pspnet101-smoke", "backbone 'resnet_tiny' is none of"),
    ("gff101", "model 'gff' is none of"),
])
def test_forms_mmseg_cannot_express_are_refused_in_one_line(tmp_path, recipe, expected):
    # danet101 uses the official CAM: its paper form is set here
    run = _run_folder(tmp_path, recipe,
                      ["model.channel_energy=paper"] if recipe == "danet101" else ())
    result = CliRunner().invoke(app, ["export-weights", str(run), "--to", "mmseg"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert f"cannot export to mmsegmentation: {expected}" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]


def test_unknown_target_and_used_folder_are_refused(tmp_path):
    run = _run_folder(tmp_path, "pspnet50_mmseg_cityscapes")
    result = CliRunner().invoke(app, ["export-weights", str(run), "--to", "onnx"])
    assert result.exit_code == 2 and "--to 'onnx': the export targets are mmseg" in result.output
    (run / "mmseg").mkdir()
    (run / "mmseg" / "x").write_text("")
    with pytest.raises(GsbenchError, match="mmseg: exists and is not an empty folder"):
        export_mmseg(run)


@pytest.mark.slow
def test_export_of_an_imported_release_reimports_identically(tmp_path):
    """import-weights (a released mmseg file) -> export-weights -> import-weights: the same
    tensors, and the exported file is mmseg's layout with the meta data init_model reads."""
    fixture = load_fixture("mmseg", "pspnet_r50-d8")
    release = tmp_path / "release.pth"
    torch.save({"meta": {}, "state_dict": random_state_dict(fixture)}, release)
    recipe = "pspnet50_mmseg_cityscapes"
    import_weights(release, "mmseg", recipe, tmp_path / "imported")
    result = CliRunner().invoke(app, ["export-weights", str(tmp_path / "imported"), "--to",
                                      "mmseg", "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["imported.pth",
                                                                       "imported.py"]
    exported = torch.load(tmp_path / "export" / "imported.pth", weights_only=True)
    assert set(exported) == {"meta", "state_dict"}
    assert exported["meta"]["dataset_meta"]["classes"][:2] == ["road", "sidewalk"]
    assert len(exported["meta"]["dataset_meta"]["palette"]) == 19
    assert {k: list(v.shape) for k, v in exported["state_dict"].items()} == \
        fixture_shapes(fixture)
    import_weights(tmp_path / "export" / "imported.pth", "mmseg", recipe, tmp_path / "again")
    first, second = (load_model_weights(tmp_path / name) for name in ("imported", "again"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
