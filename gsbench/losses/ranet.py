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
    the segmentation labels) and ``boundary_weight`` x binary cross-entropy of
    ``outputs["boundary"]`` (N x 1 x H x W logits of B) against ``batch["edge"]`` (the prepared
    data's edge band, following CASENet / SEAL as the paper). The paper gives no weights; both
    default to 1. The boundary BCE covers every pixel, the label's ignore regions included (the
    edge band is defined there too). Outputs the model does not return (eval mode, or the
    Table 1 "spp" / "nonlocal" variants without RCB) are skipped.
    """

    needs_edges = True  # reads batch["edge"] (see SegmentationLoss.needs_edges)

    def __init__(self, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.4,
                 ohem_thresh: float | None = None, ohem_min_kept: int = 100000,
                 coarse_weight: float = 1.0, boundary_weight: float = 1.0) -> None:
        super().__init__(ignore_index, aux_weight, ohem_thresh, ohem_min_kept)
        if coarse_weight < 0 or boundary_weight < 0:
            raise GsbenchError(f"coarse_weight and boundary_weight must be >= 0, got "
                               f"{coarse_weight} and {boundary_weight}")
        self.coarse_weight = coarse_weight
        self.boundary_weight = boundary_weight

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, coarse_weight={self.coarse_weight}, "
                f"boundary_weight={self.boundary_weight}")

    def forward(self, outputs: dict, batch: dict) -> dict:
        result = super().forward(outputs, batch)
        coarse = outputs.get("coarse")
        if coarse is not None:
            label = self._checked_label(coarse, batch["label"], "coarse")
            result["coarse"] = cross_entropy_with_ignore(coarse, label, self.ignore_index)
            result["loss"] = result["loss"] + self.coarse_weight * result["coarse"]
        boundary = outputs.get("boundary")
        if boundary is not None:
            if "edge" not in batch:
                raise GsbenchError('RANet needs boundary labels: batch has no "edge" key '
                                   "(prepare the dataset with edge maps)")
            edge = batch["edge"]
            if boundary.dim() != 4 or boundary.shape[1] != 1 or (
                    edge.shape != boundary[:, 0].shape):
                raise GsbenchError(
                    f'outputs["boundary"] has shape {tuple(boundary.shape)} but batch["edge"] '
                    f"has shape {tuple(edge.shape)}; expected N x 1 x H x W and N x H x W")
            result["boundary"] = F.binary_cross_entropy_with_logits(
                boundary[:, 0].float(), edge.float())
            result["loss"] = result["loss"] + self.boundary_weight * result["boundary"]
        return result
