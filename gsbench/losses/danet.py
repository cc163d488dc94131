"""DANet's loss (Fu et al., CVPR 2019, as the official code and mmsegmentation train it): the
segmentation loss on the fused output plus a cross-entropy on each attention branch's own
logits (:mod:`gsbench.models.danet`)."""

from __future__ import annotations

from gsbench.errors import GsbenchError
from gsbench.losses.common import SegmentationLoss, cross_entropy_with_ignore
from gsbench.losses.registry import register_loss


@register_loss("danet")
class DANetLoss(SegmentationLoss):
    """:class:`SegmentationLoss` on the fused output (+ aux) plus ``pam_weight`` x CE on the
    PAM-only logits and ``cam_weight`` x CE on the CAM-only logits (official code and mmseg: 1
    and 1). The branch terms are reported as ``"pam"`` and ``"cam"``."""

    def __init__(self, pam_weight: float = 1.0, cam_weight: float = 1.0, **common) -> None:
        super().__init__(**common)
        if pam_weight < 0 or cam_weight < 0:
            raise GsbenchError(f"pam_weight and cam_weight must be >= 0, got {pam_weight} and "
                               f"{cam_weight}")
        self.pam_weight = pam_weight
        self.cam_weight = cam_weight

    def forward(self, outputs: dict, batch: dict) -> dict:
        result = super().forward(outputs, batch)
        for key, weight in (("pam", self.pam_weight), ("cam", self.cam_weight)):
            logits = outputs.get(key)
            if logits is None:  # eval mode: no branch logits
                continue
            label = self._checked_label(logits, batch["label"], key)
            term = cross_entropy_with_ignore(logits, label, self.ignore_index)
            result[key] = term
            result["loss"] = result["loss"] + weight * term
        return result
