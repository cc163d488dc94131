"""Segmentation losses: cross-entropy with ignore, online hard example mining, auxiliary loss.

``SegmentationLoss`` is the loss of every model in the zoo that predicts only class logits
(FCN, PSPNet, DeepLab, OCNet, PSANet, GFF, GPSNet, ...): the main cross-entropy on
``outputs["out"]`` plus ``aux_weight`` times the cross-entropy on ``outputs["aux"]`` (the deep
supervision of PSPNet / PSANet Fig. 4, weight 0.4) when the model returned one.

Online hard example mining (OHEM) follows the ``OhemCrossEntropy2d`` of the PSPNet / OCNet /
CCNet codebases (GPSNet trains with threshold 0.7 and 100,000 kept pixels); the exact rule is in
:func:`ohem_keep_mask`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError


def ohem_keep_mask(
    logits: torch.Tensor,
    label: torch.Tensor,
    thresh: float,
    min_kept: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Boolean N x H x W mask of the labelled pixels that OHEM keeps for the loss.

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
    """
    valid = label != ignore_index
    with torch.no_grad():
        prob = F.softmax(logits.detach().float(), dim=1)
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        true_prob = prob.gather(1, safe_label.unsqueeze(1)).squeeze(1)
        valid_prob = true_prob[valid]
        num_valid = valid_prob.numel()
        if num_valid <= min_kept:
            return valid
        threshold = torch.tensor(float(thresh), dtype=valid_prob.dtype, device=valid_prob.device)
        if min_kept > 0:
            kth_smallest = torch.kthvalue(valid_prob, min_kept).values
            threshold = torch.maximum(threshold, kth_smallest)
        return valid & (true_prob <= threshold)


def cross_entropy_with_ignore(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``.

    A batch with no labelled pixel gives 0 (still connected to ``logits`` so that ``backward``
    works and every gradient is 0) instead of the NaN of ``F.cross_entropy``'s empty mean.
    """
    if not bool((label != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, label, ignore_index=ignore_index, reduction="mean")


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

    def _checked_label(self, logits: torch.Tensor, label: torch.Tensor, key: str) -> torch.Tensor:
        if logits.dim() != 4 or label.dim() != 3 or logits.shape[0] != label.shape[0] or (
            logits.shape[2:] != label.shape[1:]
        ):
            raise GsbenchError(
                f'outputs["{key}"] has shape {tuple(logits.shape)} but batch["label"] has shape '
                f"{tuple(label.shape)}; expected N x C x H x W logits and N x H x W labels"
            )
        label = label.long()
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

        main_label = label
        if self.ohem_thresh is not None:
            keep = ohem_keep_mask(
                logits, label, self.ohem_thresh, self.ohem_min_kept, self.ignore_index
            )
            main_label = torch.where(keep, label, torch.full_like(label, self.ignore_index))
        ce = cross_entropy_with_ignore(logits, main_label, self.ignore_index)
        result = {"loss": ce, "ce": ce}

        aux_logits = outputs.get("aux")
        if aux_logits is not None:
            self._checked_label(aux_logits, label, "aux")
            aux = cross_entropy_with_ignore(aux_logits, label, self.ignore_index)
            result["aux"] = aux
            result["loss"] = ce + self.aux_weight * aux
        return result


#: Loss class of each model that needs more than :class:`SegmentationLoss` (edge or boundary
#: terms); every other model trains with :class:`SegmentationLoss`.
MODEL_LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(model_name: str):
    """Class decorator: ``@register_loss("gscnn")`` makes the class the loss of that model.

    The class takes the keyword arguments of :class:`SegmentationLoss` plus its own, each with
    the paper's value as default, and ``forward(outputs, batch) -> dict`` with a "loss" entry.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if model_name in MODEL_LOSSES:
            raise ValueError(f"a loss is already registered for model {model_name!r}")
        MODEL_LOSSES[model_name] = cls
        return cls

    return decorator


def build_loss(model_name: str, *, options: dict | None = None, **common) -> nn.Module:
    """The loss of ``model_name``; ``options`` are the recipe's ``train.loss_options``."""
    import difflib
    import inspect

    cls = MODEL_LOSSES.get(model_name, SegmentationLoss)
    options = dict(options or {})
    accepted = [name for name in inspect.signature(cls).parameters if name not in common]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (closest valid key: 'train.loss_options.{close[0]}')" if close else (
                f" ({cls.__name__} takes no extra options)" if not accepted else "")
            raise GsbenchError(f"unknown key 'train.loss_options.{key}' for model {model_name!r}{hint}")
    return cls(**common, **options)


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
