"""The loss of every model that predicts only class logits: cross-entropy with ignore, the
optional OHEM of the main output and the auxiliary loss.

``SegmentationLoss`` is the loss of every model in the zoo that predicts only class logits
(FCN, PSPNet, DeepLab, OCNet, PSANet, GFF, GPSNet, ...): the main cross-entropy on
``outputs["out"]`` plus ``aux_weight`` times the cross-entropy on ``outputs["aux"]`` (the deep
supervision of PSPNet / PSANet Fig. 4, weight 0.4) when the model returned one. The losses of
the methods with more terms (:mod:`gsbench.losses.gscnn`, :mod:`~gsbench.losses.ranet`,
:mod:`~gsbench.losses.danet`) build on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.losses.ohem import ohem_keep_rows


def pixel_log_probs(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX,
    ohem: tuple[float, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels' class log-probabilities (P x C rows of N x C x H x W ``logits``) and their
    labels (P), the labels of the pixels that OHEM drops (``ohem`` = (threshold, min_kept),
    :func:`ohem_keep_rows`) set to ``ignore_index``.

    Rows are a view of channels-last logits (:func:`gsbench.models.common.upsample_logits`)
    and make a contiguous softmax, whose log-probabilities also give OHEM its true-class
    probabilities: one softmax per loss term.
    """
    log_probs = F.log_softmax(logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]), dim=1)
    label = label.reshape(-1)
    if ohem is not None:
        keep = ohem_keep_rows(log_probs, label, *ohem, ignore_index)
        label = torch.where(keep, label, torch.full_like(label, ignore_index))
    return log_probs, label


def cross_entropy_with_ignore(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX,
    ohem: tuple[float, int] | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``; with ``ohem`` =
    (threshold, min_kept), over the pixels that OHEM keeps (:func:`pixel_log_probs`).

    A batch with no labelled pixel gives 0 (still connected to ``logits`` so that ``backward``
    works and every gradient is 0) instead of the NaN of ``F.cross_entropy``'s empty mean. The
    sum is divided by the count on the device, so that no step waits for the host to decide.
    """
    log_probs, label = pixel_log_probs(logits, label, ignore_index, ohem)
    total = F.nll_loss(log_probs, label, ignore_index=ignore_index, reduction="sum")
    return total / (label != ignore_index).sum().clamp(min=1)


class SegmentationLoss(nn.Module):
    """Cross-entropy on ``outputs["out"]`` (optionally OHEM) + ``aux_weight`` x CE on ``"aux"``.

    ``forward(outputs, batch)`` takes the model's output dict (``"out"``: N x C x H x W logits
    at the label resolution, ``"aux"`` optional, same shape) and a batch with ``"label"``
    (N x H x W trainIds, ``ignore_index`` = not labelled) and returns
    ``{"loss": ce + aux_weight * aux, "ce": ..., "aux": ...}``; ``"aux"`` is present only when the
    model returned aux logits (training mode). OHEM, when ``ohem_thresh`` is set, applies to the
    main output only; the auxiliary branch always uses plain cross-entropy, as in the OCNet /
    CCNet ``CriterionOhemDSN``. Every part is a mean over the kept labelled pixels and is 0 when
    none is kept.
    """

    #: Whether ``forward`` reads ``batch["edge"]``: the training engine has edge maps decoded
    #: only for the losses that say so (their own class attribute).
    needs_edges = False

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        aux_weight: float = 0.4,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
    ) -> None:
        super().__init__()
        if ohem_thresh is not None and not 0.0 < ohem_thresh <= 1.0:
            raise GsbenchError(f"ohem_thresh must be in (0, 1], got {ohem_thresh}")
        if ohem_min_kept < 0:
            raise GsbenchError(f"ohem_min_kept must be >= 0, got {ohem_min_kept}")
        if aux_weight < 0:
            raise GsbenchError(f"aux_weight must be >= 0, got {aux_weight}")
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, aux_weight={self.aux_weight}, "
            f"ohem_thresh={self.ohem_thresh}, ohem_min_kept={self.ohem_min_kept}"
        )

    @property
    def ohem(self) -> tuple[float, int] | None:
        """``(threshold, min_kept)`` of OHEM on the main term, or None without it."""
        return None if self.ohem_thresh is None else (self.ohem_thresh, self.ohem_min_kept)

    def _checked_label(self, logits: torch.Tensor, label: torch.Tensor, key: str) -> torch.Tensor:
        if logits.dim() != 4 or label.dim() != 3 or logits.shape[0] != label.shape[0] or (
            logits.shape[2:] != label.shape[1:]
        ):
            raise GsbenchError(
                f'outputs["{key}"] has shape {tuple(logits.shape)} but batch["label"] has shape '
                f"{tuple(label.shape)}; expected N x C x H x W logits and N x H x W labels"
            )
        label = label.long()
        if label.device.type != "cpu":
            # reading a device tensor's values would stop every step until the device is done;
            # the training items' values are checked by the dataset, on the host
            return label
        num_classes = logits.shape[1]
        bad = (label != self.ignore_index) & ((label < 0) | (label >= num_classes))
        if bool(bad.any()):
            value = int(label[bad][0])
            raise GsbenchError(
                f'batch["label"] holds value {value}, not a trainId in 0..{num_classes - 1} '
                f"nor the ignore index {self.ignore_index}"
            )
        return label

    def forward(self, outputs: dict, batch: dict) -> dict:
        if "out" not in outputs:
            raise GsbenchError(f'model outputs have no "out" key (keys: {sorted(outputs)})')
        if "label" not in batch:
            raise GsbenchError(f'batch has no "label" key (keys: {sorted(batch)})')
        logits = outputs["out"]
        label = self._checked_label(logits, batch["label"], "out")

        ce = cross_entropy_with_ignore(logits, label, self.ignore_index, self.ohem)
        result = {"loss": ce, "ce": ce}

        aux_logits = outputs.get("aux")
        if aux_logits is not None:
            self._checked_label(aux_logits, label, "aux")
            aux = cross_entropy_with_ignore(aux_logits, label, self.ignore_index)
            result["aux"] = aux
            result["loss"] = ce + self.aux_weight * aux
        return result
