"""The loss of OCNet and GPSNet: :class:`~gsbench.losses.common.SegmentationLoss`, optionally
with the OCNet release's fixed class weights.

The OCNet release (PkuRainBow/OCNet.pytorch, whose training settings GPSNet's Sec. 4.1 repeats)
trains with ``USE_CLASS_BALANCE=True``: ``CriterionDSN`` / ``CriterionOhemDSN_single`` in
``utils/criterion.py`` weight the cross-entropy of the main output (OHEM included) and of the
stage-3 ``dsn`` output by 19 fixed Cityscapes class weights. ``class_weights="ocnet"``
(``train.loss_options``) applies them, as PyTorch's weighted cross-entropy does: the weighted
mean ``sum_p w_{y_p} nll_p / sum_p w_{y_p}`` over the (kept) labelled pixels; "none" (default,
the GPSNet paper names no class weights) is the plain cross-entropy. docs/fidelity.md,
"GPSNet, OCNet and DenseASPP", records the evidence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.losses.common import SegmentationLoss, pixel_log_probs
from gsbench.losses.registry import register_loss

CLASS_WEIGHTS = ("none", "ocnet")
#: ``utils/criterion.py`` of the OCNet release: one weight per Cityscapes trainId 0..18.
OCNET_CITYSCAPES_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
                            1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865,
                            1.1529, 1.0507)


def weighted_cross_entropy(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor,
                           ignore_index: int = IGNORE_INDEX,
                           ohem: tuple[float, int] | None = None) -> torch.Tensor:
    """``CrossEntropyLoss(weight, ignore_index)``: the weighted mean over the labelled pixels
    (with ``ohem``, those OHEM keeps: :func:`~gsbench.losses.common.pixel_log_probs`); 0
    (connected to ``logits``) when no pixel is labelled, instead of NaN."""
    log_probs, label = pixel_log_probs(logits.float(), label, ignore_index, ohem)
    valid = label != ignore_index
    safe = torch.where(valid, label, torch.zeros_like(label))
    nll = F.nll_loss(log_probs, safe, reduction="none")
    pixel_weight = weight.to(logits.device)[safe] * valid
    total = pixel_weight.sum()
    return (pixel_weight * nll).sum() / total.clamp_min(1e-12)


@register_loss("gpsnet")
@register_loss("ocnet")
class OCNetLoss(SegmentationLoss):
    """:class:`SegmentationLoss` (OHEM on the main output, plain CE on ``"aux"``), with the OCNet
    release's class weights on both terms when ``class_weights="ocnet"``."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.4,
                 ohem_thresh: float | None = None, ohem_min_kept: int = 100000,
                 class_weights: str = "none") -> None:
        super().__init__(ignore_index, aux_weight, ohem_thresh, ohem_min_kept)
        if class_weights not in CLASS_WEIGHTS:
            raise GsbenchError(f"train.loss_options.class_weights must be one of "
                               f"{', '.join(CLASS_WEIGHTS)}, got {class_weights!r}")
        self.class_weights = class_weights
        self.weight = torch.tensor(OCNET_CITYSCAPES_WEIGHTS) if class_weights == "ocnet" else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, class_weights={self.class_weights}"

    def forward(self, outputs: dict, batch: dict) -> dict:
        if self.weight is None:
            return super().forward(outputs, batch)
        if "out" not in outputs or "label" not in batch:
            return super().forward(outputs, batch)  # its one-line error names the missing key
        logits = outputs["out"]
        if logits.shape[1] != len(self.weight):
            raise GsbenchError(f"train.loss_options.class_weights ocnet holds the OCNet release's "
                               f"{len(self.weight)} Cityscapes class weights, but the model "
                               f"predicts {logits.shape[1]} classes")
        label = self._checked_label(logits, batch["label"], "out")
        ce = weighted_cross_entropy(logits, label, self.weight, self.ignore_index, self.ohem)
        result = {"loss": ce, "ce": ce}
        aux_logits = outputs.get("aux")
        if aux_logits is not None:
            self._checked_label(aux_logits, label, "aux")
            aux = weighted_cross_entropy(aux_logits, label, self.weight, self.ignore_index)
            result["aux"] = aux
            result["loss"] = ce + self.aux_weight * aux
        return result
