"""GPSNet: gate prediction (Eq. 1-3) and the SuperNet wiring against direct implementations,
the model contract, Table 4's parameter count, and a smoke training that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.errors import GsbenchError
from gsbench.models import build_model
from gsbench.models.gpsnet import (
    TUNED_DILATIONS,
    UNTUNED_DILATIONS,
    GatePrediction,
    SuperNet,
    check_dilations,
)


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that eval-mode BN is not identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)


def conv_bn_relu(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """ReLU(BN(conv(x))) written out from the block's weights (eval-mode BN)."""
    conv, bn = block[0], block[1]
    y = F.conv2d(x, conv.weight, None, padding=conv.padding, dilation=conv.dilation)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    y = y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    return torch.clamp(y, min=0)


def pixelwise_gate(gate: GatePrediction, xv: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
    """Eq. 1-3 one pixel at a time: M_i = ReLU(BN(w_i . x_i)), M' = ReLU(BN(W [M_v, M_h])),
    O = M'_v x_v + M'_h x_h."""
    def affine(block, values):  # 1x1 conv + BN + ReLU on one pixel's channel vector
        conv, bn = block[0], block[1]
        y = conv.weight[:, :, 0, 0] @ values
        y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return torch.clamp(y, min=0)

    out = torch.empty_like(xv)
    n, _, h, w = xv.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                m_v = affine(gate.project_vertical, xv[b, :, i, j])
                m_h = affine(gate.project_horizontal, xh[b, :, i, j])
                m = affine(gate.compare, torch.cat([m_v, m_h]))
                out[b, :, i, j] = m[0] * xv[b, :, i, j] + m[1] * xh[b, :, i, j]
    return out


def test_gate_prediction_matches_eq1_to_eq3_per_pixel():
    torch.manual_seed(0)
    gate = GatePrediction(5)
    randomise_batchnorm(gate)
    gate.eval()
    xv, xh = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    with torch.no_grad():
        masks = gate.masks(xv, xh)
        fast = gate(xv, xh)
        slow = pixelwise_gate(gate, xv, xh)
    assert masks.shape == (2, 2, 3, 4) and bool((masks >= 0).all())  # ReLU, no softmax (Eq. 2)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def direct_supernet(net: SuperNet, x: torch.Tensor, gated: bool) -> torch.Tensor:
    """The SuperNet of Sec. 3.1 written as a recursion over grid nodes: node (b, l) is the
    atrous conv of merge(node(b - 1, l), node(b, l - 1)); node(b, -1) is the squeeze."""
    squeezed = conv_bn_relu(net.squeeze, x)
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def node(b: int, layer: int) -> torch.Tensor:
        if layer < 0:
            return squeezed
        if (b, layer) not in cache:
            horizontal = node(b, layer - 1)
            if b == 0:
                merged = horizontal
            elif gated:
                merged = pixelwise_gate(net.gates[b - 1][layer], node(b - 1, layer), horizontal)
            else:
                merged = node(b - 1, layer) + horizontal
            cache[b, layer] = conv_bn_relu(net.atrous[b][layer], merged)
        return cache[b, layer]

    last = len(net.dilations[0]) - 1
    exits = torch.cat([node(b, last) for b in range(len(net.dilations))], dim=1)
    return conv_bn_relu(net.excitation, exits)


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("grid", [((1, 2), (3, 1), (2, 2)), ((1, 1, 2), (2, 1, 1))])
def test_supernet_matches_direct_recursion(gate, grid):
    torch.manual_seed(1)
    net = SuperNet(16, grid, gate=gate, squeeze_channels=4, out_channels=6)
    randomise_batchnorm(net)
    net.eval()
    x = torch.randn(1, 16, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(net(x), direct_supernet(net, x, gate), rtol=1e-4, atol=1e-5)
    assert (net.gates is not None) == gate


def test_a_closed_vertical_gate_cuts_the_previous_branch_off():
    """M'_v = 0 at every gate of branch 2: its exit no longer depends on branch 1 (Eq. 3)."""
    torch.manual_seed(2)
    net = SuperNet(8, ((1, 1), (2, 2)), gate=True, squeeze_channels=4, out_channels=4).eval()
    x = torch.randn(1, 8, 6, 6)
    captured = {}
    net.atrous[1][1].register_forward_hook(lambda m, i, o: captured.__setitem__("exit", o.clone()))

    def branch2_exit_changes_with_branch1(vertical_bias: float) -> bool:
        with torch.no_grad():
            for gate in net.gates[0]:
                nn.init.zeros_(gate.compare[0].weight)  # M' = ReLU(BN bias) everywhere
                gate.compare[1].bias.copy_(torch.tensor([vertical_bias, 1.0]))
            net(x)
            before = captured["exit"]
            net.atrous[0][0][0].weight.mul_(3.0)  # change branch 1 only
            net(x)
        return not torch.allclose(captured["exit"], before)

    assert not branch2_exit_changes_with_branch1(-1.0)
    assert branch2_exit_changes_with_branch1(1.0)


@pytest.mark.parametrize("context", ["aspp", "oc"])
def test_gpsnet_contract_forward_backward_on_tiny_backbone(context):
    torch.manual_seed(0)
    model = build_model("gpsnet", num_classes=5, backbone="resnet_tiny", context=context,
                        dilations=((1, 2), (3, 4), (5, 6), (7, 8)))
    model.train()
    images = torch.randn(2, 3, 40, 56)
    outputs = model(images)
    assert set(outputs) == {"out", "aux"}
    assert outputs["out"].shape == outputs["aux"].shape == (2, 5, 40, 56)
    (outputs["out"].square().mean() + 0.4 * outputs["aux"].mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    gate_grads = [p.grad.abs().sum() for n, p in model.named_parameters() if ".gates." in n]
    assert gate_grads and sum(gate_grads) > 0  # the gates learn
    model.eval()
    assert set(model(images)) == {"out"}
    assert hasattr(model, "backbone")


def test_default_dilations_are_the_tuned_grid_and_gate_false_drops_the_gates():
    model = build_model("gpsnet", num_classes=3, backbone="resnet_tiny", aux=False, gate=False)
    assert model.decode_head.supernet.dilations == TUNED_DILATIONS
    assert model.decode_head.supernet.gates is None and model.aux_head is None
    assert check_dilations([[1, 1], [12, 12], [24, 24], [36, 36]]) == UNTUNED_DILATIONS


@pytest.mark.filterwarnings("ignore::UserWarning")  # random-init ResNet-101 warns; expected here
def test_resnet101_gps_head_sizes_on_meta():
    with torch.device("meta"):
        supernet = SuperNet(2048, UNTUNED_DILATIONS, gate=False)
        model = build_model("gpsnet", num_classes=19, context="oc", aux=False)
        wide = build_model("gpsnet", num_classes=19, context="oc", aux=False, oc_head="wide")
    conv_weights = sum(m.weight.numel() for m in supernet.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == 6_291_456  # GPSNet Table 4: SuperNet 6.29 M
    assert model.decode_head.supernet.out_channels == 1024
    # the release's ASP-OC: object-context and 1x1 branches 256 wide on the 3x3 conv's 512
    # channels; the SuperNet on c5 (2048), as Table 4 counts it
    assert model.decode_head.fuse[0].in_channels == 256 + 256 + 1024
    assert model.decode_head.supernet.squeeze[0].in_channels == 2048
    assert wide.decode_head.fuse[0].in_channels == 512 + 512 + 1024


@pytest.mark.parametrize("kwargs, message", [
    ({"context": "base"}, "context must be one of aspp, oc"),
    ({"dilations": ((1, 2), (3,))}, "same number of positive integers"),
    ({"dilations": ((0, 1),)}, "positive integers"),
    ({"dilations": ()}, "non-empty"),
    ({"dilations": ((1, "3"), (2, 2))}, "positive integers"),
    ({"dilations": ((True, 3),)}, "positive integers"),
])
def test_bad_arguments_are_gsbench_errors(kwargs, message):
    with pytest.raises(GsbenchError, match=message):
        build_model("gpsnet", num_classes=3, backbone="resnet_tiny", **kwargs)


def test_recipes_follow_the_paper_and_table1():
    from gsbench.recipes import load_recipe

    for name in ("gpsnet101", "gpsnet101_ocnet"):
        r = load_recipe(name)
        t = r.train
        assert (r.data.crop_size, t.batch_size, t.lr, t.weight_decay, t.iterations) == (
            [769, 769], 8, 0.01, 5e-4, 40000)
        assert (t.poly_power, r.data.scale_range, r.data.flip) == (0.9, [0.5, 2.0], True)
        assert (t.ohem_thresh, t.ohem_min_kept) == (0.7, 100000)
        assert [tuple(b) for b in r.model.dilations] == list(TUNED_DILATIONS) and r.model.gate
    assert load_recipe("gpsnet101").model.context == "aspp"
    assert load_recipe("gpsnet101_ocnet").model.context == "oc"
    # Table 1: (context, untuned?, gate, OHEM) of each row's recipe
    rows = {"gpsnet101_noohem": ("aspp", False, True, False),
            "gpsnet101_ocnet_supernet": ("oc", True, False, False),
            "gpsnet101_ocnet_gate": ("oc", True, True, False),
            "gpsnet101_ocnet_tuned": ("oc", False, True, False),
            "gpsnet101_ocnet": ("oc", False, True, True)}
    for name, (context, untuned, gate, ohem) in rows.items():
        m, t = load_recipe(name).model, load_recipe(name).train
        grid = UNTUNED_DILATIONS if untuned else TUNED_DILATIONS
        assert (m.context, [tuple(b) for b in m.dilations], m.gate) == (context, list(grid), gate)
        assert (t.ohem_thresh is not None) == ohem and t.weight_decay == 5e-4
    for name, model in (("gpsnet101_baseline", "deeplabv3"), ("gpsnet101_ocnet_baseline", "ocnet")):
        r = load_recipe(name)
        assert r.model.name == model and r.train.ohem_thresh is None
        assert (r.data.crop_size, r.train.iterations, r.train.weight_decay) == (
            [769, 769], 40000, 5e-4)
    assert load_recipe("gpsnet101_ocnet_baseline").model.context == "asp"
    for name in ("gpsnet101_ocnet_baseline", "gpsnet101_ocnet", "gpsnet101_ocnet_supernet"):
        r = load_recipe(name)
        assert (r.model.oc_head, r.model.activation, r.train.head_lr_mult) == (
            "official", "leaky_relu", 1.0)
        assert r.train.loss_options == {"class_weights": "ocnet"}  # the OCNet release's
    assert load_recipe("gpsnet101_ocnet_ade20k").train.loss_options == {"class_weights": "none"}


def test_table1_trains_every_row_under_gpsnets_protocol_on_asp_oc():
    """GPSNet Table 1: the ASPP and OCNet baselines train like the GPS rows (crop 769, batch 8,
    40K iterations, wd 5e-4), and the OCNet row is the ASP-OC head the SuperNet is put into."""
    from gsbench.tables.cells import cell_recipe
    from gsbench.tables.registry import select_tables

    (table,) = select_tables(["gpsnet.table1"])
    recipes = {c.row_id: cell_recipe(c) for c in table.cells}
    assert set(recipes) == {"aspp", "aspp-gps", "ocnet", "ocnet-supernet", "ocnet-gate",
                            "ocnet-tuned", "ocnet-ohem"}
    for row, r in recipes.items():
        assert (r.data.crop_size, r.train.batch_size, r.train.iterations, r.train.weight_decay) == (
            [769, 769], 8, 40000, 5e-4), row
    assert recipes["aspp"].model.name == "deeplabv3"
    assert (recipes["ocnet"].model.name, recipes["ocnet"].model.context,
            recipes["ocnet"].model.oc_head) == ("ocnet", "asp", "official")
    for row in ("ocnet-supernet", "ocnet-gate", "ocnet-tuned", "ocnet-ohem"):
        assert (recipes[row].model.context, recipes[row].model.oc_head) == ("oc", "official")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_training_on_synthetic_data_learns(tmp_path):
    """gpsnet101_ocnet-smoke (GPS in ASP-OC, OHEM) on synthetic street scenes: the loss falls
    and the val mIoU beats always predicting the most frequent class."""
    from gsbench.data.synthetic import prepare_synthetic
    from gsbench.engine.train import train
    from gsbench.io import read_label
    from gsbench.metrics.confusion import confusion_matrix, scores_from_confusion
    from gsbench.recipes import load_recipe

    torch.set_num_threads(1)
    manifest = prepare_synthetic(tmp_path / "raw", n_train=12, n_val=4, size=(64, 128), seed=0,
                                 workers=1, progress=False)
    gt = np.concatenate([read_label(manifest.path(s.label)) for s in manifest.split("val")])
    most_frequent = np.bincount(gt[gt != 255]).argmax()
    trivial = scores_from_confusion(confusion_matrix(np.full_like(gt, most_frequent), gt, 19))

    iterations = 60
    recipe = load_recipe("gpsnet101_ocnet-smoke", [
        f"train.iterations={iterations}", "train.batch_size=4", "train.lr=0.02",
        "data.crop_size=[64,128]", "data.scale_range=[0.75,1.5]", "train.log_every=10",
        f"train.val_every={iterations}", "train.checkpoint_every=1000"])
    result = train(recipe, tmp_path / "run", data_root=manifest.root, quiet=True)
    losses = [row["loss"] for row in result.log]
    assert result.finished and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.75 * losses[0], losses
    assert result.metrics["miou"] > 2 * trivial["miou"], (result.metrics["miou"], trivial["miou"])
