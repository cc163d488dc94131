"""mmsegmentation 1.x's released ResNetV1c-D8 models: every tensor of each architecture and
config family lands on exactly one tensor of its recipe's model, the imported run records
mmseg's preprocessing and test procedure (tests/fixtures/weights/mmseg/_protocols.json, read
from mmseg's own configs), recipes whose forms mmseg's files do not have are refused, and bad
files stop with one line."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest
import torch
from typer.testing import CliRunner
from weights_fixtures import FIXTURES, fixture_shapes, load_fixture, random_state_dict

from gsbench.cli import app
from gsbench.errors import GsbenchError
from gsbench.evaluation.model import load_model_for_eval
from gsbench.protocol import TestProtocol
from gsbench.recipes import build_model_from_recipe, list_recipes, load_recipe
from gsbench.weights import get_source
from gsbench.weights.importer import import_weights, imported_recipe
from gsbench.weights.mapping import map_state_dict
from gsbench.weights.mmseg import FAMILIES, METHODS, recipe_name

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random-init backbones warn

SOURCE = get_source("mmseg")
PROTOCOLS = json.loads((FIXTURES / "mmseg" / "_protocols.json").read_text())["protocols"]
OUTPUTS = json.loads((FIXTURES / "mmseg" / "_outputs.json").read_text())


def _generator():
    """The fixtures' generator, for its seeded weights and inputs (it imports mmseg only when
    run as a script)."""
    path = FIXTURES / "mmseg" / "gen_mmseg_fixtures.py"
    spec = importlib.util.spec_from_file_location("gen_mmseg_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
#: (gsbench method, depth, config family): every released architecture and dataset
CASES = [(method, depth, family) for method in METHODS for depth in (50, 101)
         for family in FAMILIES]


def arch(method: str, depth: int) -> str:
    return f"{METHODS[method][1]}_r{depth}-d8"


def numbered_state_dict(fixture: dict, dataset: str) -> tuple[dict, dict]:
    """The fixture's layout with tensor i holding the value i everywhere (an expanded scalar:
    no memory), and {key: i}; ANN's aliased key / query projections share their number, as
    they share their tensors in a saved file."""
    shapes = fixture_shapes(fixture, dataset)
    numbers = GENERATOR.tie_aliases({key: i for i, key in enumerate(shapes)}, fixture["aliases"])
    state = {}
    for key, shape in shapes.items():
        dtype = torch.int64 if key.endswith(".num_batches_tracked") else torch.float32
        state[key] = torch.tensor(numbers[key], dtype=dtype).expand(shape)
    return state, numbers


@pytest.mark.parametrize("method, depth, family", CASES)
def test_every_tensor_of_every_architecture_and_family_is_mapped(method, depth, family):
    """The fixture's tensors map onto the ``*_mmseg_*`` recipe's model: each parameter and
    buffer receives exactly one source tensor, the right one (numbered), nothing is dropped
    (the aux head and DANet's branch classifiers are mapped too); only PSANet's mask-size
    buffers are derived."""
    fixture = load_fixture("mmseg", arch(method, depth))
    recipe = load_recipe(recipe_name(method, depth, FAMILIES[family]))
    SOURCE.check_recipe(recipe)
    resolved = imported_recipe(recipe, SOURCE, "file.pth")
    with torch.device("meta"):
        model = build_model_from_recipe(resolved)
    target = model.state_dict()
    source, numbers = numbered_state_dict(fixture, family)
    state, report = map_state_dict(source, SOURCE.mapping(resolved), target, "file.pth")
    assert set(state) == set(target)
    assert set(report.mapped) == set(source) and not report.dropped
    derived = {k for k in target if k.endswith(".mask_hw")}
    assert set(report.kept) == derived and (method == "psanet") == bool(derived)
    assert sorted(report.mapped.values()) == sorted(set(target) - derived)
    for key, destination in report.mapped.items():
        assert state[destination].shape == target[destination].shape
        assert int(state[destination].reshape(-1)[0]) == numbers[key], (key, destination)
    assert len(report.mapped) == fixture["num_tensors"]


#: the cases of _outputs.json run by the fast suite (the others are slow: about 3 s each)
FAST_OUTPUT_CASES = (("danet", "cityscapes-512x1024"), ("deeplabv3plus", "cityscapes-769x769"),
                     ("psanet", "cityscapes-769x769"))


@pytest.mark.parametrize("case", [
    pytest.param(case, id="{method}-{family}-{h}x{w}".format(h=case["input"][0],
                                                           w=case["input"][1], **case),
                 marks=() if (case["method"], case["family"]) in FAST_OUTPUT_CASES
                 else pytest.mark.slow)
    for case in OUTPUTS["cases"]])
def test_gsbench_computes_what_mmseg_computes(case):
    """mmseg's own R-50-D8 model, on seeded random weights and input, gave these logits (the
    generator's _outputs.json); the same weights imported into the recipe's model give the same
    logits. This pins the roles the shapes cannot tell apart (query / key, theta / phi, collect
    / distribute, PAM / CAM, the pyramid bins and ASPP rates) and the forms: ResNetV1c,
    conv_cat, mmseg's ASPP heads, PSANet's shrink rules (both sides odd; one even), DANet's CAM
    energy, align_corners on the 769 x 769 models."""
    method = {"ann": "annet"}.get(case["method"], case["method"])
    fixture = load_fixture("mmseg", f"{case['method']}_r50-d8")
    shapes = fixture_shapes(fixture, case["family"])
    state = GENERATOR.tie_aliases(GENERATOR.seeded_state_dict(shapes, OUTPUTS["seed"]),
                                  fixture["aliases"])
    recipe = imported_recipe(load_recipe(recipe_name(method, 50, FAMILIES[case["family"]])),
                             SOURCE, "file.pth")
    with torch.device("meta"):
        model = build_model_from_recipe(recipe)
    mapped, _ = map_state_dict(state, SOURCE.mapping(recipe), model.state_dict(), "file.pth")
    for key in mapped:  # the derived PSA mask size, real instead of meta
        if key.endswith(".mask_hw"):
            mapped[key] = torch.tensor(recipe.model.mask_size)
    model.load_state_dict(mapped, strict=True, assign=True)
    with torch.no_grad():
        logits = model.eval()(GENERATOR.seeded_input(tuple(case["input"]), OUTPUTS["seed"] + 1))
    digest = GENERATOR.output_digest(logits["out"])
    assert digest["shape"] == case["shape"]
    tolerance = 1e-4 * case["max_abs"]
    assert torch.allclose(torch.tensor(digest["grid"]), torch.tensor(case["grid"]), rtol=0,
                          atol=tolerance)
    pixels = case["shape"][2] * case["shape"][3]
    assert torch.allclose(torch.tensor(digest["class_sums"]), torch.tensor(case["class_sums"]),
                          rtol=0, atol=tolerance * pixels)


def save_release(path, state, meta=None):
    """The file as mmseg's publish_model.py leaves it: {"meta": ..., "state_dict": ...}."""
    torch.save({"meta": meta if meta is not None else {"CLASSES": ["road"], "epoch": 40},
                "state_dict": state}, path)


@pytest.mark.parametrize("method, depth, family", [
    ("pspnet", 50, "cityscapes-769x769"),
    pytest.param("danet", 101, "ade20k-512x512", marks=pytest.mark.slow),
    pytest.param("psanet", 50, "ade20k-512x512", marks=pytest.mark.slow),
])
def test_imported_run_holds_the_tensors_and_mmsegs_facts(tmp_path, method, depth, family):
    fixture = load_fixture("mmseg", arch(method, depth))
    # a published file holds ANN's shared module twice, with equal tensors
    state = GENERATOR.tie_aliases(random_state_dict(fixture, family), fixture["aliases"])
    release = tmp_path / "model.pth"
    save_release(release, state)
    name = recipe_name(method, depth, FAMILIES[family])
    run = tmp_path / "run"
    result = import_weights(release, "mmseg", name, run, command=["gsbench", "import-weights"])
    loaded = load_model_for_eval(run)
    model_state = loaded.model.state_dict()
    for key, target in result.report.mapped.items():
        expected = state[key].reshape(1) if key.endswith("gamma.scale") else state[key]
        assert torch.equal(model_state[target], expected), key
    p = result.provenance
    assert (p["source"], p["repository"], p["commit"]) == ("mmseg", "open-mmlab/mmsegmentation",
                                                           "v1.2.2")
    assert p["sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()
    assert p["checkpoint"]["dropped_entries"].keys() == {"meta"}
    assert not p["mapping"]["dropped"]
    # mmseg's data preprocessor (configs/_base_/models/*_r50-d8.py), read from its config
    official = PROTOCOLS[family]
    pre = official["data_preprocessor"]
    assert pre["bgr_to_rgb"] and p["preprocessing"]["channel_order"] == "RGB"
    assert p["preprocessing"]["value_range"] == 255
    assert p["preprocessing"]["mean"] == pre["mean"] and p["preprocessing"]["std"] == pre["std"]
    # ... and its test procedure: test_pipeline's Resize, test_cfg, the heads' align_corners
    assert loaded.recipe.test == TestProtocol(**expected_protocol(official))
    assert p["test_protocol"] == loaded.recipe.test.to_dict()
    assert loaded.model.align_corners is official["align_corners"]["decode_head"]
    if method == "psanet":
        assert loaded.recipe.model.mask_size == [66, 66]


def expected_protocol(official: dict) -> dict:
    """What _protocols.json (mmseg's own config values) says, as gsbench's protocol."""
    resize = next(step for step in official["test_pipeline"] if step["type"] == "Resize")
    assert resize["keep_ratio"] is True
    protocol = {"procedure": "mmseg", "mode": official["test_cfg"]["mode"],
                "base_size": resize["scale"], "flip": False, "scales": [1.0],
                "align_corners": official["align_corners"]["decode_head"]}
    if protocol["mode"] == "slide":
        protocol.update(crop_size=official["test_cfg"]["crop_size"],
                        stride=official["test_cfg"]["stride"])
    return protocol


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_recorded_protocol_is_mmsegs_for_every_family(family):
    official = PROTOCOLS[family]
    for method in METHODS:
        recipe = load_recipe(recipe_name(method, 50, FAMILIES[family]))
        assert TestProtocol(**SOURCE.test_protocol(recipe)) == \
            TestProtocol(**expected_protocol(official))
        # the recipe itself tests as mmseg does, so a model trained with it is scored alike
        assert recipe.test == TestProtocol(**expected_protocol(official))
        assert recipe.model.align_corners is official["align_corners"]["decode_head"]
        assert list(recipe.data.crop_size) == official["train_crop"]


def test_every_mmseg_recipe_is_a_released_model():
    names = sorted(n for n in list_recipes() if "_mmseg_" in n)
    assert names == sorted(recipe_name(m, d, FAMILIES[f]) for m, d, f in CASES)


def _release_with(tmp_path, name="release.pth", **tensors):
    path = tmp_path / name
    save_release(path, tensors)
    return path


def test_a_file_of_another_family_names_both_shapes(tmp_path):
    release = _release_with(tmp_path, **{"decode_head.conv_seg.weight": torch.zeros(150, 512, 1, 1)})
    with pytest.raises(GsbenchError, match=r"decode_head.conv_seg.weight \[150, 512, 1, 1\] vs "
                                           r"decode_head.cls.1.weight \[19, 512, 1, 1\]"):
        import_weights(release, "mmseg", "pspnet50_mmseg_cityscapes", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_file_of_another_architecture_names_its_tensors(tmp_path):
    fixture = load_fixture("mmseg", "ccnet_r50-d8")
    release = tmp_path / "release.pth"
    save_release(release, random_state_dict(fixture, device="cpu"))
    with pytest.raises(GsbenchError) as error:
        import_weights(release, "mmseg", "pspnet50_mmseg_cityscapes", tmp_path / "run")
    message = str(error.value)
    assert "source tensors match no rule of mapping mmseg-pspnet/1: decode_head.convs.0.conv" \
           ".weight [512, 2048, 3, 3]" in message
    assert "\n" not in message and not (tmp_path / "run").exists()


def test_a_model_zoo_file_name_names_the_recipe_that_fits(tmp_path):
    name = "psanet_r101-d8_769x769_80k_cityscapes_20200606_214550-7665827b.pth"
    release = _release_with(tmp_path, name, **{"decode_head.conv_seg.bias": torch.zeros(19)})
    with pytest.raises(GsbenchError, match=r"an mmseg psanet R-101-D8 cityscapes-769x769 model, "
                                           r"not the form of recipe 'psanet101_mmseg_cityscapes':"
                                           r" use --recipe psanet101_mmseg_cityscapes_769"):
        import_weights(release, "mmseg", "psanet101_mmseg_cityscapes", tmp_path / "run")


@pytest.mark.parametrize("recipe, expected", [
    ("psanet101", "psanet head 'semseg': mmseg's PSAHead pads its fusion conv"),
    ("danet_paper.yaml", "danet channel_energy 'paper': mmseg's CAM softmaxes max - energy"),
    ("deeplabv3plus101", "deeplabv3plus head 'paper': mmseg's decoder uses depthwise-separable"),
    ("pspnet101-smoke", "backbone 'resnet_tiny' is none of resnet50_v1c, resnet101_v1c"),
    ("gscnn_wrn38", "model 'gscnn' is none of fcn, pspnet"),
    ("pascal_context.yaml", "dataset 'pascal_context' has no mmsegmentation config here"),
])
def test_recipes_mmseg_has_no_weights_for(tmp_path, recipe, expected):
    if recipe.endswith(".yaml"):  # a recipe file: an mmseg form on another dataset, or a
        # form mmseg lacks (danet101 itself uses the official CAM)
        name = recipe[:-len(".yaml")]
        (tmp_path / recipe).write_text(
            f"base: danet101\nname: {name}\nmodel: {{channel_energy: paper}}\n"
            if name == "danet_paper" else
            f"base: pspnet50_mmseg_cityscapes\nname: {name}\n"
            "data: {dataset: pascal_context, num_classes: 59}\n")
        recipe = str(tmp_path / recipe)
    else:
        name = recipe
    release = _release_with(tmp_path, **{"decode_head.conv_seg.bias": torch.zeros(19)})
    with pytest.raises(GsbenchError, match=f"recipe '{name}': {expected}"):
        import_weights(release, "mmseg", recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_deeplabv3_paper_head_takes_only_a_centre_tap_bottleneck(tmp_path):
    """The paper head's 1x1 projection receives mmseg's 3x3 bottleneck only when it is zero off
    its centre (how export-weights writes that head); a real ASPPHead kernel is refused."""
    release = _release_with(tmp_path, **{
        "decode_head.bottleneck.conv.weight": torch.randn(256, 1280, 3, 3)})
    with pytest.raises(GsbenchError, match="decode_head.bottleneck.conv.weight is a full 3x3 "
                                           "kernel .* use model.head: mmseg"):
        import_weights(release, "mmseg", "deeplabv3101", tmp_path / "run")


def test_a_scale_that_is_not_0_dim_is_refused(tmp_path):
    state = random_state_dict(load_fixture("mmseg", "ccnet_r50-d8"))
    state["decode_head.cca.gamma.scale"] = torch.zeros(2)
    release = tmp_path / "release.pth"
    save_release(release, state)
    with pytest.raises(GsbenchError, match=r"an mmcv Scale parameter is 0-dim, this one has "
                                           r"shape \[2\]"):
        import_weights(release, "mmseg", "ccnet50_mmseg_cityscapes", tmp_path / "run")


def test_anns_shared_key_and_query_must_agree(tmp_path):
    query = "decode_head.context.stages.0.query_project.conv.weight"
    release = _release_with(tmp_path, **{query: torch.ones(256, 512, 1, 1),
                                         query.replace("query", "key"): torch.zeros(256, 512, 1, 1)})
    with pytest.raises(GsbenchError, match=f"{query} differs from .*key_project.conv.weight"):
        import_weights(release, "mmseg", "annet50_mmseg_cityscapes", tmp_path / "run")


def test_bad_files_get_one_line(tmp_path):
    runner = CliRunner()
    text = tmp_path / "model.pth"
    text.write_text("not a checkpoint")
    good = _release_with(tmp_path, **{"decode_head.conv_seg.bias": torch.zeros(19)})
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.pth"
    torch.save({"meta": {}, "state_dict": {}}, empty)
    for path, expected in ((text, "model.pth: not a PyTorch checkpoint"),
                           (truncated, "truncated.pth: damaged or truncated PyTorch checkpoint"),
                           (empty, "empty.pth: the state dict ('state_dict') is empty")):
        result = runner.invoke(app, ["import-weights", str(path), "--from", "mmseg", "--recipe",
                                     "pspnet50_mmseg_cityscapes", "--out", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and expected in result.output, result.output
        assert not (tmp_path / "run").exists()


def test_import_weights_help_lists_mmseg():
    result = CliRunner().invoke(app, ["import-weights", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "semseg|gscnn|mmseg" in result.output
    assert "mmseg (open-mmlab/mmsegmentation 1.x" in result.output
