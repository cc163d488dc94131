"""nv-tlabs/GSCNN's released Cityscapes checkpoint and Gated-SCNN's official architecture forms:
the fixture's every tensor lands on exactly one tensor of ``gscnn_wrn38`` in its official form,
that form computes what the official ``GSCNN.forward`` computes (restated below op by op), the
concatenation orders are permuted at import, and the run records the source's facts."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from weights_fixtures import load_fixture, random_state_dict

from gsbench.errors import GsbenchError
from gsbench.evaluation.model import load_model_for_eval
from gsbench.models import build_model
from gsbench.models.gscnn import canny_edges_official
from gsbench.protocol import TestProtocol
from gsbench.recipes import build_model_from_recipe, load_recipe
from gsbench.weights import get_source
from gsbench.weights.importer import import_weights, imported_recipe
from gsbench.weights.mapping import map_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random-init backbones warn

SOURCE = get_source("gscnn")
OFFICIAL_FORMS = dict(gate="official", decoder="official", aspp_projection="official",
                      classifier="official", canny="official", align_corners=True)
#: may appear in the file: the loss's per-image class weights (fixture "may_also_contain")
CRITERION = "module.criterion.seg_loss.nll_loss.weight"


def _fixture_state(device: str) -> dict[str, torch.Tensor]:
    fixture = load_fixture("gscnn", "gscnn_wrn38")
    state = random_state_dict(fixture, device=device)
    state[CRITERION] = torch.rand(fixture["training_only"]["may_also_contain"][CRITERION],
                                  device=device)
    return state


def test_every_tensor_of_the_release_is_mapped():
    recipe = imported_recipe(load_recipe("gscnn_wrn38"), SOURCE, "file.pth")
    with torch.device("meta"):
        model = build_model_from_recipe(recipe)
    target = model.state_dict()
    source = {k[len("module."):]: v for k, v in _fixture_state("meta").items()}
    state, report = map_state_dict(source, SOURCE.mapping(recipe), target, "file.pth")
    assert set(report.mapped.values()) == set(target) == set(state)
    assert len(report.mapped) == len(target) and not report.kept
    assert set(report.dropped) == {"dsn1.weight", "dsn1.bias", "criterion.seg_loss.nll_loss.weight"}
    assert set(report.transformed) == {"bot_aspp.weight", "final_seg.0.weight"}


def test_the_official_form_has_the_official_parameter_count():
    """137,278,190 parameters in the official model (fixture), less dsn1's 65 (never used)."""
    fixture = load_fixture("gscnn", "gscnn_wrn38")
    with torch.device("meta"):
        model = build_model("gscnn", num_classes=19, backbone="wideresnet38", aux=False,
                            **OFFICIAL_FORMS)
    assert sum(p.numel() for p in model.parameters()) == fixture["num_parameters"] - 65


@pytest.mark.slow
def test_imported_run_holds_the_tensors_and_the_sources_facts(tmp_path):
    state = _fixture_state("cpu")
    release = tmp_path / "best_cityscapes_checkpoint.pth"
    # as utils/misc.py saves it (torch 1.x: the legacy format), mean_iu a numpy scalar
    torch.save({"state_dict": state, "optimizer": {}, "epoch": 175,
                "mean_iu": np.float64(0.808), "command": "train.py --evaluate"}, release,
               _use_new_zipfile_serialization=False)
    result = import_weights(release, "gscnn", "gscnn_wrn38", tmp_path / "run")
    model = load_model_for_eval(tmp_path / "run").model
    weights = model.state_dict()
    transforms = {r.pattern: r.transform for r in SOURCE.mapping(result.recipe).rules}
    for key, target in result.report.mapped.items():
        value = state["module." + key]
        if key == "bot_aspp.weight":
            value = transforms[r"bot_aspp\.weight"](value)
        elif key == "final_seg.0.weight":
            value = transforms[r"final_seg\.0\.weight"](value)
        assert torch.equal(weights[target], value), key
    p = result.provenance
    assert p["sha256"] == hashlib.sha256(release.read_bytes()).hexdigest()
    assert p["checkpoint"]["dropped_entries"].keys() == {"optimizer", "epoch", "mean_iu",
                                                         "command"}
    # datasets/__init__.py: ToTensor (RGB in [0, 1]), Normalize(ImageNet mean, std)
    assert (p["preprocessing"]["channel_order"], p["preprocessing"]["value_range"]) == ("RGB", 1)
    assert p["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert p["preprocessing"]["std"] == [0.229, 0.224, 0.225]
    # train.py --evaluate: whole images, one scale, no flip
    assert result.recipe.test == TestProtocol("gsbench", "whole", (1.0,), False)
    assert p["test_protocol"] == result.recipe.test.to_dict()
    options = result.recipe.to_dict()["model"]
    assert {k: options[k] for k in OFFICIAL_FORMS} == OFFICIAL_FORMS and not options["aux"]


def test_the_run_records_gscnns_preprocessing_and_procedure():
    """datasets/__init__.py: ToTensor (RGB in [0, 1]) and Normalize(ImageNet mean, std);
    train.py --evaluate: whole images, one scale, no flip."""
    assert SOURCE.preprocessing.as_dict() | {"where": None} == {
        "channel_order": "RGB", "value_range": 1.0, "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "where": None}
    recipe = imported_recipe(load_recipe("gscnn_wrn38"), SOURCE, "file.pth")
    assert recipe.test == TestProtocol("gsbench", "whole", (1.0,), False)


def test_concatenation_orders_are_permuted_at_import():
    """conv(cat(official order), W) == conv(cat(gsbench order), permuted W) for the ASPP
    projection ([pool, edge, 1x1, r12, r24, r36]) and the decoder ([low-level, ASPP])."""
    rules = {r.pattern: r for r in SOURCE.mapping(load_recipe("gscnn_wrn38")).rules}
    torch.manual_seed(0)
    pool, edge, b1, b12, b24, b36 = (torch.randn(1, 256, 3, 3) for _ in range(6))
    weight = torch.randn(256, 1536, 1, 1)
    official = F.conv2d(torch.cat([pool, edge, b1, b12, b24, b36], 1), weight)
    ours = F.conv2d(torch.cat([b1, b12, b24, b36, pool, edge], 1),
                    rules[r"bot_aspp\.weight"].transform(weight))
    assert torch.allclose(official, ours, atol=1e-4)
    low, aspp = torch.randn(1, 48, 5, 5), torch.randn(1, 256, 5, 5)
    weight = torch.randn(256, 304, 3, 3)
    official = F.conv2d(torch.cat([low, aspp], 1), weight, padding=1)
    ours = F.conv2d(torch.cat([aspp, low], 1), rules[r"final_seg\.0\.weight"].transform(weight),
                    padding=1)
    assert torch.allclose(official, ours, atol=1e-4)


def test_official_canny_reads_the_normalised_tensor_cast_to_uint8():
    """numpy's astype(np.uint8) on x86: truncation toward zero, then modulo 256 (-1.2 -> 255,
    -0.6 -> 0, 0.9 -> 0); the edges are 0/255. Left half / right half of a flat image:"""
    def image(left, right):
        x = torch.full((1, 3, 16, 16), float(left))
        x[..., 8:] = right
        return x

    assert canny_edges_official(image(-0.6, 0.9)).max() == 0  # both cast to 0: no edge
    edges = canny_edges_official(image(-1.2, -0.6))  # 255 against 0
    assert set(edges.unique().tolist()) == {0.0, 255.0}
    assert edges[0, 0, :, 7:9].eq(255).any(dim=1).all()


def _up(x, size, align_corners=True):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def _batch_norm(bn, x):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def official_forward(model, x):
    """nv-tlabs/GSCNN network/gscnn.py ``GSCNN.forward`` restated op by op on the weights of a
    gsbench model in the official form (weights in gsbench's concatenation orders)."""
    size = x.shape[-2:]
    bb = model.backbone
    m1 = bb.mod1(x)
    m2 = bb.mod2(bb.pool2(m1))
    m3 = bb.mod3(bb.pool3(m2))
    m4 = bb.mod4(m3)
    m7 = bb.mod7(bb.mod6(bb.mod5(m4)))
    ss = model.shape_stream
    gating = [_up(conv(m), size) for conv, m in zip(ss.regular_maps, (m3, m4, m7))]
    cs = _up(m1, size)
    for block, reduce, gate, s in zip(ss.blocks, ss.reduce, ss.gates, gating):
        cs = reduce(_up(block(cs), size))
        a = _batch_norm(gate.gate_norm, torch.cat([cs, s], 1))
        a = F.conv2d(F.relu(F.conv2d(a, gate.gate_hidden.weight, gate.gate_hidden.bias)),
                     gate.gate_conv.weight, gate.gate_conv.bias)
        alphas = torch.sigmoid(_batch_norm(gate.gate_out_norm, a))
        cs = F.conv2d(cs * (alphas + 1), gate.weight.weight)
    edge_out = torch.sigmoid(_up(ss.to_boundary(cs), size))
    arr = x.numpy().transpose(0, 2, 3, 1)
    wrapped = np.mod(np.trunc(arr).astype(np.int64), 256).astype(np.uint8)  # x86 astype(uint8)
    import cv2
    canny = torch.from_numpy(np.stack([cv2.Canny(np.ascontiguousarray(i), 10, 100)
                                       for i in wrapped])).float()[:, None]
    acts = torch.sigmoid(F.conv2d(torch.cat([edge_out, canny], 1), model.canny_fusion.weight))
    aspp = model.aspp
    img = _up(aspp.image_pool(m7), m7.shape[-2:])
    edge_features = aspp.boundary(_up(acts, m7.shape[-2:]))
    branches = [b(m7) for b in aspp.branches]
    dec0_up = F.conv2d(torch.cat(branches + [img, edge_features], 1), aspp.project.weight)
    dec0_fine = F.conv2d(m2, model.low_level.weight)
    dec0_up = _up(dec0_up, m2.shape[-2:])
    dec1 = model.fuse(torch.cat([dec0_up, dec0_fine], 1))
    dec1 = F.conv2d(dec1, model.cls[-1].weight)
    return _up(dec1, size, align_corners=False), edge_out


def _randomise_norms(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.1, generator=generator)


def test_the_official_form_computes_the_official_forward():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("gscnn", num_classes=5, backbone="wideresnet_tiny", aux=False,
                            **OFFICIAL_FORMS).eval()
    _randomise_norms(model)
    images = torch.randn(1, 3, 45, 61) * 1.3
    with torch.no_grad():
        expected_logits, expected_edges = official_forward(model, images)
        outputs = model(images)
        assert torch.allclose(torch.sigmoid(outputs["edge"]), expected_edges, atol=1e-5)
        assert torch.allclose(outputs["out"], expected_logits, atol=1e-4)
        # the forms that can be switched on a built model each change the logits
        for modules, option, paper_value in (
                ((model, model.shape_stream, model.aspp), "align_corners", False),
                ((model,), "canny", "paper")):
            for module in modules:
                setattr(module, option, paper_value)
            assert not torch.allclose(model(images)["out"], expected_logits, atol=1e-3), option
            for module in modules:
                setattr(module, option, OFFICIAL_FORMS[option])


def test_official_decoder_needs_wideresnet38_and_forms_are_checked():
    with pytest.raises(GsbenchError, match="decoder: official reads WideResNet-38's mod2"):
        build_model("gscnn", num_classes=5, backbone="resnet_tiny", decoder="official")
    with pytest.raises(GsbenchError, match="model.gate must be one of paper, official, got 'deep'"):
        build_model("gscnn", num_classes=5, backbone="resnet_tiny", gate="deep")


@pytest.mark.parametrize("recipe, expected", [
    ("gscnn101", "backbone 'resnet101' is not wideresnet38"),
    ("gscnn_wrn38_nocanny", "it leaves out the shape stream or the Canny fusion"),
    ("psanet101", "model 'psanet' is not gscnn"),
])
def test_recipes_gscnn_has_no_weights_for(recipe, expected):
    with pytest.raises(GsbenchError, match=f"recipe '{recipe}': {expected}; nv-tlabs/GSCNN"):
        SOURCE.check_recipe(load_recipe(recipe))
