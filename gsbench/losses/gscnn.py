"""Gated-SCNN's loss (Takikawa et al., ICCV 2019): class-balanced boundary BCE (Eq. 3) and the
dual-task regulariser (Eq. 4-9), for the outputs of :mod:`gsbench.models.gscnn`.

Where the released code (nv-tlabs/GSCNN ``loss.py``, ``my_functionals/DualTaskLoss.py``,
``my_functionals/custom_functional.py``) computes something else than the paper, both forms
are options of :class:`GatedSCNNLoss` (``train.loss_options``), the paper's by default;
docs/fidelity.md ("Gated-SCNN") records the evidence:

- ``ce``: "mean" (the paper's "standard cross-entropy") or "official", the release's
  ``ImageBasedCrossEntropyLoss2d`` (:func:`image_weighted_cross_entropy`), also in Eq. 6's term;
- ``edge_bce``: "paper" (Eq. 3 on the boundary logits) or "official", the release's ``bce2d``
  applied to the shape stream's *sigmoid* output (a second sigmoid inside the BCE);
- ``dual_task_form``: "paper" (Eq. 4-9) or "official", the release's ``DualTaskLoss``, whose
  smoothing and gradient functions return their input (:func:`official_dual_task_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsbench.data.labels import IGNORE_INDEX
from gsbench.errors import GsbenchError
from gsbench.losses.common import SegmentationLoss, cross_entropy_with_ignore
from gsbench.losses.registry import register_loss

#: Smallest boundary potential counted as "non-zero" in the dual-task regulariser (Eq. 5's p+);
#: real boundary values are > 1e-3 with the default smoothing, flat regions are exactly 0.
BOUNDARY_POTENTIAL_EPS = 1e-6
CE_FORMS = ("mean", "official")
EDGE_BCE_FORMS = ("paper", "official")
DUAL_TASK_FORMS = ("paper", "official")
#: The release's dual-task loss: Gumbel-softmax temperature (``_gumbel_softmax_sample(tau=0.5)``)
#: and the constant under its gradient magnitude's square root (``compute_grad_mag``).
OFFICIAL_GUMBEL_TAU = 0.5
OFFICIAL_MAGNITUDE_EPS = 1e-6


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


def image_weighted_cross_entropy(logits: torch.Tensor, label: torch.Tensor,
                                 ignore_index: int = IGNORE_INDEX,
                                 upper_bound: float = 1.0) -> torch.Tensor:
    """The release's ``ImageBasedCrossEntropyLoss2d`` (nv-tlabs/GSCNN ``loss.py``, with its
    defaults ``upper_bound = 1.0``, ``norm = False``, ``BATCH_WEIGHTING = False``).

    Per image b, with h_c the fraction of b's labelled pixels of class c, class c weighs
    ``w_c = 1 + upper_bound * (1 - h_c)`` if c occurs in b, else 1; the image's loss is the
    weighted mean ``sum_p w_{y_p} nll_p / sum_p w_{y_p}`` over its labelled pixels. The release
    sums these over the images of each GPU and averages over GPUs: with its default of one image
    per GPU that is the mean over the batch, which is what this returns. An image without
    labelled pixels contributes 0.
    """
    n, k = logits.shape[:2]
    valid = label != ignore_index
    safe = torch.where(valid, label, torch.zeros_like(label))
    counts = torch.zeros(n, k, device=logits.device, dtype=torch.float32)
    counts.scatter_add_(1, safe.flatten(1), valid.flatten(1).float())
    hist = counts / counts.sum(1, keepdim=True).clamp_min(1.0)
    weights = torch.where(hist > 0, 1.0 + upper_bound * (1.0 - hist), torch.ones_like(hist))
    pixel_weight = torch.gather(weights, 1, safe.flatten(1)) * valid.flatten(1)
    nll = -torch.gather(F.log_softmax(_at_least_float32(logits), dim=1).flatten(2), 1,
                        safe.flatten(1).unsqueeze(1))[:, 0]
    total = pixel_weight.sum(1)
    per_image = (pixel_weight * nll).sum(1) / total.clamp_min(1e-12)
    return torch.where(total > 0, per_image, torch.zeros_like(per_image)).mean()


def official_dual_task_loss(logits: torch.Tensor, label: torch.Tensor,
                            ignore_index: int = IGNORE_INDEX,
                            noise: torch.Tensor | None = None) -> torch.Tensor:
    """The release's ``DualTaskLoss`` (``my_functionals/DualTaskLoss.py``) as it computes.

    Logits at ignored pixels are set to 0 and ignored labels become class 0;
    ``g = softmax((z + noise) / 0.5)`` with Gumbel noise ``-log(1e-10 - log(U + 1e-10))``;
    ``compute_grad_mag`` reduces to ``m(E) = sqrt(2 E^2 + 1e-6) / max(sqrt(2 E^2 + 1e-6))``
    because its ``convTri`` and ``gradient_central_diff`` return their input, so no boundary
    is extracted; both of the release's p+ masks (``m >= 1e-8``) hold everywhere, so the loss
    is ``mean |m(g) - m(onehot)|`` over every element of the N x K x H x W maps.
    """
    ignored = (label == ignore_index).unsqueeze(1)
    logits = _at_least_float32(logits).masked_fill(ignored, 0.0)
    safe = torch.where(ignored[:, 0], torch.zeros_like(label), label)
    truth = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    if noise is None:
        uniform = torch.rand_like(logits)
        noise = -torch.log(1e-10 - torch.log(uniform + 1e-10))
    g = F.softmax((logits + noise) / OFFICIAL_GUMBEL_TAU, dim=1)

    def magnitude(e: torch.Tensor) -> torch.Tensor:
        m = torch.sqrt(2 * e * e + OFFICIAL_MAGNITUDE_EPS)
        return m / m.max()

    return (magnitude(g) - magnitude(truth)).abs().mean()


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
    ce: str = "mean",
) -> torch.Tensor:
    """Gated-SCNN Eq. 6 without lambda_4: cross-entropy on the pixels where the shape stream is
    confident of a boundary, ``sigmoid(s) > threshold`` (0.8); the indicator carries no gradient.

    ``ce="mean"``: mean over the selected labelled pixels (the paper writes a sum), 0 when there
    is none; "official": :func:`image_weighted_cross_entropy` of the selected pixels (the
    release's ``edge_attention``, class weights from the selected pixels' labels).
    ``edge_logits`` is N x 1 x H x W.
    """
    confident = torch.sigmoid(edge_logits.detach()[:, 0]) > threshold
    selected = torch.where(confident, label, torch.full_like(label, ignore_index))
    if ce == "official":
        return image_weighted_cross_entropy(logits, selected, ignore_index)
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
    ``ce``, ``edge_bce`` and ``dual_task_form`` choose between the paper's terms (default) and
    the released code's (see the module docstring). ``batch["edge"]`` is the prepared 0/1
    boundary map (:mod:`gsbench.data.edges`). A model without a shape stream (the baseline, no
    ``"edge"`` output) gets the cross-entropy terms only. ``ohem_thresh`` applies to the main
    cross-entropy, as in :class:`SegmentationLoss` (not with ``ce="official"``).
    """

    needs_edges = True  # reads batch["edge"] (see SegmentationLoss.needs_edges)

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
        ce: str = "mean",
        edge_bce: str = "paper",
        dual_task_form: str = "paper",
    ) -> None:
        super().__init__()
        for name, value, choices in (("ce", ce, CE_FORMS), ("edge_bce", edge_bce, EDGE_BCE_FORMS),
                                     ("dual_task_form", dual_task_form, DUAL_TASK_FORMS)):
            if value not in choices:
                raise GsbenchError(f"train.loss_options.{name} must be one of "
                                   f"{', '.join(choices)}, got {value!r}")
        if ce == "official" and ohem_thresh is not None:
            raise GsbenchError("train.loss_options.ce official (the release's image-weighted "
                               "cross-entropy) cannot be combined with train.ohem_thresh")
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
        self.ce = ce
        self.edge_bce = edge_bce
        self.dual_task_form = dual_task_form

    def extra_repr(self) -> str:
        return (f"edge_weight={self.edge_weight}, seg_weight={self.seg_weight}, "
                f"dual_task={self.dual_task}, boundary_weight={self.boundary_weight}, "
                f"consistency_weight={self.consistency_weight}, "
                f"edge_threshold={self.edge_threshold}, gumbel_tau={self.gumbel_tau}, "
                f"smoothing_sigma={self.smoothing_sigma}, ce={self.ce}, "
                f"edge_bce={self.edge_bce}, dual_task_form={self.dual_task_form}")

    def forward(self, outputs: dict, batch: dict) -> dict:
        result = self.segmentation(outputs, batch)
        if self.ce == "official":
            result["ce"] = image_weighted_cross_entropy(outputs["out"], batch["label"].long(),
                                                        self.ignore_index)
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
        # the release feeds the shape stream's sigmoid output to a BCE with logits
        edge_input = torch.sigmoid(edge_logits[:, 0]) if self.edge_bce == "official" else \
            edge_logits[:, 0]
        result["edge_bce"] = class_balanced_bce(edge_input, edge)
        result["loss"] = result["loss"] + self.edge_weight * result["edge_bce"]
        if self.dual_task:
            if self.dual_task_form == "official":
                result["dual_boundary"] = official_dual_task_loss(logits, label,
                                                                  self.ignore_index)
            else:
                result["dual_boundary"] = dual_task_boundary_loss(
                    logits, label, self.smoothing_sigma, self.gumbel_tau, self.ignore_index)
            result["dual_consistency"] = dual_task_consistency_loss(
                logits, label, edge_logits, self.edge_threshold, self.ignore_index, self.ce)
            result["loss"] = (result["loss"] + self.boundary_weight * result["dual_boundary"]
                              + self.consistency_weight * result["dual_consistency"])
        return result
