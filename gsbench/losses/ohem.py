"""Online hard example mining (OHEM): which labelled pixels the main cross-entropy keeps.

OHEM follows the ``OhemCrossEntropy2d`` of the PSPNet / OCNet / CCNet codebases (GPSNet trains
with threshold 0.7 and 100,000 kept pixels); the exact rule is in :func:`ohem_keep_rows`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gsbench.data.labels import IGNORE_INDEX


def ohem_keep_mask(
    logits: torch.Tensor,
    label: torch.Tensor,
    thresh: float,
    min_kept: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Boolean N x H x W mask of the labelled pixels that OHEM keeps for the loss, from N x C x
    H x W ``logits``: :func:`ohem_keep_rows` on their pixels' log-probabilities."""
    with torch.no_grad():
        rows = logits.detach().float().permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        keep = ohem_keep_rows(F.log_softmax(rows, dim=1), label.reshape(-1), thresh, min_kept,
                              ignore_index)
    return keep.view(label.shape)


def ohem_keep_rows(
    log_probs: torch.Tensor,
    label: torch.Tensor,
    thresh: float,
    min_kept: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Boolean mask of the labelled pixels that OHEM keeps, from the pixels' class
    log-probabilities (P x C) and labels (P).

    The rule of the PSPNet / OCNet ``OhemCrossEntropy2d``, over the whole batch at once:

    - ``p`` = softmax probability of the true class at every labelled pixel (no gradient);
    - if there are at most ``min_kept`` labelled pixels, all of them are kept;
    - otherwise the threshold is ``max(thresh, k-th smallest p)`` with ``k = min_kept`` (so at
      least the ``min_kept`` hardest pixels survive even when the model is confident everywhere),
      and every labelled pixel with ``p <= threshold`` is kept. Ties at the threshold are all
      kept, so slightly more than ``min_kept`` pixels may survive;
    - ``min_kept = 0`` keeps exactly the pixels with ``p <= thresh``, possibly none (the loss is
      then 0, see :class:`SegmentationLoss`).
    Ignored pixels are never kept.

    The cross-entropy passes the log-probabilities it computes anyway, so OHEM costs no second
    softmax. Everything is decided on the device (the count of labelled pixels is never read on
    the host), so that a training step does not wait for it.
    """
    valid = label != ignore_index
    with torch.no_grad():
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        true_prob = log_probs.detach().gather(1, safe_label.unsqueeze(1)).squeeze(1).exp()
        if true_prob.numel() <= min_kept:  # then also the labelled pixels are at most min_kept
            return valid
        threshold = torch.tensor(float(thresh), dtype=true_prob.dtype, device=true_prob.device)
        if min_kept > 0:
            # ignored pixels sort after every probability, so the k-th smallest of all pixels
            # is the k-th smallest labelled one whenever more than k pixels are labelled
            ranked = torch.where(valid, true_prob, torch.full_like(true_prob, 2.0))
            kth_smallest = torch.kthvalue(ranked, min_kept).values
            threshold = torch.maximum(threshold, kth_smallest)
        few = valid.sum() <= min_kept
        return valid & (few | (true_prob <= threshold))
