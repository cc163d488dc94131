"""CCNet, DANet and ANN (the attention peers of RANet Table 3): each attention checked against a
direct per-position loop on tiny maps, the model contract, parameter counts, and a smoke
training that learns on synthetic data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsbench.analysis.complexity import count_parameters
from gsbench.errors import GsbenchError
from gsbench.losses import build_loss
from gsbench.models import build_model
from gsbench.models.annet import (
    AFNB,
    APNB,
    ANNHead,
    asymmetric_attention,
    pyramid_sample,
)
from gsbench.models.ccnet import (
    CCHead,
    CrissCrossAttention,
    RecurrentCrissCrossAttention,
    criss_cross_attention,
)
from gsbench.models.danet import (
    ChannelAttention,
    DAHead,
    PositionAttention,
    channel_attention,
    position_attention,
)

PEERS = ("ccnet", "danet", "annet")


def _softmax(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.softmax(torch.stack(values), dim=0)


# --- CCNet ----------------------------------------------------------------------------------------


def slow_criss_cross(query, key, value):
    """Eq. 1-2 position by position: Omega_u = u's column without u, then u's whole row."""
    n, _, height, width = query.shape
    out = torch.zeros_like(value)
    for b in range(n):
        for h in range(height):
            for w in range(width):
                path = [(g, w) for g in range(height) if g != h] + [(h, v) for v in range(width)]
                assert len(path) == height + width - 1
                weights = _softmax([query[b, :, h, w] @ key[b, :, i, j] for i, j in path])
                out[b, :, h, w] = sum(a * value[b, :, i, j] for a, (i, j) in zip(weights, path))
    return out


@pytest.mark.parametrize("height,width", [(4, 5), (1, 3), (6, 2)])
def test_criss_cross_attention_matches_per_position_loop(height, width):
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, height, width), torch.randn(2, 3, height, width)
    v = torch.randn(2, 4, height, width)
    torch.testing.assert_close(criss_cross_attention(q, k, v), slow_criss_cross(q, k, v))


def test_recurrent_criss_cross_shares_one_module_applied_twice():
    torch.manual_seed(0)
    rcca = RecurrentCrissCrossAttention(16, recurrence=2)
    single = CrissCrossAttention(16)
    assert count_parameters(rcca) == count_parameters(single)
    with torch.no_grad():
        rcca.attention.gamma.fill_(0.7)
    x = torch.randn(1, 16, 5, 6)
    module = rcca.attention
    once = 0.7 * slow_criss_cross(module.query(x), module.key(x), module.value(x)) + x
    twice = 0.7 * slow_criss_cross(module.query(once), module.key(once), module.value(once)) + once
    torch.testing.assert_close(rcca(x), twice, rtol=1e-4, atol=1e-5)
    # gamma starts at 0: the block starts as the identity
    torch.testing.assert_close(RecurrentCrissCrossAttention(16)(x), x)


# --- DANet ----------------------------------------------------------------------------------------


def slow_position_attention(query, key, value):
    """Eq. 1-2 with query = C (at the receiving position j), key = B (at the sources i)."""
    n, _, height, width = value.shape
    q, k, v = query.flatten(2), key.flatten(2), value.flatten(2)
    out = torch.zeros_like(v)
    for b in range(n):
        for j in range(height * width):
            s = _softmax([k[b, :, i] @ q[b, :, j] for i in range(height * width)])
            out[b, :, j] = sum(s[i] * v[b, :, i] for i in range(height * width))
    return out.reshape(value.shape)


def slow_channel_attention(x, official=False):
    """Eq. 3-4 channel by channel; ``official``: softmax of max_i(e) - e (the authors' code)."""
    n, channels = x.shape[:2]
    out = torch.zeros_like(x)
    for b in range(n):
        for j in range(channels):
            energy = torch.stack([(x[b, i] * x[b, j]).sum() for i in range(channels)])
            if official:
                energy = energy.max() - energy
            weights = torch.softmax(energy, dim=0)
            out[b, j] = sum(weights[i] * x[b, i] for i in range(channels))
    return out


def test_position_attention_matches_per_position_loop():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)
    torch.testing.assert_close(position_attention(q, k, v), slow_position_attention(q, k, v))


@pytest.mark.parametrize("energy", ["paper", "official"])
def test_channel_attention_matches_per_channel_loop(energy):
    torch.manual_seed(0)
    x = 0.3 * torch.randn(2, 6, 4, 3)
    expected = slow_channel_attention(x, official=energy == "official")
    torch.testing.assert_close(channel_attention(x, energy), expected)


def test_paper_and_official_channel_energy_differ_and_modules_add_the_residual():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 3, 3)
    assert not torch.allclose(channel_attention(x, "paper"), channel_attention(x, "official"))
    cam, pam = ChannelAttention("paper"), PositionAttention(8)
    torch.testing.assert_close(cam(x), x)  # beta and alpha start at 0 (the paper)
    torch.testing.assert_close(pam(x), x)
    with torch.no_grad():
        cam.beta.fill_(0.5)
        pam.alpha.fill_(0.5)
    torch.testing.assert_close(cam(x), 0.5 * slow_channel_attention(x) + x)
    expected = 0.5 * slow_position_attention(pam.query(x), pam.key(x), pam.value(x)) + x
    torch.testing.assert_close(pam(x), expected)
    with pytest.raises(GsbenchError, match="channel_energy"):
        ChannelAttention("max")


# --- ANN ------------------------------------------------------------------------------------------


def slow_pyramid_sample(x, sizes):
    """Adaptive average pooling written out: bin i of s covers [floor(iH/s), ceil((i+1)H/s))."""
    n, c, height, width = x.shape
    points = []
    for s in sizes:
        for i in range(s):
            for j in range(s):
                rows = slice(math.floor(i * height / s), math.ceil((i + 1) * height / s))
                cols = slice(math.floor(j * width / s), math.ceil((j + 1) * width / s))
                points.append(x[:, :, rows, cols].mean(dim=(2, 3)))
    return torch.stack(points, dim=2)


def slow_asymmetric_attention(query, key, value):
    n, channels, height, width = query.shape
    out = torch.zeros(n, value.shape[1], height, width)
    for b in range(n):
        for h in range(height):
            for w in range(width):
                weights = _softmax([query[b, :, h, w] @ key[b, :, s] / math.sqrt(channels)
                                    for s in range(key.shape[2])])
                out[b, :, h, w] = sum(weights[s] * value[b, :, s] for s in range(key.shape[2]))
    return out


@pytest.mark.parametrize("height,width", [(9, 11), (5, 4), (13, 13)])
def test_pyramid_sampling_matches_bin_means_and_has_110_points(height, width):
    x = torch.randn(2, 3, height, width)
    sampled = pyramid_sample(x)
    assert sampled.shape == (2, 3, 1 + 9 + 36 + 64)
    torch.testing.assert_close(sampled, slow_pyramid_sample(x, (1, 3, 6, 8)))


def test_asymmetric_attention_matches_per_position_loop():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 7), torch.randn(2, 6, 7)
    torch.testing.assert_close(asymmetric_attention(q, k, v), slow_asymmetric_attention(q, k, v))


def test_apnb_and_afnb_match_direct_composition():
    torch.manual_seed(0)
    apnb, afnb = APNB(16, 16, channels=8).eval(), AFNB(12, 16, 16, channels=8).eval()
    x, low = torch.randn(1, 16, 9, 10), torch.randn(1, 12, 9, 10)
    att = apnb.attention
    assert att.query is att.key  # APNB shares the key / query projection
    context = att.out(slow_asymmetric_attention(
        att.query(x), slow_pyramid_sample(att.key(x), (1, 3, 6, 8)),
        slow_pyramid_sample(att.value(x), (1, 3, 6, 8))))
    torch.testing.assert_close(apnb(x), apnb.fuse(torch.cat([context, x], 1)), rtol=1e-4, atol=1e-5)
    att = afnb.attention
    assert att.query is not att.key
    context = att.out(slow_asymmetric_attention(
        att.query(x), slow_pyramid_sample(att.key(low), (1, 3, 6, 8)),
        slow_pyramid_sample(att.value(low), (1, 3, 6, 8))))
    torch.testing.assert_close(afnb(low, x), afnb.fuse(torch.cat([context, x], 1)),
                               rtol=1e-4, atol=1e-5)


# --- models ---------------------------------------------------------------------------------------


def _open_residual_scales(model):
    """gamma / alpha / beta start at 0, which blocks the gradient to Q and K; open them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in ("gamma", "alpha", "beta"):
                p.fill_(0.5)


@pytest.mark.parametrize("name", PEERS)
def test_model_contract_and_finite_gradients_everywhere(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, backbone="resnet_tiny")
    _open_residual_scales(model)
    model.train()
    images = torch.randn(2, 3, 40, 56)
    outputs = model(images)
    extra = {"pam", "cam"} if name == "danet" else set()
    assert set(outputs) == {"out", "aux"} | extra
    assert all(v.shape == (2, 5, 40, 56) for v in outputs.values())
    label = torch.randint(0, 5, (2, 40, 56))
    label[:, :3] = 255
    loss = build_loss(name, ignore_index=255, aux_weight=0.4)(outputs, {"label": label})["loss"]
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        if "backbone" not in pname:
            assert p.grad.abs().sum() > 0, pname
    model.eval()
    with torch.no_grad():
        assert set(model(images[:1])) == {"out"}
    assert hasattr(model, "backbone")


def test_danet_loss_sums_fused_aux_and_branch_terms():
    torch.manual_seed(0)
    outputs = {k: torch.randn(2, 4, 6, 7) for k in ("out", "aux", "pam", "cam")}
    label = torch.randint(0, 4, (2, 6, 7))
    label[0, 0] = 255
    ce = {k: F.cross_entropy(v, label, ignore_index=255) for k, v in outputs.items()}
    loss = build_loss("danet", ignore_index=255, aux_weight=0.4,
                      options={"pam_weight": 0.5, "cam_weight": 2.0})
    result = loss(outputs, {"label": label})
    expected = ce["out"] + 0.4 * ce["aux"] + 0.5 * ce["pam"] + 2.0 * ce["cam"]
    torch.testing.assert_close(result["loss"], expected)
    torch.testing.assert_close(result["cam"], ce["cam"])
    eval_only = loss({"out": outputs["out"]}, {"label": label})
    torch.testing.assert_close(eval_only["loss"], ce["out"])
    with pytest.raises(GsbenchError, match="pam_weight"):
        build_loss("danet", ignore_index=255, aux_weight=0.4, options={"pam_weight": -1.0})


def _conv(cin, cout, k=1, bias=False, bn=True):
    return cin * cout * k * k + (cout if bias else 0) + (2 * cout if bn else 0)


def test_head_parameter_counts_match_the_layer_by_layer_sum():
    c, mid, classes = 2048, 512, 19
    cls = _conv(mid, classes, bias=True, bn=False)
    cca = 2 * _conv(mid, mid // 8, bias=True, bn=False) + _conv(mid, mid, bias=True, bn=False) + 1
    cc = _conv(c, mid, 3) + cca + _conv(mid, mid, 3) + _conv(c + mid, mid, 3) + cls
    pam = cca  # same Q / K / V widths and one scale
    da = 2 * _conv(c, mid, 3) + pam + 1 + 2 * _conv(mid, mid, 3) + 3 * cls
    low = 1024
    afnb = (_conv(low, 256) + _conv(c, 256) + _conv(low, 256, bias=True, bn=False)
            + _conv(256, c, bias=True, bn=False) + _conv(2 * c, c))
    apnb = (_conv(mid, 256) + _conv(mid, 256, bias=True, bn=False)
            + _conv(256, mid, bias=True, bn=False) + _conv(2 * mid, mid))
    ann = afnb + _conv(c, mid, 3) + apnb + cls
    with torch.device("meta"):
        heads = {"cc": CCHead(c, classes), "da": DAHead(c, classes),
                 "ann": ANNHead(low, c, classes)}
    assert {k: count_parameters(v) for k, v in heads.items()} == {"cc": cc, "da": da, "ann": ann}


@pytest.mark.parametrize("name", PEERS)
def test_resnet101_models_build_on_meta_with_the_stride8_backbone(name):
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = build_model(name, num_classes=19, backbone="resnet101", aux=False)
    assert 60e6 < count_parameters(model) < 75e6


def test_bad_options_raise_gsbench_errors():
    with pytest.raises(GsbenchError, match="recurrence"):
        build_model("ccnet", num_classes=3, backbone="resnet_tiny", recurrence=0)
    with pytest.raises(GsbenchError, match="channel_energy"):
        build_model("danet", num_classes=3, backbone="resnet_tiny", channel_energy="max")
    with pytest.raises(GsbenchError, match="pyramid_sizes"):
        build_model("annet", num_classes=3, backbone="resnet_tiny", pyramid_sizes=(0, 3))


# --- smoke training -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from gsbench.data.synthetic import prepare_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    return prepare_synthetic(out, n_train=8, n_val=4, size=(64, 128), workers=1,
                             progress=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", PEERS)
def test_smoke_training_learns_on_synthetic_data(name, synthetic_root, tmp_path,
                                                 most_frequent_class_miou):
    from gsbench.engine.train import train
    from gsbench.recipes import load_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(f"{name}101-smoke", [
        "train.iterations=100", "train.batch_size=4", "train.lr=0.02",
        "data.crop_size=[64,128]", "data.scale_range=[0.75,1.25]", "data.rotate_degrees=0",
        "data.blur_prob=0", "data.color_jitter=0", "train.val_every=100", "train.log_every=10",
        "train.checkpoint_every=1000",
    ])
    result = train(recipe, tmp_path / "run", data_root=synthetic_root.root, quiet=True)
    losses = [row["loss"] for row in result.log if "loss" in row]
    assert np.mean(losses[-3:]) < 0.6 * losses[0]
    trivial = most_frequent_class_miou(synthetic_root, majority_from="val")
    assert result.metrics["miou"] > trivial + 0.05, (result.metrics["miou"], trivial)
