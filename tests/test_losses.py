"""SegmentationLoss against plain-Python references on tiny tensors."""

import math

import numpy as np
import pytest
import torch

from gsbench.errors import GsbenchError
from gsbench.losses import SegmentationLoss, ohem_keep_mask

IGNORE = 255


def _reference_ce(logits: np.ndarray, label: np.ndarray, keep=None) -> float:
    """Mean of -log softmax(true class) over the kept labelled pixels, one pixel at a time."""
    n, c, h, w = logits.shape
    total, count = 0.0, 0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                t = int(label[b, y, x])
                if t == IGNORE or (keep is not None and not keep[b, y, x]):
                    continue
                scores = [float(logits[b, k, y, x]) for k in range(c)]
                top = max(scores)
                log_sum = top + math.log(sum(math.exp(s - top) for s in scores))
                total += log_sum - scores[t]
                count += 1
    return total / count if count else 0.0


def _reference_ohem_keep(logits: np.ndarray, label: np.ndarray, thresh, min_kept) -> np.ndarray:
    """The numpy OhemCrossEntropy2d rule of the PSPNet / OCNet code, written out plainly."""
    n, c, h, w = logits.shape
    probs = {}
    for b in range(n):
        for y in range(h):
            for x in range(w):
                t = int(label[b, y, x])
                if t == IGNORE:
                    continue
                e = [math.exp(float(logits[b, k, y, x])) for k in range(c)]
                probs[(b, y, x)] = e[t] / sum(e)
    keep = np.zeros(label.shape, dtype=bool)
    if len(probs) <= min_kept:
        for key in probs:
            keep[key] = True
        return keep
    threshold = thresh
    if min_kept > 0:
        kth = sorted(probs.values())[min_kept - 1]
        threshold = max(thresh, kth)
    for key, p in probs.items():
        keep[key] = p <= threshold
    return keep


def _batch(seed=0, n=2, c=4, h=3, w=5, ignore_fraction=0.3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * 2
    label = torch.randint(0, c, (n, h, w), generator=g)
    label[torch.rand(n, h, w, generator=g) < ignore_fraction] = IGNORE
    return logits, label


def test_ce_ignores_pixels_and_matches_reference():
    logits, label = _batch()
    assert (label == IGNORE).any() and (label != IGNORE).any()
    result = SegmentationLoss()({"out": logits}, {"label": label})
    expected = _reference_ce(logits.numpy(), label.numpy())
    assert result["ce"].item() == pytest.approx(expected, rel=1e-5)
    assert result["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert "aux" not in result
    # Changing the logits of an ignored pixel changes nothing.
    b, y, x = (label == IGNORE).nonzero()[0].tolist()
    logits[b, :, y, x] += torch.tensor([5.0, -3.0, 2.0, 0.0])
    again = SegmentationLoss()({"out": logits}, {"label": label})
    assert again["ce"].item() == pytest.approx(expected, rel=1e-5)


def test_channels_last_logits_give_the_same_loss_and_gradients():
    """The models hand over channels-last logits (upsample_logits); the loss reads them as rows
    of class scores and must score them as the reference does, with the same gradients as the
    contiguous layout."""
    from gsbench.models.common import resize, upsample_logits

    coarse, _ = _batch(n=2, c=5, h=3, w=4, seed=5)
    _, label = _batch(n=2, c=5, h=12, w=16, seed=6)
    plain = coarse.clone().requires_grad_()
    channels_last = coarse.clone().requires_grad_()
    up_plain = resize(plain, (12, 16))
    up_last = upsample_logits(channels_last, (12, 16))
    assert up_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(up_last, up_plain)
    loss = SegmentationLoss()
    ce_plain = loss({"out": up_plain}, {"label": label})["ce"]
    ce_last = loss({"out": up_last}, {"label": label})["ce"]
    assert ce_last.item() == pytest.approx(_reference_ce(up_plain.detach().numpy(),
                                                         label.numpy()), rel=1e-5)
    assert ce_last.item() == pytest.approx(ce_plain.item(), rel=1e-6)
    ce_plain.backward()
    ce_last.backward()
    assert torch.allclose(channels_last.grad, plain.grad, rtol=1e-5, atol=1e-7)


def test_aux_weight_and_uint8_labels():
    logits, label = _batch(seed=1)
    aux_logits, _ = _batch(seed=2)
    loss = SegmentationLoss(aux_weight=0.4)
    result = loss({"out": logits, "aux": aux_logits}, {"label": label.to(torch.uint8)})
    ce = _reference_ce(logits.numpy(), label.numpy())
    aux = _reference_ce(aux_logits.numpy(), label.numpy())
    assert result["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert result["aux"].item() == pytest.approx(aux, rel=1e-5)
    assert result["loss"].item() == pytest.approx(ce + 0.4 * aux, rel=1e-5)


def test_all_ignored_batch_gives_zero_loss_and_zero_gradients():
    logits, label = _batch(seed=3)
    logits.requires_grad_(True)
    aux_logits = torch.randn_like(logits, requires_grad=True)
    label.fill_(IGNORE)
    for loss in (SegmentationLoss(), SegmentationLoss(ohem_thresh=0.7, ohem_min_kept=5)):
        result = loss({"out": logits, "aux": aux_logits}, {"label": label})
        assert result["loss"].item() == 0.0
        result["loss"].backward()
        assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()
        assert torch.isfinite(aux_logits.grad).all() and (aux_logits.grad == 0).all()
        logits.grad = aux_logits.grad = None


@pytest.mark.parametrize(
    ("thresh", "min_kept"),
    [(0.7, 0), (0.7, 5), (0.3, 5), (0.3, 12), (0.05, 1), (0.7, 1000)],
)
def test_ohem_selection_matches_reference_rule(thresh, min_kept):
    logits, label = _batch(seed=4)
    keep = ohem_keep_mask(logits, label, thresh, min_kept)
    expected = _reference_ohem_keep(logits.numpy(), label.numpy(), thresh, min_kept)
    np.testing.assert_array_equal(keep.numpy(), expected)
    num_valid = int((label != IGNORE).sum())
    assert int(keep.sum()) >= min(min_kept, num_valid)

    result = SegmentationLoss(ohem_thresh=thresh, ohem_min_kept=min_kept)(
        {"out": logits}, {"label": label}
    )
    assert result["ce"].item() == pytest.approx(
        _reference_ce(logits.numpy(), label.numpy(), keep=expected), rel=1e-5
    )


def test_ohem_keeps_ties_and_hardest_pixels():
    # Four labelled pixels with true-class probabilities 0.9, 0.6, 0.6, 0.95 (two classes).
    p = torch.tensor([0.9, 0.6, 0.6, 0.95])
    logits = torch.stack([torch.log(p), torch.log(1 - p)]).reshape(1, 2, 1, 4)
    label = torch.zeros(1, 1, 4, dtype=torch.long)
    # Threshold 0.7 alone keeps the two 0.6 pixels.
    assert ohem_keep_mask(logits, label, 0.7, 0).tolist() == [[[False, True, True, False]]]
    # min_kept=3 raises the threshold to the third smallest (0.9).
    assert ohem_keep_mask(logits, label, 0.7, 3).tolist() == [[[True, True, True, False]]]
    # min_kept=1 lands on a tie at 0.6 below the 0.7 threshold: both tied pixels stay.
    assert ohem_keep_mask(logits, label, 0.5, 1).tolist() == [[[False, True, True, False]]]
    # Nothing below the threshold and min_kept=0: nothing kept, loss 0, no NaN.
    assert not ohem_keep_mask(logits, label, 0.1, 0).any()
    result = SegmentationLoss(ohem_thresh=0.1, ohem_min_kept=0)({"out": logits}, {"label": label})
    assert result["loss"].item() == 0.0


def test_ohem_applies_to_main_output_only():
    logits, label = _batch(seed=5)
    aux_logits, _ = _batch(seed=6)
    result = SegmentationLoss(ohem_thresh=0.5, ohem_min_kept=3)(
        {"out": logits, "aux": aux_logits}, {"label": label}
    )
    assert result["aux"].item() == pytest.approx(
        _reference_ce(aux_logits.numpy(), label.numpy()), rel=1e-5
    )


def test_losses_never_read_a_device_tensor():
    """On a GPU, a host read (``.item()``, ``bool()``) of a loss's tensor stops every training
    step until the device is done. Tensors on the meta device have no values: any such read
    would raise here."""
    logits = torch.empty(2, 19, 8, 8, device="meta")
    label = torch.empty(2, 8, 8, dtype=torch.int64, device="meta")
    for loss in (SegmentationLoss(), SegmentationLoss(ohem_thresh=0.7, ohem_min_kept=10)):
        result = loss({"out": logits, "aux": logits}, {"label": label})
        assert result["loss"].device.type == "meta" and set(result) == {"loss", "ce", "aux"}


def test_bad_inputs_raise_one_line_errors():
    logits, label = _batch()
    loss = SegmentationLoss()
    with pytest.raises(GsbenchError, match=r'outputs\["out"\] has shape \(2, 4, 3, 5\)'):
        loss({"out": logits}, {"label": label[:, :2]})
    with pytest.raises(GsbenchError, match=r'outputs\["aux"\]'):
        loss({"out": logits, "aux": logits[:, :, :2]}, {"label": label})
    bad = label.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(GsbenchError, match="value 7, not a trainId in 0..3"):
        loss({"out": logits}, {"label": bad})
    with pytest.raises(GsbenchError, match='no "out" key'):
        loss({"logits": logits}, {"label": label})
    with pytest.raises(GsbenchError, match="ohem_thresh"):
        SegmentationLoss(ohem_thresh=1.5)
