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
from gsbench.models.psanet import PointwiseSpatialAttention, shrink_plan

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
    "psanet": ("psanet", {"head": "mmseg", "mask_size": [97, 97]}),
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
    # PSANet's mask_hw buffers are gsbench's own (the mask size, derived on import)
    shapes = sorted(tuple(t.shape) for key, t in model.state_dict().items()
                    if not key.endswith(".mask_hw"))
    # 0-dim attention scales of mmcv's Scale are [1] in gsbench (the import reshapes them)
    official_shapes = sorted((1,) if key.endswith("gamma.scale") else tuple(shape)
                             for key, shape in official["tensors"].items())
    assert shapes == official_shapes
    assert sum(p.numel() for p in model.parameters()) == official["num_parameters"]


@pytest.mark.parametrize("arch", ["fcn", "deeplabv3", "deeplabv3plus", "psanet"])
def test_the_papers_heads_stay_the_default(arch):
    name, options = FORMS[arch]
    default = meta_model(name, "resnet50_v1c")
    mmseg = meta_model(name, "resnet50_v1c", **options)
    if arch == "psanet":  # same tensors, other semantics
        assert default.decode_head.psa.head == "semseg" and mmseg.decode_head.psa.head == "mmseg"
        assert default.decode_head.psa.proj[0].padding == (0, 0)
        assert mmseg.decode_head.psa.proj[0].padding == (1, 1)
        return
    assert sum(p.numel() for p in default.parameters()) < sum(p.numel() for p in mmseg.parameters())


@pytest.mark.parametrize("size, semseg, mmseg", [
    ((65, 97), ((33, 49), True), ((33, 49), True)),   # both odd: the same rule
    ((64, 128), ((32, 64), True), ((32, 64), False)),  # both even: H // 2, align_corners False
    ((65, 128), ((33, 64), True), ((32, 64), False)),  # one odd: mmseg floors both
])
def test_psa_shrink_plan_follows_each_code_base(size, semseg, mmseg):
    assert shrink_plan(*size, 2, "semseg") == semseg
    assert shrink_plan(*size, 2, "mmseg") == mmseg
    assert shrink_plan(*size, 1, "mmseg", align_corners=True) == (size, True)


def spy_on_interpolate(monkeypatch) -> list[tuple]:
    """Record (input size, output size, align_corners) of every bilinear resize."""
    calls = []
    interpolate = torch.nn.functional.interpolate

    def spy(x, size=None, mode=None, align_corners=None, **kwargs):
        calls.append((tuple(x.shape[-2:]), tuple(size), align_corners))
        return interpolate(x, size=size, mode=mode, align_corners=align_corners, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", spy)
    return calls


def test_mmseg_psa_resizes_its_padded_fusion_output_with_the_shrink_rule(monkeypatch):
    calls = spy_on_interpolate(monkeypatch)
    module = PointwiseSpatialAttention(8, 4, "bi", mask_size=(5, 5), head="mmseg").eval()
    with torch.no_grad():
        out = module(torch.randn(1, 8, 6, 6))
    assert out.shape == (1, 16, 6, 6)
    # shrink of both branches 6x6 -> 3x3, then proj (padding 1) 5x5 -> 6x6, all without
    # align_corners (an even map, psa_head.py)
    assert calls == [((6, 6), (3, 3), False), ((6, 6), (3, 3), False), ((5, 5), (6, 6), False)]


@pytest.mark.filterwarnings("ignore::gsbench.models.backbones.RandomInitWarning")
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


def test_align_corners_reaches_the_deeplabv3plus_decoder(monkeypatch):
    calls = spy_on_interpolate(monkeypatch)
    model = build_model("deeplabv3plus", num_classes=3, backbone="resnet_tiny", head="mmseg",
                        align_corners=True).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 33, 33))
    # the decoder's upsampling of the ASPP output (5x5 -> 9x9), then the logits to the input
    assert calls == [((5, 5), (9, 9), True), ((9, 9), (33, 33), True)]
