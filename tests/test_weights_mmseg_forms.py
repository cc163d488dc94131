"""mmsegmentation's architecture forms in gsbench: the ResNetV1c-D8 backbone and the mmseg heads
have exactly the tensors of the official models (the fixtures of tests/fixtures/weights/mmseg,
generated from mmsegmentation v1.2.2's own model definitions), and the papers' forms stay the
defaults."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from gsbench.errors import GsbenchError
from gsbench.models import build_backbone, build_model

FIXTURES = Path(__file__).parent / "fixtures" / "weights" / "mmseg"

#: fixture architecture -> (gsbench model, the options of mmseg's form)
FORMS = {
    "fcn": ("fcn", {"concat_input": True}),
    "pspnet": ("pspnet", {}),
    "deeplabv3": ("deeplabv3", {"head": "mmseg"}),
    "deeplabv3plus": ("deeplabv3plus", {"head": "mmseg"}),
    "nonlocal": ("nonlocal", {}),
    "danet": ("danet", {"channel_energy": "official"}),
    "ccnet": ("ccnet", {}),
    "ann": ("annet", {}),
}


def fixture(arch: str) -> dict:
    return json.loads((FIXTURES / f"{arch}.json").read_text())


def meta_model(name: str, backbone: str, **options) -> torch.nn.Module:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # random-init warning
        return build_model(name, num_classes=19, backbone=backbone, **options)


@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("arch", sorted(FORMS))
def test_mmseg_form_has_the_official_tensors_and_parameters(arch, depth):
    name, options = FORMS[arch]
    official = fixture(f"{arch}_r{depth}-d8")
    model = meta_model(name, f"resnet{depth}_v1c", **options)
    shapes = sorted(tuple(t.shape) for t in model.state_dict().values())
    # 0-dim attention scales of mmcv's Scale are [1] in gsbench (the import reshapes them)
    official_shapes = sorted((1,) if key.endswith("gamma.scale") else tuple(shape)
                             for key, shape in official["tensors"].items())
    assert shapes == official_shapes
    assert sum(p.numel() for p in model.parameters()) == official["num_parameters"]


@pytest.mark.parametrize("arch", ["fcn", "deeplabv3", "deeplabv3plus"])
def test_the_papers_heads_stay_the_default(arch):
    name, options = FORMS[arch]
    default = meta_model(name, "resnet50_v1c")
    mmseg = meta_model(name, "resnet50_v1c", **options)
    assert sum(p.numel() for p in default.parameters()) < sum(p.numel() for p in mmseg.parameters())


def test_resnet_v1c_stem_and_contracted_dilation():
    v1c = build_backbone("resnet101_v1c", pretrained=None)
    assert [v1c.conv1.out_channels, v1c.conv2.out_channels, v1c.conv3.out_channels] == [32, 32, 64]
    assert v1c.layer1[0].conv1.in_channels == 64
    # res_layer.py: the first block of a dilated stage uses dilation // 2
    assert [b.conv2.dilation[0] for b in v1c.layer3] == [1] + [2] * 22
    assert [b.conv2.dilation[0] for b in v1c.layer4] == [2, 4, 4]
    assert all(b.conv2.padding == b.conv2.dilation for b in [*v1c.layer3, *v1c.layer4])
    semseg = build_backbone("resnet101", pretrained=None)
    assert [b.conv2.dilation[0] for b in semseg.layer4] == [4, 4, 4]
    assert semseg.conv3.out_channels == 128


def _mmseg_backbone_file(tmp_path: Path) -> Path:
    """A file with the layout and shapes of mmseg's ResNetV1c-50 ImageNet weights (random)."""
    stem = {"stem.0.": "conv1.", "stem.1.": "bn1.", "stem.3.": "conv2.", "stem.4.": "bn2.",
            "stem.6.": "conv3.", "stem.7.": "bn3."}
    torch.manual_seed(0)
    state = {}
    for key, shape in fixture("pspnet_r50-d8")["tensors"].items():
        if key.startswith("backbone."):
            dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
            state[key.removeprefix("backbone.")] = torch.randint(1, 5, shape, dtype=dtype) \
                if dtype == torch.int64 else torch.randn(shape)
    path = tmp_path / "resnet50_v1c.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    assert any(k.startswith(tuple(stem)) for k in state)
    return path


def test_mmseg_imagenet_weights_fit_the_v1c_backbone(tmp_path):
    path = _mmseg_backbone_file(tmp_path)
    backbone = build_backbone("resnet50_v1c", pretrained=str(path))
    loaded = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(backbone.conv3.weight, loaded["stem.6.weight"])
    assert torch.equal(backbone.layer4[2].bn3.running_var, loaded["layer4.2.bn3.running_var"])


def test_mmseg_imagenet_weights_refused_by_the_deep_stem_backbone_name_the_v1c(tmp_path):
    path = _mmseg_backbone_file(tmp_path)
    with pytest.raises(GsbenchError) as err:
        build_backbone("resnet50", pretrained=str(path))
    message = str(err.value)
    assert "\n" not in message
    assert "stem is 32-32-64 wide, the backbone's 64-64-128" in message
    assert "resnet50_v1c" in message
