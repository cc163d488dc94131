"""A WideResNet-38 ImageNet checkpoint loads: its classifier and final BN are dropped."""

import torch

from gsbench.models.backbones import build_backbone


def test_wideresnet_checkpoint_with_classifier_and_bn_out_loads(tmp_path):
    source = build_backbone("wideresnet_tiny", output_stride=8)
    state = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}
    state["bn_out.weight"] = torch.ones(3)
    state["classifier.fc.weight"] = torch.ones(1000, 3)
    torch.save({"state_dict": state}, tmp_path / "wrn38.pth")
    target = build_backbone("wideresnet_tiny", output_stride=8, pretrained=str(tmp_path / "wrn38.pth"))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
