"""Backbones, baseline heads, the model registry and pretrained loading."""

import math
import warnings

import pytest
import torch
from torch import nn

from gsbench.errors import GsbenchError
from gsbench.models import build_backbone, build_model, list_models, register_model
from gsbench.models.backbones import RandomInitWarning
from gsbench.models.backbones.pretrained import PartialCheckpointWarning, load_pretrained
from gsbench.models.nonlocal_net import NonLocalBlock
from gsbench.models.ocnet import ObjectContext

BASELINES = [
    ("fcn", {}),
    ("pspnet", {}),
    ("deeplabv3", {}),
    ("deeplabv3plus", {}),
    ("denseaspp", {}),
    ("nonlocal", {"mode": "embedded_gaussian"}),
    ("nonlocal", {"mode": "dot_product"}),
    ("ocnet", {"context": "base"}),
    ("ocnet", {"context": "asp"}),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_lists_the_baselines():
    names = set(list_models())
    assert {"fcn", "pspnet", "deeplabv3", "deeplabv3plus", "denseaspp", "nonlocal",
            "ocnet"} <= names


def test_unknown_model_names_the_closest():
    with pytest.raises(GsbenchError, match="unknown model 'pspnt'.*pspnet"):
        build_model("pspnt", num_classes=3)


def test_unknown_keyword_is_named():
    with pytest.raises(GsbenchError, match="does not take psa_type"):
        build_model("pspnet", num_classes=3, backbone="resnet_tiny", psa_type="collect")


def test_registering_a_name_twice_fails():
    def fcn(num_classes):  # same name as the built-in FCN builder
        return nn.Identity()

    list_models()  # make sure the built-ins are registered
    with pytest.raises(ValueError, match="registered twice"):
        register_model(fcn)


@pytest.mark.parametrize("name,kwargs", BASELINES, ids=[f"{n}-{kw}" for n, kw in BASELINES])
def test_head_shapes_and_gradients(name, kwargs):
    model = build_model(name, num_classes=5, backbone="resnet_tiny", **kwargs)
    images = torch.randn(2, 3, 37, 45)  # odd size: logits must still come back at 37 x 45
    outputs = model(images)
    assert set(outputs) == {"out", "aux"}
    assert outputs["out"].shape == (2, 5, 37, 45)
    assert outputs["aux"].shape == (2, 5, 37, 45)
    (outputs["out"].logsumexp(1).mean() + 0.4 * outputs["aux"].logsumexp(1).mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    # every parameter of the decode head takes part (zero-initialised output convs included)
    assert any(p.grad.abs().sum() > 0 for p in model.decode_head.parameters())

    model.eval()
    with torch.no_grad():
        outputs = model(images[:1])
    assert set(outputs) == {"out"} and outputs["out"].shape == (1, 5, 37, 45)


def test_aux_false_has_no_aux_head():
    model = build_model("pspnet", num_classes=4, backbone="resnet_tiny", aux=False)
    assert model.aux_head is None
    assert set(model(torch.randn(2, 3, 32, 32))) == {"out"}


def test_backbone_is_a_submodule_and_the_rest_is_head():
    model = build_model("deeplabv3plus", num_classes=4, backbone="resnet_tiny")
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    head = [n for n, p in model.named_parameters() if id(p) not in backbone_ids]
    assert head and all(n.startswith(("decode_head.", "aux_head.")) for n in head)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("name", ["resnet_tiny", "resnet18", "resnet101"])
def test_backbone_strides_and_channels(name, output_stride):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device("meta"):  # shapes only: nothing is computed
            backbone = build_backbone(name, output_stride=output_stride)
            features = backbone(torch.empty(1, 3, 96, 128))
    strides = [96 // f.shape[-2] for f in features]
    assert strides == [4, 8, min(output_stride, 16), output_stride]
    assert [128 // f.shape[-1] for f in features] == strides
    assert tuple(f.shape[1] for f in features) == backbone.channels


def test_resnet101_deep_stem_and_dilations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device("meta"):
            r = build_backbone("resnet101", output_stride=8)
    stem = [(c.in_channels, c.out_channels, c.kernel_size, c.stride)
            for c in (r.conv1, r.conv2, r.conv3)]
    assert stem == [(3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert r.channels == (256, 512, 1024, 2048)
    assert [len(r.layer1), len(r.layer2), len(r.layer3), len(r.layer4)] == [3, 4, 23, 3]
    assert {b.conv2.dilation for b in r.layer3} == {(2, 2)}
    assert {b.conv2.dilation for b in r.layer4} == {(4, 4)}
    assert r.layer3[0].conv2.stride == (1, 1) and r.layer2[0].conv2.stride == (2, 2)


def test_bad_output_stride_and_backbone_name():
    with pytest.raises(GsbenchError, match="output_stride"):
        build_backbone("resnet_tiny", output_stride=4)
    with pytest.raises(GsbenchError, match="unknown backbone 'resnet_101'.*resnet101"):
        build_backbone("resnet_101")


def test_pspnet_r101_has_the_papers_parameter_count():
    """GFF Table 3: PSPNet-R101 baseline (no aux head) has 65.6 M parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device("meta"):
            model = build_model("pspnet", num_classes=19, backbone="resnet101", aux=False)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - 65.6) / 65.6 < 0.01


def test_random_init_warns():
    with pytest.warns(RandomInitWarning, match="resnet18 has random"):
        with torch.device("meta"):
            build_backbone("resnet18")


# --- pretrained loading ------------------------------------------------------------------------
def _reference_state():
    source = build_backbone("resnet_tiny")
    for p in source.parameters():
        nn.init.normal_(p)  # distinct from any fresh init
    return source.state_dict()


def _assert_loaded(backbone, state, skip=()):
    own = backbone.state_dict()
    for k, v in state.items():
        if k.startswith(skip) or k.startswith("fc."):
            continue
        assert torch.equal(own[k], v), k


def test_load_native_layout_drops_fc(tmp_path):
    state = _reference_state()
    path = tmp_path / "tiny.pth"
    torch.save({**state, "fc.weight": torch.zeros(10, 128), "fc.bias": torch.zeros(10)}, path)
    before = path.read_bytes()
    backbone = build_backbone("resnet_tiny", pretrained=str(path))
    _assert_loaded(backbone, state)
    assert path.read_bytes() == before  # the user's file is untouched


def test_load_mmseg_resnetv1c_layout(tmp_path):
    state = _reference_state()
    stem = {"conv1.": "stem.0.", "bn1.": "stem.1.", "conv2.": "stem.3.", "bn2.": "stem.4.",
            "conv3.": "stem.6.", "bn3.": "stem.7."}
    mmseg = {}
    for k, v in state.items():
        for ours, theirs in stem.items():
            if k.startswith(ours):
                k = theirs + k[len(ours):]
        if not k.endswith("num_batches_tracked"):  # old checkpoints lack these
            mmseg["backbone." + k] = v
    mmseg["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    path = tmp_path / "mmseg.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": mmseg}, path)
    backbone = build_backbone("resnet_tiny", pretrained=str(path))
    _assert_loaded(backbone, {k: v for k, v in state.items() if "num_batches" not in k})


def test_load_plain_stem_torchvision_is_partial_and_says_so(tmp_path):
    state = _reference_state()
    plain = {k: v for k, v in state.items() if not k.startswith(("conv", "bn"))}
    plain["conv1.weight"] = torch.randn(8, 3, 7, 7)
    plain["bn1.weight"] = torch.randn(8)
    # the plain stem feeds 8 channels into layer1, not the deep stem's 16
    plain["layer1.0.conv1.weight"] = torch.randn(16, 8, 3, 3)
    path = tmp_path / "torchvision.pth"
    torch.save(plain, path)
    with pytest.warns(PartialCheckpointWarning, match="layer1.0.conv1.weight"):
        backbone = build_backbone("resnet_tiny", pretrained=str(path))
    _assert_loaded(backbone, state, skip=("conv", "bn", "layer1.0.conv1"))


def test_load_mismatch_lists_the_keys(tmp_path):
    state = _reference_state()
    state["layer2.0.conv1.weight"] = torch.zeros(32, 16, 1, 1)
    del state["layer4.0.bn2.bias"]
    state["head.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(GsbenchError) as err:
        build_backbone("resnet_tiny", pretrained=str(path))
    message = str(err.value)
    assert "bad.pth" in message and "\n" not in message
    for key in ("missing layer4.0.bn2.bias", "unexpected head.extra", "layer2.0.conv1.weight"):
        assert key in message


def test_load_missing_or_unreadable_file(tmp_path):
    with pytest.raises(GsbenchError, match="not found"):
        load_pretrained(build_backbone("resnet_tiny"), tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GsbenchError, match="garbage.pth: cannot read"):
        load_pretrained(build_backbone("resnet_tiny"), garbage)
    pickled_code = tmp_path / "code.pth"
    torch.save({"state_dict": _Unsafe()}, pickled_code)
    with pytest.raises(GsbenchError, match="code.pth: cannot read"):
        load_pretrained(build_backbone("resnet_tiny"), pickled_code)


class _Unsafe:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


# --- attention blocks against slow per-position references -------------------------------------
def test_nonlocal_block_matches_per_position_loop():
    """Wang et al. Eq. 1-4 written out position by position."""
    for mode in ("embedded_gaussian", "dot_product"):
        block = NonLocalBlock(6, mode).eval()
        for p in block.parameters():
            nn.init.normal_(p, std=0.3)
        x = torch.randn(2, 6, 3, 4)
        with torch.no_grad():
            fast = block(x)
            theta, phi, g = block.theta(x), block.phi(x), block.g(x)
            n, _, h, w = x.shape
            y = torch.zeros(n, 3, h, w)
            for b in range(n):
                for i in range(h * w):
                    ti = theta[b, :, i // w, i % w]
                    scores = [float(ti @ phi[b, :, j // w, j % w]) for j in range(h * w)]
                    if mode == "embedded_gaussian":
                        e = [math.exp(s / math.sqrt(3)) for s in scores]
                        weights = [v / sum(e) for v in e]
                    else:
                        weights = [s / (h * w) for s in scores]
                    y[b, :, i // w, i % w] = sum(
                        wt * g[b, :, j // w, j % w] for j, wt in enumerate(weights))
            slow = x + block.out(y)
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_object_context_matches_per_position_loop():
    """OCNet Eq. 1-2: c_p = sum_i softmax_i(q_p . k_i / sqrt(d)) phi(x_i), then the output conv."""
    oc = ObjectContext(4, 2).eval()
    for p in oc.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        fast = oc(x)
        q, v = oc.query_key(x)[0].flatten(1), oc.value(x)[0].flatten(1)
        context = torch.zeros(4, 9)
        for p_ in range(9):
            e = [math.exp(float(q[:, p_] @ q[:, i]) / math.sqrt(2)) for i in range(9)]
            context[:, p_] = sum(e[i] / sum(e) * v[:, i] for i in range(9))
        slow = oc.out(context.reshape(1, 4, 3, 3))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_zero_initialised_context_starts_as_identity():
    block = NonLocalBlock(8)
    block.reset_parameters()
    x = torch.randn(1, 8, 4, 4)
    block.eval()
    torch.testing.assert_close(block(x), x)


def test_plain_stem_checkpoint_of_another_depth_is_refused(tmp_path):
    state = _reference_state()
    plain = {k: v for k, v in state.items() if not k.startswith(("conv", "bn", "layer4"))}
    plain["conv1.weight"] = torch.randn(8, 3, 7, 7)
    path = tmp_path / "shallower.pth"
    torch.save(plain, path)
    with pytest.raises(GsbenchError, match="beyond its stem: layer4.0"):
        build_backbone("resnet_tiny", pretrained=str(path))
