"""PSANet: the PSA window / attention math against a naive loop over positions, module and model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsbench.errors import GsbenchError
from gsbench.models import build_model
from gsbench.models.psanet import (
    PointwiseSpatialAttention,
    full_mask_size,
    over_complete_to_target_major,
    point_wise_attention,
    shrunk_size,
)


def naive_psa_mask(predicted: np.ndarray, mode: str, mask_h: int, mask_w: int) -> np.ndarray:
    """The REFERENCE buffer N x HW x H x W, one position and mask cell at a time."""
    n, _, height, width = predicted.shape
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    out = np.zeros((n, height * width, height, width))
    for b in range(n):
        for h in range(height):
            for w in range(width):
                for i in range(mask_h):
                    for j in range(mask_w):
                        th, tw = h + i - half_h, w + j - half_w
                        if not (0 <= th < height and 0 <= tw < width):
                            continue
                        value = predicted[b, i * mask_w + j, h, w]
                        if mode == "collect":
                            out[b, th * width + tw, h, w] = value
                        else:
                            out[b, h * width + w, th, tw] = value
    return out


def naive_compact_buffer(predicted: np.ndarray, mode: str) -> np.ndarray:
    """Compact masks: channel t of position p is p's value for absolute target t."""
    n, hw, height, width = predicted.shape
    out = np.zeros((n, hw, height, width))
    for b in range(n):
        for h in range(height):
            for w in range(width):
                for t in range(hw):
                    if mode == "collect":
                        out[b, t, h, w] = predicted[b, t, h, w]
                    else:
                        out[b, h * width + w, t // width, t % width] = predicted[b, t, h, w]
    return out


def naive_aggregate(features: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """Softmax over the buffer's first HW axis, then z[:, p] = sum_q x[:, q] A[q, p]."""
    n, c, height, width = features.shape
    hw = height * width
    x = features.reshape(n, c, hw)
    a = buffer.reshape(n, hw, hw)
    z = np.zeros((n, c, hw))
    for b in range(n):
        for p in range(hw):
            column = np.exp(a[b, :, p] - a[b, :, p].max())
            column /= column.sum()
            for q in range(hw):
                z[b, :, p] += x[b, :, q] * column[q]
    return z.reshape(n, c, height, width)


# (H, W, mask): full over-complete, smaller (as mmseg's 97 on larger maps), even, larger, 1x1.
CASES = [
    (3, 4, full_mask_size(3, 4)),
    (4, 3, (3, 3)),
    (3, 5, (2, 4)),
    (2, 3, (7, 9)),
    (4, 4, (5, 3)),
    (1, 3, (1, 5)),
]


@pytest.mark.parametrize("mode", ["collect", "distribute"])
@pytest.mark.parametrize(("height", "width", "mask"), CASES)
def test_window_and_attention_match_naive_loop(mode, height, width, mask):
    g = torch.Generator().manual_seed(height * 100 + width * 10 + mask[0])
    predicted = torch.randn(2, mask[0] * mask[1], height, width, generator=g, dtype=torch.float64)
    features = torch.randn(2, 3, height, width, generator=g, dtype=torch.float64)
    buffer = naive_psa_mask(predicted.numpy(), mode, *mask)

    target_major = over_complete_to_target_major(predicted, mask).numpy()
    hw = height * width
    raw = target_major if mode == "collect" else target_major.transpose(0, 2, 1)
    np.testing.assert_array_equal(raw.reshape(2, hw, height, width), buffer)

    attention = point_wise_attention(predicted, mode, mask)
    z = torch.bmm(features.reshape(2, 3, hw), attention).reshape(2, 3, height, width)
    np.testing.assert_allclose(z.numpy(), naive_aggregate(features.numpy(), buffer), rtol=1e-10)


@pytest.mark.parametrize("mode", ["collect", "distribute"])
def test_compact_attention_matches_naive_loop(mode):
    height, width = 2, 3
    g = torch.Generator().manual_seed(7)
    predicted = torch.randn(1, height * width, height, width, generator=g, dtype=torch.float64)
    features = torch.randn(1, 4, height, width, generator=g, dtype=torch.float64)
    buffer = naive_compact_buffer(predicted.numpy(), mode)
    attention = point_wise_attention(predicted, mode, None, compact=True)
    z = torch.bmm(features.reshape(1, 4, -1), attention).reshape(1, 4, height, width)
    np.testing.assert_allclose(z.numpy(), naive_aggregate(features.numpy(), buffer), rtol=1e-10)
    with pytest.raises(GsbenchError, match="compact PSA predicts 6 values per position"):
        point_wise_attention(predicted[:, :, :, :2], mode, None, compact=True)


def test_attention_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(3)
    predicted = torch.randn(1, 15, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for mode in ("collect", "distribute"):
        assert torch.autograd.gradcheck(lambda p: point_wise_attention(p, mode, (3, 5)), predicted)


@pytest.mark.parametrize("psa_type", ["collect", "distribute", "bi"])
@pytest.mark.parametrize("shrink_factor", [1, 2])
def test_psa_module_matches_naive_composition(psa_type, shrink_factor):
    torch.manual_seed(0)
    module = PointwiseSpatialAttention(8, 4, psa_type, shrink_factor=shrink_factor).double()
    module.eval()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    out = module(x)
    small = shrunk_size(5, 6, shrink_factor)
    assert module.mask_size(module.modes[0]) == full_mask_size(*small)

    parts = []
    for mode in module.modes:
        features = module.reduce[mode](x)
        features = F.interpolate(features, size=small, mode="bilinear", align_corners=True)
        predicted = module.attention[mode](features)
        buffer = naive_psa_mask(predicted.detach().numpy(), mode, *full_mask_size(*small))
        parts.append(torch.from_numpy(naive_aggregate(features.detach().numpy(), buffer)))
    context = module.proj(torch.cat(parts, dim=1))
    context = F.interpolate(context, size=(5, 6), mode="bilinear", align_corners=True)
    expected = torch.cat([x, context], dim=1)
    assert out.shape == (2, 16, 5, 6)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_psa_module_gradients_are_finite_and_reach_every_parameter():
    torch.manual_seed(0)
    module = PointwiseSpatialAttention(16, 4, "bi", mask_size=(7, 7))
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    module(x).square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_lazy_mask_is_fixed_by_first_forward_and_restored_from_state_dict():
    torch.manual_seed(0)
    module = PointwiseSpatialAttention(8, 4, "bi").eval()
    x = torch.randn(1, 8, 7, 5)
    out = module(x)
    assert module.mask_size("collect") == (7, 5)  # shrunk 4 x 3 -> (2*4-1, 2*3-1)
    assert module.attention["distribute"][-1].weight.shape == (35, 4, 1, 1)
    # A larger map later uses the same (now smaller than full) mask.
    assert module(torch.randn(1, 8, 13, 9)).shape == (1, 16, 13, 9)
    assert module.mask_size("collect") == (7, 5)

    restored = PointwiseSpatialAttention(8, 4, "bi").eval()
    restored.load_state_dict(module.state_dict())
    assert restored.mask_size("distribute") == (7, 5)
    torch.testing.assert_close(restored(x), out)


def test_compact_module_needs_matching_mask_size():
    module = PointwiseSpatialAttention(8, 4, "collect", compact=True, mask_size=(3, 2)).eval()
    assert module(torch.randn(1, 8, 5, 4)).shape == (1, 16, 5, 4)  # shrunk to 3 x 2
    with pytest.raises(GsbenchError, match="compact PSA predicts 6 values"):
        module(torch.randn(1, 8, 7, 4))


def test_bad_arguments_raise_gsbench_errors():
    with pytest.raises(GsbenchError, match="psa_type must be one of"):
        PointwiseSpatialAttention(8, 4, "both")
    with pytest.raises(GsbenchError, match="mask_size must be two positive ints"):
        PointwiseSpatialAttention(8, 4, mask_size=(0, 3))
    with pytest.raises(GsbenchError, match="expected mask_h\\*mask_w = 3\\*3 = 9"):
        over_complete_to_target_major(torch.zeros(1, 8, 2, 2), (3, 3))


def test_psanet_model_contract_on_tiny_backbone():
    torch.manual_seed(0)
    model = build_model("psanet", num_classes=5, backbone="resnet_tiny", mask_size=5)
    model.train()
    images = torch.randn(2, 3, 40, 56)
    outputs = model(images)
    assert outputs["out"].shape == (2, 5, 40, 56) and outputs["aux"].shape == (2, 5, 40, 56)
    (outputs["out"].mean() + 0.4 * outputs["aux"].mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.decode_head.psa.mask_size("collect") == (5, 5)
    model.eval()
    assert set(model(images)) == {"out"}

    lazy = build_model("psanet", num_classes=3, backbone="resnet_tiny", psa_type="collect",
                       aux=False)
    lazy(images)
    assert lazy.decode_head.psa.mask_size("collect") == (5, 7)  # 40x56 -> 5x7 -> shrunk 3x4


def test_psa_module_runs_on_meta_tensors_for_the_complexity_profiler():
    module = PointwiseSpatialAttention(16, 4, "bi", mask_size=(9, 9)).to("meta")
    out = module(torch.empty(1, 16, 10, 10, device="meta"))
    assert out.shape == (1, 32, 10, 10) and out.device.type == "meta"
