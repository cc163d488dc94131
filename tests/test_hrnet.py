"""HRNetV2 backbone (RANet Table 5's "HRNetV2-W48+ASPP"): structure, the official parameter
names, the published parameter and FLOP figures, ImageNet checkpoint loading, RANet on top."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsbench.analysis.complexity import count_flops, count_parameters
from gsbench.errors import GsbenchError
from gsbench.losses import build_loss
from gsbench.models import build_backbone, build_model
from gsbench.models.backbones import RandomInitWarning
from gsbench.models.deeplab import ASPP

#: (widths, modules of stages 2-4, blocks per branch, stage-1 blocks) of the two variants.
W48 = ((48, 96, 192, 384), (1, 4, 3), 4, 4)
TINY = ((8, 16, 32, 64), (1, 2, 1), 2, 1)
BN = ("weight", "bias", "running_mean", "running_var")


def official_names(widths, modules, blocks, stage1_blocks) -> set[str]:
    """The state-dict names of HRNet-Semantic-Segmentation's ``seg_hrnet.py`` backbone (and of
    ``hrnetv2_w48_imagenet_pretrained.pth`` without its classification head), written out from
    the official module structure; BN ``num_batches_tracked`` counters left out."""

    def conv(name):
        return [f"{name}.weight"]

    def bn(name):
        return [f"{name}.{p}" for p in BN]

    def conv_bn(prefix):  # Sequential(conv, BN[, ReLU])
        return conv(prefix + ".0") + bn(prefix + ".1")

    names = conv("conv1") + bn("bn1") + conv("conv2") + bn("bn2")
    for b in range(stage1_blocks):
        for k in (1, 2, 3):
            names += conv(f"layer1.{b}.conv{k}") + bn(f"layer1.{b}.bn{k}")
    names += conv_bn("layer1.0.downsample")
    names += conv_bn("transition1.0")  # 256 -> widths[0]; the other kept branches are None
    for t in (1, 2, 3):  # the branch each transition opens: one strided 3x3 conv
        names += conv_bn(f"transition{t}.{t}.0")
    for stage, count in zip((2, 3, 4), modules):
        for m in range(count):
            prefix = f"stage{stage}.{m}"
            for branch in range(stage):
                for b in range(blocks):
                    for k in (1, 2):
                        names += conv(f"{prefix}.branches.{branch}.{b}.conv{k}")
                        names += bn(f"{prefix}.branches.{branch}.{b}.bn{k}")
            for i in range(stage):
                for j in range(stage):
                    if j > i:  # 1x1 conv + BN, then upsampling
                        names += conv_bn(f"{prefix}.fuse_layers.{i}.{j}")
                    for k in range(i - j):  # i - j strided 3x3 convs
                        names += conv_bn(f"{prefix}.fuse_layers.{i}.{j}.{k}")
    assert len(names) == len(set(names))
    return set(names)


def own_names(model: nn.Module) -> set[str]:
    return {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


def meta_w48(output_stride: int = 8) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device("meta"):
            return build_backbone("hrnetv2_w48", output_stride)


class HRNetV2Seg(nn.Module):
    """The official HRNetV2 segmentation model: the 720-channel stride-4 representation, a 1x1
    conv 720 -> 720 (with bias) + BN + ReLU and a 1x1 classifier (``last_layer``)."""

    def __init__(self, backbone: nn.Module, num_classes: int = 19):
        super().__init__()
        channels = backbone.channels[-1]
        self.backbone = backbone
        self.last_layer = nn.Sequential(nn.Conv2d(channels, channels, 1),
                                        nn.BatchNorm2d(channels), nn.ReLU(),
                                        nn.Conv2d(channels, num_classes, 1))

    def forward(self, x):
        return self.last_layer(self.backbone(x)[-1])


# --- structure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, config", [("hrnetv2_tiny", TINY), ("hrnetv2_w48", W48)])
def test_parameter_names_follow_the_official_layout(variant, config):
    if variant == "hrnetv2_w48":
        model = meta_w48()
    else:
        model = build_backbone(variant)
    assert own_names(model) == official_names(*config)


def test_w48_shapes_and_strides_follow_seg_hrnet_w48():
    model = meta_w48()
    state = model.state_dict()
    expected = {
        "conv1.weight": (64, 3, 3, 3), "conv2.weight": (64, 64, 3, 3),
        "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.3.conv1.weight": (64, 256, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (48, 256, 3, 3), "transition1.1.0.0.weight": (96, 256, 3, 3),
        "transition2.2.0.0.weight": (192, 96, 3, 3), "transition3.3.0.0.weight": (384, 192, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (96, 96, 3, 3),
        "stage3.3.fuse_layers.2.1.0.0.weight": (192, 96, 3, 3),
        "stage4.2.branches.3.3.conv1.weight": (384, 384, 3, 3),
        "stage4.2.fuse_layers.0.3.0.weight": (48, 384, 1, 1),
        "stage4.2.fuse_layers.3.0.0.0.weight": (48, 48, 3, 3),
        "stage4.2.fuse_layers.3.0.2.0.weight": (384, 48, 3, 3),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    modules = dict(model.named_modules())
    for name in ("conv1", "conv2", "transition1.1.0.0", "transition3.3.0.0",
                 "stage4.2.fuse_layers.3.0.0.0", "stage4.2.fuse_layers.3.0.2.0"):
        assert modules[name].stride == (2, 2), name
    for name in ("transition1.0.0", "stage4.2.fuse_layers.0.3.0", "stage4.2.branches.0.0.conv1"):
        assert modules[name].stride == (1, 1), name
    # the last conv of a downsampling path has no ReLU, the others do
    assert len(modules["stage4.2.fuse_layers.3.0.2"]) == 2
    assert isinstance(modules["stage4.2.fuse_layers.3.0.1"][2], nn.ReLU)
    assert model.channels == (48, 96, 192, 720)


@pytest.mark.parametrize("size", [(64, 96), (70, 90)])
@pytest.mark.parametrize("output_stride", [4, 8])
def test_features_strides_and_channels(size, output_stride):
    torch.manual_seed(0)
    model = build_backbone("hrnetv2_tiny", output_stride).eval()
    with torch.no_grad():
        c2, c3, c4, c5 = model(torch.randn(2, 3, *size))

    def down(n, times):  # a stride-2 3x3 conv with padding 1: ceil(n / 2)
        for _ in range(times):
            n = (n + 1) // 2
        return n

    h, w = size
    assert c2.shape == (2, 8, down(h, 2), down(w, 2))
    assert c3.shape == (2, 16, down(h, 3), down(w, 3))
    assert c4.shape == (2, 32, down(h, 4), down(w, 4))
    grid = c2.shape[-2:] if output_stride == 4 else c3.shape[-2:]
    assert c5.shape == (2, 120, *grid) and model.channels == (8, 16, 32, 120)


def test_c5_is_the_concatenation_of_the_four_branches():
    torch.manual_seed(0)
    at4 = build_backbone("hrnetv2_tiny", 4).eval()
    at8 = build_backbone("hrnetv2_tiny", 8).eval()
    at8.load_state_dict(at4.state_dict())
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        c2, c3, c4, c5 = at4(images)
        d2, d3, d4, d5 = at8(images)
    for a, b in ((c2, d2), (c3, d3), (c4, d4)):
        torch.testing.assert_close(a, b)
    # stride 4: branch 1 as it is, the others upsampled bilinearly (align_corners=False)
    torch.testing.assert_close(c5[:, :8], c2)
    torch.testing.assert_close(
        c5[:, 8:24], F.interpolate(c3, size=(16, 24), mode="bilinear", align_corners=False))
    torch.testing.assert_close(
        c5[:, 24:56], F.interpolate(c4, size=(16, 24), mode="bilinear", align_corners=False))
    # stride 8: halving an even size bilinearly is 2x2 average pooling; branch 2 as it is
    torch.testing.assert_close(d5[:, :8], F.avg_pool2d(c2, 2))
    torch.testing.assert_close(d5[:, 8:24], c3)
    torch.testing.assert_close(
        d5[:, 24:56], F.interpolate(c4, size=(8, 12), mode="bilinear", align_corners=False))
    assert d5.shape[1] - 56 == 64 and c5.shape[1] - 56 == 64  # branch 4 closes both


def test_bad_output_stride_is_a_one_line_error():
    with pytest.raises(GsbenchError, match=r"output_stride .* must be one of \[4, 8\], got 16"):
        build_backbone("hrnetv2_tiny", 16)


# --- published figures ----------------------------------------------------------------------------

def test_w48_parameters_and_flops_match_the_official_model_zoo():
    """HRNet-Semantic-Segmentation's model zoo (Cityscapes, HRNetV2-W48, 1024 x 2048 test
    input): "#Params 65.8M, GFLOPs 696.2"; the HRNet TPAMI paper prints 65.9 M. The official
    counter (lib/utils/modelsummary.py) sums the multiply-adds of the convolutions (weight size
    x output pixels, no bias) and divides by 1024**3. Our count: backbone + the official seg
    head (1x1 720 -> 720 with bias, BN, 1x1 to 19 classes) has 65.86 M parameters, inside
    [65.8 M, 65.9 M] (the published figures' own 0.1 M precision), and 747.5 G multiply-adds,
    696.2 in the official unit."""
    backbone = meta_w48(output_stride=4)
    with torch.device("meta"):
        model = HRNetV2Seg(backbone)
    head = 720 * 720 + 720 + 2 * 720 + 720 * 19 + 19
    assert count_parameters(model.last_layer) == head
    total = count_parameters(model)
    assert 65.8e6 <= total <= 65.9e6, total
    counted = count_flops(model, (1, 3, 1024, 2048))
    assert round(counted.macs / 1024 ** 3, 1) == 696.2, counted.macs


# --- ImageNet checkpoints -------------------------------------------------------------------------

#: A few tensors of the classification head of the official ImageNet checkpoints.
IMAGENET_HEAD = {"incre_modules.0.0.conv1.weight": (32, 8, 1, 1),
                 "downsamp_modules.0.0.weight": (64, 32, 3, 3),
                 "final_layer.0.weight": (2048, 1024, 1, 1), "final_layer.1.running_var": (2048,),
                 "classifier.weight": (1000, 2048), "classifier.bias": (1000,)}


def official_checkpoint(path, drop=(), reshape=None) -> dict[str, torch.Tensor]:
    """Write a tiny checkpoint in the official key layout (random values), return its backbone
    tensors. ``reshape`` maps a name to a wrong shape; ``drop`` leaves names out."""
    generator = torch.Generator().manual_seed(1)
    shapes = {k: v.shape for k, v in build_backbone("hrnetv2_tiny").state_dict().items()}
    state = {name: torch.rand(shapes[name], generator=generator)
             for name in sorted(official_names(*TINY)) if name not in drop}
    for name, shape in (reshape or {}).items():
        state[name] = torch.rand(shape, generator=generator)
    head = {name: torch.rand(shape, generator=generator) for name, shape in IMAGENET_HEAD.items()}
    torch.save({**state, **head}, path)
    return state


def test_official_imagenet_layout_loads_and_drops_the_classification_head(tmp_path):
    path = tmp_path / "hrnetv2_tiny_imagenet_pretrained.pth"
    state = official_checkpoint(path)
    before = path.read_bytes()
    model = build_backbone("hrnetv2_tiny", 8, pretrained=str(path))
    loaded = model.state_dict()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name
    assert path.read_bytes() == before
    # ``pretrained`` reaches the backbone through the model builders (``--pretrained FILE``)
    ranet = build_model("ranet", num_classes=19, backbone="hrnetv2_tiny", pretrained=str(path),
                        aspp=True)
    assert torch.equal(ranet.backbone.stage4[0].fuse_layers[3][0][2][0].weight,
                       state["stage4.0.fuse_layers.3.0.2.0.weight"])


def test_checkpoints_that_do_not_fit_are_one_line_errors(tmp_path):
    path = tmp_path / "partial.pth"
    official_checkpoint(path, drop=("stage3.1.fuse_layers.2.0.1.0.weight",))
    with pytest.raises(GsbenchError) as info:
        build_backbone("hrnetv2_tiny", pretrained=str(path))
    message = str(info.value)
    assert "partial.pth" in message and "missing stage3.1.fuse_layers.2.0.1.0.weight" in message
    assert "\n" not in message

    path = tmp_path / "w48_shaped.pth"
    official_checkpoint(path, reshape={"transition1.0.0.weight": (48, 256, 3, 3)})
    with pytest.raises(GsbenchError, match=r"w48_shaped.pth: .*shape mismatch transition1.0.0."
                                           r"weight \(48, 256, 3, 3\) vs \(8, 32, 3, 3\)"):
        build_backbone("hrnetv2_tiny", pretrained=str(path))

    path = tmp_path / "resnet.pth"
    torch.save(build_backbone("resnet_tiny").state_dict(), path)
    with pytest.raises(GsbenchError, match=r"resnet.pth: checkpoint does not fit the backbone: "
                                           r"missing .*; unexpected bn3.bias"):
        build_backbone("hrnetv2_tiny", pretrained=str(path))


# --- RANet on HRNetV2 + ASPP ----------------------------------------------------------------------

def test_ranet_on_tiny_hrnet_with_aspp_trains_with_finite_gradients():
    torch.manual_seed(0)
    model = build_model("ranet", num_classes=19, backbone="hrnetv2_tiny", aux=True, aspp=True)
    aspp = model.decode_head.reduce
    assert isinstance(aspp, ASPP)
    assert [b[0].dilation[0] for b in aspp.branches[1:]] == [12, 24, 36]
    assert aspp.branches[0][0].in_channels == 120 and aspp.project[0].out_channels == 512
    images = torch.randn(2, 3, 32, 48)
    labels = torch.randint(0, 19, (2, 32, 48))
    edges = (torch.rand(2, 32, 48) < 0.2).float()
    model.train()
    outputs = model(images)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "out": (2, 19, 32, 48), "aux": (2, 19, 32, 48), "coarse": (2, 19, 32, 48),
        "boundary": (2, 1, 32, 48)}
    losses = build_loss("ranet", ignore_index=255, aux_weight=0.4)(
        outputs, {"label": labels, "edge": edges})
    losses["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith("backbone.stage4"))


def test_ranet_without_aspp_keeps_the_3x3_reduction():
    model = build_model("ranet", num_classes=19, backbone="hrnetv2_tiny", aux=False)
    conv = model.decode_head.reduce[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (120, 512, (3, 3))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_table5_recipe_is_ranet101_on_hrnetv2_w48_aspp_trained_on_train_val():
    from gsbench.recipes import build_model_from_recipe, load_recipe
    from gsbench.tables.registry import load_all_tables

    recipe, base = load_recipe("ranet_hrnetv2_w48"), load_recipe("ranet101")
    assert (recipe.model.backbone, recipe.model.aspp, recipe.model.output_stride) == (
        "hrnetv2_w48", True, 8)
    # the released multi-grid applies to ResNet's stage 5 only
    neutral = {"aspp": False, "multi_grid": [1, 1, 1]}
    assert {**recipe.model.options, **neutral} == {**base.model.options, **neutral}
    assert recipe.train == base.train and recipe.data.train_split == "train+val"
    assert recipe.data.crop_size == base.data.crop_size == [769, 769]
    with torch.device("meta"):
        model = build_model_from_recipe(recipe)
    # ASPP on the 720-channel representation: 1x1, three 3x3 and the pooled 1x1 to 512, then
    # the 1x1 projection 5 x 512 -> 512, each with BN.
    aspp = 720 * 512 + 3 * 720 * 9 * 512 + 720 * 512 + 5 * 512 * 512 + 6 * 2 * 512
    assert count_parameters(model.decode_head.reduce) == aspp
    assert model.backbone.channels[-1] == 720 and model.aux_head is None

    table = next(t for t in load_all_tables() if t.id == "ranet.table5")
    cells = {c.column: c for c in table.cells if c.row_id == "ranet-hrnet"}
    assert (cells["fine"].recipe, cells["fine"].status) == ("ranet_hrnetv2_w48", "ok")
    assert (cells["coarse"].recipe, cells["coarse"].status) == ("ranet_hrnetv2_w48_coarse", "ok")
