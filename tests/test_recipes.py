"""Recipes: every built-in recipe validates and builds; typos and wrong types are clear errors."""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.errors import GsbenchError
from gsbench.models.psanet import full_mask_size, shrunk_size
from gsbench.models.registry import get_model_builder, list_models
from gsbench.recipes import (
    ModelOption,
    build_model_from_recipe,
    list_recipes,
    load_recipe,
    model_options,
    recipe_from_dict,
)

ALL = list_recipes()
SMOKE = [n for n in ALL if n.endswith("-smoke")]
FULL = [n for n in ALL if not n.endswith("-smoke")]


def test_the_zoo_has_every_method_depth_and_dataset():
    for method in ("fcn", "pspnet", "deeplabv3", "deeplabv3plus", "denseaspp", "nonlocal", "ocnet",
                   "psanet", "psanet{d}_collect", "psanet{d}_distribute"):
        for depth in (50, 101):
            base = method.format(d=depth) if "{d}" in method else f"{method}{depth}"
            assert base in FULL and f"{base}_ade20k" in FULL
        family = method.format(d=101) if "{d}" in method else f"{method}101"
        assert f"{family}-smoke" in SMOKE


#: The evaluated classes of each dataset, as the papers count them.
CLASSES_PER_DATASET = {"cityscapes": 19, "ade20k": 150, "voc2012": 21, "pascal_context": 59,
                       "coco_stuff": 171, "coco_stuff10k": 171}


def psanet_mask_size(crop: int, output_stride: int = 8, shrink_factor: int = 2) -> int:
    """Side of the full over-complete mask PSANet derives for a square crop (Sec. 3.3): the
    model's own rule on the ``(crop - 1) // output_stride + 1`` cells of the dilated ResNet."""
    cells = (crop - 1) // output_stride + 1
    return full_mask_size(*shrunk_size(cells, cells, shrink_factor))[0]


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_loads_and_round_trips(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe
    assert recipe.data.num_classes == CLASSES_PER_DATASET[recipe.data.dataset]
    if recipe.model.name == "psanet" and recipe.model.head != "mmseg":
        # (mmseg's PSANet configs fix the mask per dataset instead: 97 x 97, 66 x 66 on ADE20K)
        crop_h, crop_w = recipe.data.crop_size
        assert recipe.model.mask_size == [
            psanet_mask_size(crop_h, recipe.model.output_stride, recipe.model.shrink_factor),
            psanet_mask_size(crop_w, recipe.model.output_stride, recipe.model.shrink_factor),
        ]


def test_psanet_recipes_follow_the_paper():
    city, ade = load_recipe("psanet101"), load_recipe("psanet50_ade20k")
    for r in (city, ade):
        t = r.train
        assert (t.lr, t.poly_power, t.weight_decay, t.momentum, t.batch_size) == (0.01, 0.9, 1e-4, 0.9, 16)
        assert (t.aux_weight, t.head_lr_mult, r.data.scale_range, r.data.flip) == (0.4, 10.0, [0.5, 2.0], True)
        assert r.model.output_stride == 8 and r.model.aux
    # crops of PSANet in its Caffe release and hszhao/semseg's PSANet configs (705 / 465; the
    # PSPNet-style baselines keep 713 / 473)
    assert (city.train.iterations, city.data.crop_size, city.data.rotate_degrees) == (90000, [705, 705], 0.0)
    assert city.model.mask_size == [89, 89] and city.model.psa_type == "bi"
    assert (ade.train.iterations, ade.data.crop_size, ade.data.rotate_degrees) == (150000, [465, 465], 10.0)
    assert load_recipe("psanet101_voc2012").data.crop_size == [465, 465]
    assert load_recipe("fcn101").data.crop_size == [713, 713]
    assert ade.data.blur_prob > 0 and ade.model.mask_size == [59, 59] and ade.model.backbone == "resnet50"
    assert load_recipe("psanet101_collect").model.psa_type == "collect"
    assert load_recipe("psanet101_distribute_ade20k").model.psa_type == "distribute"
    gps = load_recipe("ocnet101")  # GPSNet's protocol for its baselines
    assert (gps.train.batch_size, gps.train.weight_decay, gps.train.iterations, gps.data.crop_size) == (
        8, 5e-4, 40000, [769, 769])


def test_psanet_mask_size_matches_semseg():
    assert psanet_mask_size(713) == 89 and psanet_mask_size(473) == 59 and psanet_mask_size(64) == 7
    assert psanet_mask_size(705) == 89 and psanet_mask_size(465) == 59


def test_method_options_are_builder_arguments():
    options_of_model = {name: model_options(name) for name in list_models()}
    assert set(options_of_model) == set(list_models())
    shared = {"num_classes", "backbone", "output_stride", "pretrained", "aux", "dropout"}
    for name, options in options_of_model.items():
        params = set(inspect.signature(get_model_builder(name)).parameters)
        assert shared <= params, name
        assert set(options) == params - shared, name


def test_method_options_take_recipe_types_and_defaults_from_the_builder():
    # tuples and sequences are YAML lists; a union is written in its first form
    assert model_options("pspnet")["bins"] == ModelOption("bins", list[int], [1, 2, 3, 6])
    assert model_options("psanet")["mask_size"] == ModelOption(
        "mask_size", list[int] | None, None, pair=True)
    assert model_options("gpsnet")["dilations"].type == list[list[int]] | None
    assert model_options("ranet")["region_threshold"] == ModelOption("region_threshold", float, 0.5)
    with pytest.raises(GsbenchError, match="model.mask_size must be a list of ints, got int 89"):
        load_recipe("psanet101", ["model.mask_size=89"])
    # an option the recipe leaves out reads as the builder's default
    recipe = load_recipe("pspnet101")
    assert "bins" not in recipe.model.options and recipe.model.bins == [1, 2, 3, 6]
    assert "bins" not in recipe.to_dict()["model"]
    with pytest.raises(AttributeError):
        recipe.model.psa_type  # noqa: B018 - not an option of pspnet


@pytest.mark.filterwarnings("ignore::UserWarning")  # random-init backbones warn; expected here
@pytest.mark.parametrize("name", FULL)
def test_full_scale_recipe_builds_its_model(name):
    recipe = load_recipe(name)
    with torch.device("meta"):  # the full ResNet-101 models without allocating their weights
        model = build_model_from_recipe(recipe)
    assert hasattr(model, "backbone")
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert head and sum(p.numel() for p in model.parameters()) > 20_000_000


def test_overrides_are_yaml_scalars_with_dotted_keys():
    r = load_recipe("psanet101", ["train.lr=0.02", "data.crop_size=[512, 1024]", "pretrained=null",
                                  "model.psa_type=collect", "train.ohem_thresh=0.7", "seed=3"])
    assert r.train.lr == 0.02 and r.data.crop_size == [512, 1024] and r.pretrained is None
    assert r.model.psa_type == "collect" and r.train.ohem_thresh == 0.7 and r.seed == 3
    assert load_recipe("fcn50", ["train.lr=1"]).train.lr == 1.0  # an int where a float is expected


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "--set train.lrr: unknown key 'train.lrr' (closest valid key: 'train.lr')"),
    ("trian.lr=0.1", "unknown key 'trian' (closest valid key: 'train')"),
    ("model.psa_typ=bi", "closest valid key: 'model.psa_type'"),
    ("data.crop_sise=[1,1]", "closest valid key: 'data.crop_size'"),
    ("train.lr=fast", "train.lr must be a number, got str 'fast'"),
    ("train.iterations=1.5", "train.iterations must be an integer"),
    ("model.aux=maybe", "model.aux must be true or false"),
    ("data.crop_size=[1,2,3]", "data.crop_size must be a list of two values"),
    ("train.iterations=0", "train.iterations must be positive"),
    ("train.amp_dtype=float8", "train.amp_dtype must be bfloat16 or float16"),
    ("model.name=psanett", "unknown model 'psanett' (closest: psanet"),
    ("train.lr", "expected key=value"),
    ("train.lr.x=1", "train.lr is not a section"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(GsbenchError) as info:
        load_recipe("psanet101", [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_typos_in_a_recipe_file_name_the_file_and_closest_key(tmp_path):
    raw = load_recipe("fcn101-smoke").to_dict()
    raw["train"]["momentun"] = 0.9
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(GsbenchError, match=r"mine.yaml: unknown key 'train.momentun' \(closest valid key: 'train.momentum'\)"):
        load_recipe(str(path))
    raw["train"].pop("momentun")
    raw["model"]["context"] = "asp"  # an ocnet option on an fcn model
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(GsbenchError, match="unknown key 'model.context'"):
        load_recipe(str(path))
    raw["model"].pop("context")
    del raw["train"]["lr"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(GsbenchError, match="missing required key 'train.lr'"):
        load_recipe(str(path))
    path.write_text("model: [1, 2\n")
    with pytest.raises(GsbenchError, match="not valid YAML"):
        load_recipe(str(path))


def test_unknown_recipe_name_suggests_close_names():
    with pytest.raises(GsbenchError, match="unknown recipe 'psanet10' .closest: psanet101"):
        load_recipe("psanet10")


def test_a_recipe_file_may_name_one_base(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text("base: psanet101\ntrain:\n  lr: 0.005\n")
    r = load_recipe(str(path))
    assert r.name == "short" and r.train.lr == 0.005 and r.train.iterations == 90000
    assert r.model.psa_type == "bi"


def test_zoo_lists_models_and_recipes():
    # wide enough for the longest recipe names (deeplabv3plus101_mmseg_cityscapes_769)
    result = CliRunner().invoke(app, ["zoo"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("psanet101_collect_ade20k", "psanet101-smoke", "denseaspp", "nonlocal", "90000"):
        assert text in result.output


def test_other_dataset_and_trainval_recipes_follow_the_papers():
    for name in ("fcn50_voc2012", "psanet50_collect_voc2012", "psanet101_voc2012"):
        r = load_recipe(name)  # PSANet Sec. 5: 30K iterations on SBD train_aug, rotation + blur
        assert (r.data.dataset, r.data.train_split, r.data.val_split) == ("voc2012", "trainaug", "val")
        assert (r.train.iterations, r.train.batch_size, r.train.lr) == (30000, 16, 0.01)
        assert r.data.rotate_degrees == 10.0 and r.data.blur_prob > 0
    for name, dataset, depth in (("gff50_dfp_pascal_context", "pascal_context", 50),
                                 ("gff101_dfp_pascal_context", "pascal_context", 101),
                                 ("gff101_dfp_coco_stuff10k", "coco_stuff10k", 101)):
        r = load_recipe(name)  # GFF Implementation Details: crop 512, 150K iterations, batch 16
        assert (r.model.name, r.model.dfp, r.model.backbone) == ("gff", True, f"resnet{depth}")
        assert (r.data.dataset, r.data.crop_size) == (dataset, [512, 512])
        assert (r.train.iterations, r.train.batch_size, r.train.lr) == (150000, 16, 0.001)
    for name, dataset in (("ranet101_pascal_context", "pascal_context"),
                          ("ranet101_coco_stuff10k", "coco_stuff10k")):
        r = load_recipe(name)  # RANet Sec. 4: 520 x 520, 60K mini-batches of 8
        assert (r.model.name, r.data.dataset, r.data.crop_size) == ("ranet", dataset, [520, 520])
        assert (r.train.iterations, r.train.batch_size) == (60000, 8)
    for name, base in (("psanet101_trainval", "psanet101"), ("gff101_dfp_trainval", "gff101_dfp"),
                       ("gpsnet101_ocnet_trainval", "gpsnet101_ocnet"),
                       ("ranet101_trainval", "ranet101")):
        r, b = load_recipe(name), load_recipe(base)
        assert r.data.train_split == "train+val"
        assert (r.model, r.train) == (b.model, b.train)
    denseaspp = load_recipe("gff101_denseaspp_baseline")
    assert denseaspp.model.name == "denseaspp"
    assert denseaspp.train == load_recipe("gff101_denseaspp").train


def test_coarse_recipes_add_train_extra_to_their_base():
    for name, base in (("psanet101_coarse", "psanet101"), ("ranet101_coarse", "ranet101"),
                       ("ranet_hrnetv2_w48_coarse", "ranet_hrnetv2_w48")):
        r, b = load_recipe(name), load_recipe(base)
        assert r.data.train_split == "train+val+train_extra"
        assert (r.model, r.train, r.data.crop_size) == (b.model, b.train, b.data.crop_size)


def test_gscnn_test_server_recipe_follows_the_paper():
    # Gated-SCNN Sec. 4 "Cityscapes Benchmark": the WideResNet-38 model with GCL and dual-task
    # loss, 175 epochs at batch 16 and lr 1e-2 poly, class-uniform 800x800 crops, no coarse data
    r, base = load_recipe("gscnn_wrn38_test"), load_recipe("gscnn_wrn38")
    assert r.model == base.model and r.model.backbone == "wideresnet38" and r.model.shape_stream
    assert r.train.loss_options == base.train.loss_options and r.train.loss_options["dual_task"]
    assert r.train.iterations == round(175 * 2975 / 16) == 32539
    # poly power 1.0: the release's poly_exp (the paper names the policy, not the power)
    assert (r.train.batch_size, r.train.lr, r.train.poly_power) == (16, 0.01, 1.0)
    assert (r.data.crop_size, r.data.class_uniform, r.data.train_split) == ([800, 800], 0.5, "train")
    assert base.data.class_uniform == 0.0
    assert r.data.scale_range == base.data.scale_range and r.data.flip
