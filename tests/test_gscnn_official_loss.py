"""Gated-SCNN's loss in the released code's forms (``train.loss_options.ce / edge_bce /
dual_task_form: official``), each against a direct restatement of nv-tlabs/GSCNN ``loss.py``
and ``my_functionals/DualTaskLoss.py`` (NumPy histograms, per-image loops, as they compute)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsbench.errors import GsbenchError
from gsbench.losses.gscnn import (
    GatedSCNNLoss, class_balanced_bce, image_weighted_cross_entropy, official_dual_task_loss,
)

K = 5


def release_image_based_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``ImageBasedCrossEntropyLoss2d.forward`` (upper_bound 1.0, norm False, per image)."""
    target_cpu = targets.numpy()
    loss = 0.0
    for i in range(inputs.shape[0]):
        hist = np.histogram(target_cpu[i].flatten(), range(K + 1), density=True)[0]
        weights = ((hist != 0) * 1.0 * (1 - hist)) + 1
        loss += F.nll_loss(F.log_softmax(inputs[i].unsqueeze(0), dim=1), targets[i].unsqueeze(0),
                           weight=torch.tensor(weights, dtype=torch.float32), ignore_index=255)
    return loss


def release_bce2d(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``JointEdgeSegLoss.bce2d``: weights over the whole batch, BCE-with-logits of ``input``."""
    log_p = input.transpose(1, 2).transpose(2, 3).contiguous().view(1, -1)
    target_t = target.transpose(1, 2).transpose(2, 3).contiguous().view(1, -1)
    pos_index = (target_t == 1).numpy()
    neg_index = (target_t == 0).numpy()
    weight = np.zeros(log_p.size(), dtype=np.float32)
    pos_num, neg_num = pos_index.sum(), neg_index.sum()
    weight[pos_index] = neg_num * 1.0 / (pos_num + neg_num)
    weight[neg_index] = pos_num * 1.0 / (pos_num + neg_num)
    return F.binary_cross_entropy_with_logits(log_p, target_t, torch.from_numpy(weight))


def release_dual_task(input_logits, gts, gumbel):
    """``DualTaskLoss.forward`` with its functions as they run (``convTri`` and
    ``gradient_central_diff`` return their input), Gumbel noise given."""
    n, c, h, w = input_logits.shape
    ignore_mask = gts == 255
    input_logits = torch.where(ignore_mask.view(n, 1, h, w).expand(n, c, h, w),
                               torch.zeros(n, c, h, w), input_logits)
    gt = torch.where(ignore_mask, torch.zeros(n, h, w).long(), gts)
    gt = torch.eye(c)[gt].permute(0, 3, 1, 2)
    g = F.softmax((input_logits.view(n, c, -1) + gumbel.view(n, c, -1)) / 0.5, 1)
    g = g.reshape(n, c, h, w)

    def compute_grad_mag(e):
        ox, oy = e, e
        mag = torch.sqrt(ox * ox + oy * oy + 1e-6)
        return mag / mag.max()

    # .view in the release (PyTorch 1.0 gave contiguous elementwise results)
    g, g_hat = compute_grad_mag(g).reshape(n, -1), compute_grad_mag(gt).reshape(n, -1)
    loss_ewise = F.l1_loss(g, g_hat, reduction="none")
    p_plus_g = (g >= 1e-8).float()
    p_plus_g_hat = (g_hat >= 1e-8).float()
    return 0.5 * torch.sum(loss_ewise * p_plus_g) / (torch.sum(p_plus_g) + 1e-10) + \
        0.5 * torch.sum(loss_ewise * p_plus_g_hat) / (torch.sum(p_plus_g_hat) + 1e-10)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    logits = torch.randn(1, K, 6, 7) * 2
    label = torch.randint(0, K - 1, (1, 6, 7))  # class K-1 absent: weight 1
    label[0, :2, :3] = 255
    return logits, label


def test_image_weighted_ce_equals_the_release_per_image(batch):
    logits, label = batch
    ours = image_weighted_cross_entropy(logits, label)
    torch.testing.assert_close(ours, release_image_based_ce(logits, label), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, F.cross_entropy(logits, label, ignore_index=255))
    # several images: the release sums over one GPU's images, one per GPU by default (bs_mult 1),
    # then averages over GPUs - the mean over images
    two = torch.cat([logits, logits.flip(-1)]), torch.cat([label, label.flip(-2)])
    per_image = [release_image_based_ce(two[0][i:i + 1], two[1][i:i + 1]) for i in range(2)]
    torch.testing.assert_close(image_weighted_cross_entropy(*two), sum(per_image) / 2)


def test_image_without_labelled_pixels_gives_zero(batch):
    logits, label = batch
    empty = torch.full_like(label, 255)
    assert float(image_weighted_cross_entropy(logits, empty)) == 0.0


def test_official_edge_bce_is_bce2d_on_the_sigmoid(batch):
    torch.manual_seed(1)
    edge_logits = torch.randn(2, 1, 6, 7)
    edge = (torch.rand(2, 6, 7) > 0.8).long()
    release = release_bce2d(torch.sigmoid(edge_logits), edge.unsqueeze(1).float())
    torch.testing.assert_close(class_balanced_bce(torch.sigmoid(edge_logits[:, 0]), edge), release)


def test_official_dual_task_loss_equals_the_release(batch):
    logits, label = batch
    gumbel = -torch.log(1e-10 - torch.log(torch.rand_like(logits) + 1e-10))
    ours = official_dual_task_loss(logits, label, noise=gumbel)
    torch.testing.assert_close(ours, release_dual_task(logits, label, gumbel), rtol=1e-5,
                               atol=1e-7)


def test_loss_options_switch_every_term_and_bad_values_are_named(batch):
    logits, label = batch
    torch.manual_seed(2)
    outputs = {"out": logits.requires_grad_(), "edge": torch.randn(1, 1, 6, 7)}
    data = {"label": label, "edge": (torch.rand(1, 6, 7) > 0.7).long()}
    paper = GatedSCNNLoss()(outputs, data)
    official = GatedSCNNLoss(ce="official", edge_bce="official", dual_task_form="official")
    result = official(outputs, data)
    torch.testing.assert_close(result["ce"], release_image_based_ce(logits.detach(), label))
    assert not torch.allclose(result["edge_bce"], paper["edge_bce"])
    result["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    for kwargs, message in (({"ce": "weighted"}, "train.loss_options.ce must be one of mean"),
                            ({"edge_bce": "double"}, "edge_bce must be one of paper, official"),
                            ({"dual_task_form": "x"}, "dual_task_form must be one of"),
                            ({"ce": "official", "ohem_thresh": 0.7}, "cannot be combined")):
        with pytest.raises(GsbenchError, match=message):
            GatedSCNNLoss(**kwargs)
