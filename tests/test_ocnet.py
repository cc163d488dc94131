"""OCNet's two head layouts: parameter counts against the release's layer lists, and the
official forms pixel by pixel against a direct restatement of PkuRainBow/OCNet.pytorch
(``oc_module/base_oc_block.py``, ``oc_module/asp_oc_block.py``, ``network/resnet101_*_oc.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.errors import GsbenchError
from gsbench.models.ocnet import ASPOCHead, BaseOCHead, ObjectContext
from gsbench.models.registry import build_model


def conv_count(cin: int, cout: int, k: int = 1, bias: bool = False, abn: bool = True) -> int:
    """Parameters of a Conv2d (+ InPlaceABNSync, affine) of the release."""
    return cin * cout * k * k + (cout if bias else 0) + (2 * cout if abn else 0)


#: The release's layers, counted from its files (channels for ResNet-101, 19 classes).
OFFICIAL_ASP_OC_HEAD = (
    conv_count(2048, 512, 3, bias=True)  # context[0:2]: Conv2d(2048, 512, 3) + ABN
    + conv_count(512, 256, 3, bias=True)  # ASP_OC_Module.context[0:2]
    + conv_count(256, 128, 1, bias=True)  # SelfAttentionBlock2D.f_key (= f_query)
    + conv_count(256, 256, 1, bias=True, abn=False)  # f_value
    + conv_count(256, 256, 1, bias=True, abn=False)  # W
    + conv_count(256, 256, 1, bias=True)  # BaseOC_Context_Module.conv_bn_dropout
    + conv_count(512, 256, 1)  # conv2
    + 3 * conv_count(512, 256, 3)  # conv3, conv4, conv5 (dilations 12, 24, 36)
    + conv_count(1280, 512, 1)  # conv_bn_dropout
    + conv_count(512, 19, 1, bias=True, abn=False)  # cls
)
OFFICIAL_BASE_OC_HEAD = (
    conv_count(2048, 512, 3, bias=True)
    + conv_count(512, 256, 1, bias=True)  # f_key
    + conv_count(512, 256, 1, bias=True, abn=False)  # f_value (value_channels 256)
    + conv_count(256, 512, 1, bias=True, abn=False)  # W
    + conv_count(1024, 512, 1, bias=True)  # BaseOC_Module.conv_bn_dropout
    + conv_count(512, 19, 1, bias=True, abn=False)
)
OFFICIAL_DSN = conv_count(1024, 512, 3, bias=True) + conv_count(512, 19, 1, bias=True, abn=False)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.filterwarnings("ignore::UserWarning")  # random-init ResNet-101 warns
def test_parameter_counts_equal_the_release_and_the_wide_form_is_larger():
    with torch.device("meta"):
        asp = build_model("ocnet", num_classes=19, context="asp")
        base = build_model("ocnet", num_classes=19, context="base")
        wide = build_model("ocnet", num_classes=19, context="asp", oc_head="wide", aux=False)
    assert n_params(asp.decode_head) == OFFICIAL_ASP_OC_HEAD == 15_188_371  # 15.19 M
    assert n_params(base.decode_head) == OFFICIAL_BASE_OC_HEAD == 10_369_043  # 10.37 M
    assert n_params(asp.aux_head) == n_params(base.aux_head) == OFFICIAL_DSN == 4_729_875
    assert n_params(wide.decode_head) == 40_780_819  # branches 512 wide on the 2048 map


def randomise(module: nn.Module, gain: float = 0.3) -> nn.Module:
    """Random weights (std ``gain`` / sqrt(fan-in)) and BN statistics (the zero-initialised
    output conv included), eval mode."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=gain / m.weight[0].numel() ** 0.5)
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


# --- the release, restated (InPlaceABNSync = BN + leaky ReLU 0.01) -------------------------------


def conv_abn(x, seq, activation=True):
    """``nn.Conv2d`` then ``InPlaceABNSync`` (affine BN, leaky ReLU 0.01) of the release."""
    conv, bn = seq[0], seq[1]
    x = F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.leaky_relu(x, 0.01) if activation else x


def self_attention_block(x, oc: ObjectContext, key_channels, value_channels, scale):
    """``_SelfAttentionBlock.forward`` (base_oc_block.py)."""
    batch_size, h, w = x.size(0), x.size(2), x.size(3)
    if scale > 1:
        x = F.max_pool2d(x, kernel_size=(scale, scale))
    value = F.conv2d(x, oc.value.weight, oc.value.bias).view(batch_size, value_channels, -1)
    value = value.permute(0, 2, 1)
    query = conv_abn(x, oc.query_key).view(batch_size, key_channels, -1).permute(0, 2, 1)
    key = conv_abn(x, oc.query_key).view(batch_size, key_channels, -1)
    sim_map = torch.matmul(query, key) * key_channels ** -.5
    sim_map = F.softmax(sim_map, dim=-1)
    context = torch.matmul(sim_map, value).permute(0, 2, 1).contiguous()
    context = context.view(batch_size, value_channels, *x.size()[2:])
    context = F.conv2d(context, oc.out.weight, oc.out.bias)
    if scale > 1:
        context = F.interpolate(context, size=(h, w), mode="bilinear", align_corners=True)
    return context


def official_asp_oc(c5, head: ASPOCHead, out_features):
    """``ResNet.context`` + ``cls`` of resnet101_asp_oc.py, ``ASP_OC_Module.forward``."""
    x = conv_abn(c5, head.context_pre)
    branch = head.object_branch
    feat1 = conv_abn(x, branch[0])
    feat1 = self_attention_block(feat1, branch[1], out_features // 2, out_features, 2)
    feat1 = conv_abn(feat1, branch[2])  # BaseOC_Context_Module.conv_bn_dropout
    feats = [feat1] + [conv_abn(x, b) for b in head.branches]
    out = conv_abn(torch.cat(feats, 1), head.fuse)  # Dropout2d: identity in eval
    return F.conv2d(out, head.cls[1].weight, head.cls[1].bias)


def official_base_oc(c5, head: BaseOCHead, key_channels, value_channels):
    """``ResNet.context`` + ``cls`` of resnet101_base_oc.py, ``BaseOC_Module.forward``."""
    feats = conv_abn(c5, head.conv_in)
    context = self_attention_block(feats, head.context, key_channels, value_channels, 1)
    out = conv_abn(torch.cat([context, feats], 1), head.fuse)
    return F.conv2d(out, head.cls[1].weight, head.cls[1].bias)


@pytest.mark.parametrize("size", [(9, 11), (8, 8)])  # odd sides: the max pool floors
def test_official_asp_oc_equals_the_release_pixel_by_pixel(size):
    # in_channels 64 -> context_pre 16, branches 8 wide, key 4, value 8 (the release's ratios)
    head = randomise(ASPOCHead(64, 5, (1, 2, 3), official=True))
    c5 = torch.randn(2, 64, *size)
    with torch.no_grad():
        ours = head([c5])
        theirs = official_asp_oc(c5, head, 8)
    assert ours.shape == (2, 5, *size)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_official_base_oc_equals_the_release_pixel_by_pixel():
    head = randomise(BaseOCHead(64, 5, official=True))
    assert head.context.value.out_channels == 8 and head.context.out.out_channels == 16
    c5 = torch.randn(2, 64, 7, 10)
    with torch.no_grad():
        torch.testing.assert_close(head([c5]), official_base_oc(c5, head, 8, 8),
                                   rtol=1e-5, atol=1e-5)


def test_activation_relu_differs_and_leaky_slope_is_inplace_abns():
    leaky = randomise(BaseOCHead(64, 5, official=True))
    relu = randomise(BaseOCHead(64, 5, official=True, activation="relu"))
    assert leaky.conv_in[2].negative_slope == 0.01 and isinstance(relu.conv_in[2], nn.ReLU)
    c5 = torch.randn(1, 64, 5, 5)
    with torch.no_grad():
        assert not torch.allclose(leaky([c5]), relu([c5]))


def test_object_context_output_starts_at_zero_in_both_layouts():
    for oc_head in ("official", "wide"):
        model = build_model("ocnet", num_classes=3, backbone="resnet_tiny", context="asp",
                            oc_head=oc_head).eval()
        branch = model.decode_head.object_branch
        x = torch.randn(1, branch[0][0].in_channels, 6, 6)
        with torch.no_grad():
            assert float(branch[1](branch[0](x)).abs().max()) == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"oc_head": "paper"}, "ocnet oc_head must be one of official, wide"),
    ({"activation": "gelu"}, "ocnet activation must be one of leaky_relu, relu"),
    ({"context": "pyramid"}, "ocnet context must be one of base, asp"),
])
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(GsbenchError, match=message):
        build_model("ocnet", num_classes=3, backbone="resnet_tiny", **kwargs)


# --- the release's class-balanced loss (utils/criterion.py) -------------------------------------


def test_class_weights_equal_the_releases_criterion_dsn():
    from gsbench.losses import build_loss

    torch.manual_seed(0)
    main, dsn = torch.randn(2, 19, 6, 7), torch.randn(2, 19, 6, 7)
    label = torch.randint(0, 19, (2, 6, 7))
    label[0, :3] = 255
    loss = build_loss("ocnet", ignore_index=255, aux_weight=0.4, ohem_thresh=None,
                      ohem_min_kept=100000, options={"class_weights": "ocnet"})
    result = loss({"out": main, "aux": dsn}, {"label": label})
    # CriterionDSN(use_weight=True, dsn_weight=0.4): 0.4 * CE_w(dsn) + CE_w(main)
    weight = torch.FloatTensor([0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489,
                                0.8786, 1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955,
                                1.0865, 1.1529, 1.0507])
    criterion = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=255)
    torch.testing.assert_close(result["loss"], 0.4 * criterion(dsn, label) + criterion(main, label))
    plain = build_loss("gpsnet", ignore_index=255, aux_weight=0.4, ohem_thresh=None,
                       ohem_min_kept=100000)
    assert not torch.allclose(plain({"out": main, "aux": dsn}, {"label": label})["loss"],
                              result["loss"])


def test_class_weights_with_ohem_equal_the_releases_criterion_ohem_dsn():
    from gsbench.losses import build_loss, ohem_keep_mask
    from gsbench.losses.ocnet import OCNET_CITYSCAPES_WEIGHTS

    torch.manual_seed(1)
    main, dsn = torch.randn(2, 19, 6, 7) * 3, torch.randn(2, 19, 6, 7)
    label = torch.randint(0, 19, (2, 6, 7))
    label[1, :2] = 255
    loss = build_loss("ocnet", ignore_index=255, aux_weight=0.4, ohem_thresh=0.7,
                      ohem_min_kept=10, options={"class_weights": "ocnet"})
    result = loss({"out": main, "aux": dsn}, {"label": label})
    # CriterionOhemDSN_single: weighted CE of the main output over OHEM's pixels, plain DSN term
    keep = ohem_keep_mask(main, label, 0.7, 10)
    assert 10 <= int(keep.sum()) < int((label != 255).sum())  # OHEM drops some pixels here
    weight = torch.tensor(OCNET_CITYSCAPES_WEIGHTS)
    criterion = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=255)
    kept = torch.where(keep, label, torch.full_like(label, 255))
    torch.testing.assert_close(result["loss"], criterion(main, kept) + 0.4 * criterion(dsn, label))


def test_class_weights_need_cityscapes_classes_and_a_known_name():
    from gsbench.losses import build_loss

    loss = build_loss("ocnet", ignore_index=255, aux_weight=0.4, ohem_thresh=0.7,
                      ohem_min_kept=10, options={"class_weights": "ocnet"})
    with pytest.raises(GsbenchError, match="19 Cityscapes class weights, but the model "
                                           "predicts 150"):
        loss({"out": torch.randn(1, 150, 4, 4)}, {"label": torch.zeros(1, 4, 4, dtype=torch.long)})
    with pytest.raises(GsbenchError, match="class_weights must be one of none, ocnet"):
        build_loss("gpsnet", ignore_index=255, aux_weight=0.4, ohem_thresh=None,
                   ohem_min_kept=1, options={"class_weights": "balanced"})
