"""DenseASPP: the release's layer form pixel by pixel (DeepMotionAIResearch/DenseASPP
``models/DenseASPP.py``), its widths' parameter counts, and GPSNet Table 4's 25.6 M."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.errors import GsbenchError
from gsbench.models.denseaspp import DenseASPPBlock, DenseASPPHead
from gsbench.models.registry import build_model
from test_ocnet import randomise


def conv_weights(module: nn.Module) -> int:
    """Table 4's counting rule (its ASPP and SuperNet rows): convolution weights only."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def test_release_widths_and_gpsnet_table4s_count():
    rates = (1, 12, 24, 36)  # Table 4's dilation setting, on ResNet-101's 2048 channels
    with torch.device("meta"):
        official = DenseASPPBlock(2048, rates)
        earlier = DenseASPPBlock(2048, rates, 512, 256, "post_activation")
        densenet161 = DenseASPPBlock(1104, (3, 6, 12, 18, 24))
        # the one reading that reaches 25.6 M: dense 3x3 layers of ASPP's width (256) without
        # DenseASPP's 1x1 bottlenecks, and a 1x1 projection of the 3072 channels to 1024
        dense_3x3 = [nn.Conv2d(2048 + 256 * i, 256, 3, bias=False) for i in range(4)]
        projection = nn.Conv2d(2048 + 4 * 256, 1024, 1, bias=False)
    assert conv_weights(official) == 6_946_816  # 6.95 M
    assert conv_weights(earlier) == 9_699_328  # 9.70 M
    reading = sum(conv_weights(c) for c in dense_3x3) + conv_weights(projection)
    assert reading == 25_559_040 and round(reading / 1e6, 1) == 25.6
    # the release's own module (DenseNet-161's 1104 channels, five layers), all parameters
    assert sum(p.numel() for p in densenet161.parameters()) == 6_450_432


def bn(x, norm):
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False,
                        0.0, norm.eps)


def release_forward(feature, head: DenseASPPHead):
    """``DenseASPP.forward`` after ``self.features`` and ``_DenseAsppBlock.forward`` (eval)."""
    for i, layer in enumerate(head.dense_aspp.layers):
        modules = list(layer)
        x = feature
        if i > 0:  # bn_start=False for ASPP_3 only
            x = bn(x, modules.pop(0))
        _, conv1, norm2, _, conv2 = modules
        x = F.conv2d(F.relu(x), conv1.weight, conv1.bias)
        x = F.relu(bn(x, norm2))
        aspp = F.conv2d(x, conv2.weight, conv2.bias, padding=conv2.dilation,
                        dilation=conv2.dilation)
        feature = torch.cat((aspp, feature), dim=1)
    conv = head.cls[1]
    return F.conv2d(feature, conv.weight, conv.bias)


def test_official_form_equals_the_release_pixel_by_pixel():
    head = randomise(DenseASPPHead(16, 5, (1, 2, 3), reduce=8, growth=4), gain=1.0)
    feature = torch.relu(torch.randn(2, 16, 9, 7))  # a ResNet's c5 is non-negative
    with torch.no_grad():
        torch.testing.assert_close(head([feature]), release_forward(feature, head),
                                   rtol=1e-5, atol=1e-5)


def test_forms_differ_and_bad_form_is_named():
    for form in ("official", "post_activation"):
        model = build_model("denseaspp", num_classes=3, backbone="resnet_tiny", form=form,
                            reduce=16, growth=8)
        assert model.decode_head.dense_aspp.out_channels == model.backbone.channels[-1] + 5 * 8
    with pytest.raises(GsbenchError, match="denseaspp form must be one of official, "
                                           "post_activation"):
        build_model("denseaspp", num_classes=3, backbone="resnet_tiny", form="pre")
