"""RANet's loss (Region Attention Network, Shen et al., NeurIPS 2020): the segmentation loss
plus the supervision of RCB's semantic and boundary score maps (:mod:`gsbench.models.ranet`)."""

from __future__ import annotations

import torch.nn.functional as F

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.losses.common import SegmentationLoss, cross_entropy_with_ignore
from gsbench.losses.registry import register_loss


@register_loss("ranet")
class RANetLoss(SegmentationLoss):
    """RANet (NeurIPS 2020) Sec. 4: cross-entropy on the final segmentation, on RCB's semantic
    score maps and on its boundary score map.

    Adds to :class:`SegmentationLoss` (main CE, optional OHEM, aux CE):
    ``coarse_weight`` x CE of ``outputs["coarse"]`` (the semantic score maps C, supervised with
    the segmentation labels) and ``boundary_weight`` x the boundary loss of
    ``outputs["boundary"]`` against ``batch["edge"]`` (the prepared data's edge band, following
    CASENet / SEAL as the paper): binary cross-entropy of N x 1 x H x W logits (the ``paper``
    score source), or two-class cross-entropy of N x 2 x H x W logits (the ``official`` one);
    with the official score source also ``final_boundary_weight`` x the two-class CE of
    ``outputs["final_boundary"]`` (the boundary head on the final features). The paper gives no
    weights: all default to 1. The released code (RANet ``loss/criterion.py``,
    ``CriterionBoundary``) weighs the stage-3 semantic map 0.4, the stage-3 boundary map
    0.2 x 0.4 = 0.08 and the final boundary map 0.2 (``recipes/ranet101.yaml``). The boundary
    terms cover every pixel, the label's ignore regions included (the edge band is defined
    there too). Outputs the model does not return (eval mode, or the Table 1 "spp" /
    "nonlocal" variants without RCB) are skipped.
    """

    needs_edges = True  # reads batch["edge"] (see SegmentationLoss.needs_edges)

    def __init__(self, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.4,
                 ohem_thresh: float | None = None, ohem_min_kept: int = 100000,
                 coarse_weight: float = 1.0, boundary_weight: float = 1.0,
                 final_boundary_weight: float = 1.0) -> None:
        super().__init__(ignore_index, aux_weight, ohem_thresh, ohem_min_kept)
        if min(coarse_weight, boundary_weight, final_boundary_weight) < 0:
            raise GsbenchError(f"coarse_weight, boundary_weight and final_boundary_weight must "
                               f"be >= 0, got {coarse_weight}, {boundary_weight} and "
                               f"{final_boundary_weight}")
        self.coarse_weight = coarse_weight
        self.boundary_weight = boundary_weight
        self.final_boundary_weight = final_boundary_weight

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, coarse_weight={self.coarse_weight}, "
                f"boundary_weight={self.boundary_weight}, "
                f"final_boundary_weight={self.final_boundary_weight}")

    def forward(self, outputs: dict, batch: dict) -> dict:
        result = super().forward(outputs, batch)
        coarse = outputs.get("coarse")
        if coarse is not None:
            label = self._checked_label(coarse, batch["label"], "coarse")
            result["coarse"] = cross_entropy_with_ignore(coarse, label, self.ignore_index)
            result["loss"] = result["loss"] + self.coarse_weight * result["coarse"]
        weights = {"boundary": self.boundary_weight, "final_boundary": self.final_boundary_weight}
        for key, weight in weights.items():
            boundary = outputs.get(key)
            if boundary is None:
                continue
            if "edge" not in batch:
                raise GsbenchError('RANet needs boundary labels: batch has no "edge" key '
                                   "(prepare the dataset with edge maps)")
            edge = batch["edge"]
            if boundary.dim() != 4 or boundary.shape[1] not in (1, 2) or (
                    edge.shape != boundary[:, 0].shape):
                raise GsbenchError(
                    f'outputs["{key}"] has shape {tuple(boundary.shape)} but batch["edge"] '
                    f"has shape {tuple(edge.shape)}; expected N x 1 x H x W (or N x 2 x H x W) "
                    "and N x H x W")
            if boundary.shape[1] == 1:
                term = F.binary_cross_entropy_with_logits(boundary[:, 0].float(), edge.float())
            else:
                term = F.cross_entropy(boundary.float(), edge.long())
            result[key] = term
            result["loss"] = result["loss"] + weight * term
        return result
