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

    from gsbench.models.registry import import_all_model_modules

    import_all_model_modules()  # model files register their losses when they are imported
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


# --- Gated-SCNN (Takikawa et al., ICCV 2019) ------------------------------------------------------

#: Smallest boundary potential counted as "non-zero" in the dual-task regulariser (Eq. 5's p+);
#: real boundary values are > 1e-3 with the default smoothing, flat regions are exactly 0.
BOUNDARY_POTENTIAL_EPS = 1e-6


def class_balanced_bce(edge_logits: torch.Tensor, edge_target: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy on boundary logits (Gated-SCNN Eq. 3, following HED).

    ``beta`` = fraction of non-edge pixels in the batch; edge pixels are weighted ``beta`` and
    non-edge pixels ``1 - beta``; the weighted BCE is averaged over all pixels (the official
    ``bce2d``: one beta per batch, mean over pixels). ``edge_logits`` and ``edge_target`` (0/1)
    have the same shape.
    """
    target = edge_target.float()
    positives = target.sum()
    beta = (target.numel() - positives) / target.numel()
    weight = torch.where(target > 0.5, beta, 1.0 - beta)
    return F.binary_cross_entropy_with_logits(edge_logits.float(), target, weight=weight)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def straight_through_gumbel_argmax(
    logits: torch.Tensor, tau: float = 1.0, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """One-hot argmax of the class probabilities with the Gumbel-softmax gradient (Eq. 4, 9).

    Forward: ``one_hot(argmax_k p_k)`` (N x K x H x W, exactly Eq. 4's argmax, no noise in the
    value); backward: the gradient of ``softmax((log p + g) / tau)`` with Gumbel(0, 1) noise
    ``g`` (Eq. 9), sampled unless ``noise`` is given.
    """
    log_p = F.log_softmax(_at_least_float32(logits), dim=1)
    if noise is None:
        uniform = torch.rand_like(log_p).clamp_(1e-10, 1.0 - 1e-7)
        noise = -torch.log(-torch.log(uniform))
    soft = F.softmax((log_p + noise) / tau, dim=1)
    hard = F.one_hot(log_p.argmax(dim=1), logits.shape[1]).permute(0, 3, 1, 2).to(soft.dtype)
    return hard - soft.detach() + soft


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma``, truncated at 2 sigma (5 taps at 1)."""
    radius = max(1, int(2 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def boundary_potential(one_hot: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gated-SCNN Eq. 4: ``zeta = 1/sqrt(2) * || grad(G * y) ||`` for a one-hot map N x K x H x W.

    Each class channel is smoothed by the Gaussian ``G`` (``sigma`` px, separable, truncated at
    2 sigma) and differentiated with the Sobel kernels scaled by 1/8 (so a unit ramp has slope
    1); the norm runs over the classes and both directions. Between two classes the one-hot
    gradients are opposite, so the norm is sqrt(2) x the step: the 1/sqrt(2) makes zeta the
    smoothed step height. Borders replicate the edge pixels: the image border is no boundary.
    Returns N x H x W; exactly 0 away from label changes.
    """
    n, k, h, w = one_hot.shape
    g = gaussian_kernel1d(sigma).to(one_hot.device, one_hot.dtype)
    r = (g.numel() - 1) // 2
    # Depthwise convolutions (one group per class): several times faster on CPU than folding
    # the classes into the batch.
    x = F.conv2d(F.pad(one_hot, (r, r, 0, 0), mode="replicate"),
                 g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"),
                 g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
                           dtype=one_hot.dtype, device=one_hot.device) / 8.0
    kernels = torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1).repeat(k, 1, 1, 1)
    grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=k)
    squared = grad.square().sum(dim=1)
    # sqrt has an infinite slope at 0: flat pixels get exactly 0 and no gradient.
    return torch.where(squared > 0, squared.clamp_min(1e-20).sqrt(), 0.0) * 2 ** -0.5


def boundary_reach(sigma: float) -> int:
    """Pixels from which a label change can reach ``boundary_potential``: Gaussian + Sobel radius."""
    return (gaussian_kernel1d(sigma).numel() - 1) // 2 + 1


def dual_task_boundary_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    sigma: float = 1.0,
    tau: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gated-SCNN Eq. 5 without lambda_3: ``mean_{p+} |zeta(p) - zeta_hat(p)|``.

    ``zeta`` is :func:`boundary_potential` of the straight-through Gumbel argmax of ``logits``
    (gradients by Eq. 8-9); ``zeta_hat`` is computed the same way from the one-hot ground truth
    (so a perfect segmentation costs 0). ``p+`` = pixels where either potential is non-zero
    (> :data:`BOUNDARY_POTENTIAL_EPS`). Pixels within reach of an ignored label are left out:
    there the ground truth has no class to draw a boundary with. The paper sums over ``p+``; the
    mean keeps lambda_3 = 1 on the scale of the other (mean) terms. 0 when ``p+`` is empty.
    """
    # float32 even under bf16 / fp16 autocast: the potentials are small differences of smoothed
    # maps and p+ is "non-zero", both lost in half precision
    with torch.autocast(logits.device.type, enabled=False):
        return _dual_task_boundary_loss(_at_least_float32(logits), label, sigma, tau,
                                        ignore_index, noise)


def _dual_task_boundary_loss(logits, label, sigma, tau, ignore_index, noise):
    num_classes = logits.shape[1]
    predicted = straight_through_gumbel_argmax(logits, tau, noise)
    ignored = label == ignore_index
    safe = torch.where(ignored, torch.zeros_like(label), label)
    truth = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(predicted.dtype)
    truth = truth * (~ignored).unsqueeze(1)
    zeta = boundary_potential(predicted, sigma)
    zeta_hat = boundary_potential(truth, sigma)
    reach = boundary_reach(sigma)
    near_ignored = F.max_pool2d(ignored.unsqueeze(1).float(), 2 * reach + 1, stride=1,
                                padding=reach)[:, 0] > 0
    p_plus = ((zeta.detach() > BOUNDARY_POTENTIAL_EPS) | (zeta_hat > BOUNDARY_POTENTIAL_EPS))
    p_plus = p_plus & ~near_ignored
    if not bool(p_plus.any()):
        return zeta.sum() * 0.0
    return (zeta - zeta_hat).abs()[p_plus].mean()


def dual_task_consistency_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    edge_logits: torch.Tensor,
    threshold: float = 0.8,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Gated-SCNN Eq. 6 without lambda_4: cross-entropy on the pixels where the shape stream is
    confident of a boundary, ``sigmoid(s) > threshold`` (0.8); the indicator carries no gradient.

    Mean over the selected labelled pixels (the paper writes a sum), 0 when there is none.
    ``edge_logits`` is N x 1 x H x W.
    """
    confident = torch.sigmoid(edge_logits.detach()[:, 0]) > threshold
    selected = torch.where(confident, label, torch.full_like(label, ignore_index))
    return cross_entropy_with_ignore(logits, selected, ignore_index)


@register_loss("gscnn")
class GatedSCNNLoss(nn.Module):
    """Gated-SCNN's joint loss (Eq. 3 and Eq. 7), ``outputs`` from :mod:`gsbench.models.gscnn`::

        loss = lambda1 * BCE_balanced(edge, batch["edge"])             (Eq. 3, lambda1 = 20)
             + lambda2 * CE(out, label)                                 (Eq. 3, lambda2 = 1)
             + lambda3 * mean_{p+} |zeta - zeta_hat|                    (Eq. 5, lambda3 = 1)
             + lambda4 * CE(out, label) on pixels with sigmoid(edge) > 0.8  (Eq. 6, lambda4 = 1)
             + aux_weight * CE(aux, label)                              (when the model has aux)

    The dual-task terms (Eq. 5-6) are on with ``dual_task`` (Table 4 compares without / with).
    This is the regulariser the paper defines, not the official code's, whose gradient helpers
    return their input unchanged (its Eq. 5 degenerates to L1 between softmax and one-hot).
    ``batch["edge"]`` is the prepared 0/1 boundary map (:mod:`gsbench.data.edges`). A model
    without a shape stream (the baseline, no ``"edge"`` output) gets the cross-entropy terms only.
    ``ohem_thresh`` applies to the main cross-entropy, as in :class:`SegmentationLoss`.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        aux_weight: float = 0.4,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
        edge_weight: float = 20.0,
        seg_weight: float = 1.0,
        dual_task: bool = True,
        boundary_weight: float = 1.0,
        consistency_weight: float = 1.0,
        edge_threshold: float = 0.8,
        gumbel_tau: float = 1.0,
        smoothing_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("edge_weight", edge_weight), ("seg_weight", seg_weight),
                            ("boundary_weight", boundary_weight),
                            ("consistency_weight", consistency_weight)):
            if value < 0:
                raise GsbenchError(f"train.loss_options.{name} must be >= 0, got {value}")
        if gumbel_tau <= 0 or smoothing_sigma <= 0:
            raise GsbenchError("train.loss_options.gumbel_tau and smoothing_sigma must be > 0, "
                               f"got {gumbel_tau} and {smoothing_sigma}")
        if not 0.0 <= edge_threshold < 1.0:
            raise GsbenchError(f"train.loss_options.edge_threshold must be in [0, 1), "
                               f"got {edge_threshold}")
        self.segmentation = SegmentationLoss(ignore_index, aux_weight, ohem_thresh, ohem_min_kept)
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.edge_weight = edge_weight
        self.seg_weight = seg_weight
        self.dual_task = dual_task
        self.boundary_weight = boundary_weight
        self.consistency_weight = consistency_weight
        self.edge_threshold = edge_threshold
        self.gumbel_tau = gumbel_tau
        self.smoothing_sigma = smoothing_sigma

    def extra_repr(self) -> str:
        return (f"edge_weight={self.edge_weight}, seg_weight={self.seg_weight}, "
                f"dual_task={self.dual_task}, boundary_weight={self.boundary_weight}, "
                f"consistency_weight={self.consistency_weight}, "
                f"edge_threshold={self.edge_threshold}, gumbel_tau={self.gumbel_tau}, "
                f"smoothing_sigma={self.smoothing_sigma}")

    def forward(self, outputs: dict, batch: dict) -> dict:
        result = self.segmentation(outputs, batch)
        result["loss"] = self.seg_weight * result["ce"]
        if "aux" in result:
            result["loss"] = result["loss"] + self.aux_weight * result["aux"]
        edge_logits = outputs.get("edge")
        if edge_logits is None:
            return result
        logits, label = outputs["out"], batch["label"].long()
        edge = batch.get("edge")
        if edge is None:
            raise GsbenchError('Gated-SCNN needs boundary targets but the batch has no "edge" '
                               "key: prepare the dataset with edge maps")
        if edge_logits.dim() != 4 or edge_logits.shape[1] != 1 or (
                edge_logits.shape[0:1] + edge_logits.shape[2:] != edge.shape):
            raise GsbenchError(f'outputs["edge"] has shape {tuple(edge_logits.shape)} but '
                               f'batch["edge"] has shape {tuple(edge.shape)}; expected N x 1 x H '
                               "x W and N x H x W")
        result["edge_bce"] = class_balanced_bce(edge_logits[:, 0], edge)
        result["loss"] = result["loss"] + self.edge_weight * result["edge_bce"]
        if self.dual_task:
            result["dual_boundary"] = dual_task_boundary_loss(
                logits, label, self.smoothing_sigma, self.gumbel_tau, self.ignore_index)
            result["dual_consistency"] = dual_task_consistency_loss(
                logits, label, edge_logits, self.edge_threshold, self.ignore_index)
            result["loss"] = (result["loss"] + self.boundary_weight * result["dual_boundary"]
                              + self.consistency_weight * result["dual_consistency"])
        return result
