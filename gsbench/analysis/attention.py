"""The attention comparison of RANet Table 3: a registry of attention / context modules, for
profiling them on their own.

RANet Table 3 compares the *increase* in FLOPs, parameters and GPU memory that each attention
method costs on a 1 x 512 x 97 x 97 feature map (stride 8 of a 769 x 769 crop). Each entry here
builds that method at two scopes on a map of ``in_channels`` channels:

- ``scope="module"``: the attention module alone, same channels in and out (e.g. CCNet's RCCA
  with R = 2, DANet's PAM + CAM);
- ``scope="head"``: the method's whole decode head with the map as its c5 input - input / output
  convolutions, fusion and classifier (19 classes) included, as in the models of the zoo.
  Heads that also read the stage-4 map (ANN's AFNB) take the first ``in_channels // 2``
  channels of the map as that input, which has the real shapes of a ResNet (1024 beside 2048).

Register a module with::

    @register_attention_module("name", head=build_head_fn, description="...")
    def build_name(in_channels: int) -> nn.Module: ...

where both builders take the input channels and return a module mapping one N x C x H x W
tensor to a tensor. The entries of the methods of RANet Table 3 are at the end of this module,
built from the models' own modules; the models know nothing of this registry.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin

from gsbench.analysis.complexity import profile_model
from gsbench.errors import GsbenchError
from gsbench.models.annet import AFNB, APNB, ANNHead
from gsbench.models.ccnet import CCHead, RecurrentCrissCrossAttention
from gsbench.models.danet import DAHead, DualAttention
from gsbench.models.nonlocal_net import NonLocalBlock, NonLocalHead
from gsbench.models.psanet import PointwiseSpatialAttention, PSAHead
from gsbench.models.ranet import RELEASED_FORMS, RANetHead, RegionAttention, conv_bn_leaky
from gsbench.recipes import RECIPES_DIR

ATTENTION_SCOPES = ("module", "head")

#: Number of classes of the decode heads built at ``scope="head"`` (Cityscapes).
HEAD_NUM_CLASSES = 19


@dataclass(frozen=True)
class AttentionEntry:
    """One registered attention module: its builders and a one-line description.

    ``cases``: for a module whose cost depends on the input's values (RANet's regions), named
    keyword arguments of both builders, each one input case; the first is the default.
    ``counts``: what the module counts at a scope, where :data:`SCOPE_NOTES` does not fit."""

    name: str
    build_module: Callable[..., nn.Module]
    build_head: Callable[..., nn.Module] | None
    description: str
    cases: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, str] = field(default_factory=dict)


_ATTENTION: dict[str, AttentionEntry] = {}


def register_attention_module(name: str, *, head: Callable[..., nn.Module] | None = None,
                              description: str = "", cases: dict[str, dict] | None = None,
                              counts: dict[str, str] | None = None):
    """Decorator registering ``fn(in_channels) -> module`` as attention module ``name``;
    ``head(in_channels)`` optionally builds the method's whole decode head (``scope="head"``);
    ``cases`` and ``counts`` as in :class:`AttentionEntry`."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ATTENTION and _ATTENTION[name].build_module is not fn:
            raise ValueError(f"attention module {name!r} is registered twice")
        _ATTENTION[name] = AttentionEntry(name, fn, head, description or (fn.__doc__ or "").strip(),
                                          dict(cases or {}), dict(counts or {}))
        return fn

    return decorator


def list_attention_modules() -> list[str]:
    """Names of all registered attention modules, sorted."""
    return sorted(_ATTENTION)


def get_attention_entry(name: str) -> AttentionEntry:
    """The entry registered as ``name``; an unknown name raises a GsbenchError with hints."""
    if name not in _ATTENTION:
        close = difflib.get_close_matches(name, list(_ATTENTION), n=3, cutoff=0.4)
        known = ", ".join(sorted(_ATTENTION))
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {known}"
        raise GsbenchError(f"unknown attention module {name!r}; {hint}")
    return _ATTENTION[name]


def build_attention_module(name: str, in_channels: int = 512, scope: str = "module",
                           case: str | None = None) -> nn.Module:
    """Build attention module ``name`` for an ``in_channels`` map at ``scope`` (see above), for
    input ``case`` (one of the entry's cases; default: its first)."""
    entry = get_attention_entry(name)
    if case is not None and case not in entry.cases:
        known = ", ".join(entry.cases) or "none"
        raise GsbenchError(f"attention module {name!r} has no input case {case!r} (cases: {known})")
    options = entry.cases[case or next(iter(entry.cases))] if entry.cases else {}
    if scope not in ATTENTION_SCOPES:
        raise GsbenchError(f"attention scope must be one of {', '.join(ATTENTION_SCOPES)}, "
                           f"got {scope!r}")
    if in_channels < 16 or in_channels % 8:
        raise GsbenchError(f"attention modules need a channel count that is a multiple of 8 and "
                           f">= 16, got {in_channels}")
    if scope == "head":
        if entry.build_head is None:
            raise GsbenchError(f"attention module {name!r} has no head scope; use scope module")
        return entry.build_head(in_channels, **options)
    return entry.build_module(in_channels, **options)


#: RANet Table 3 (the paper's figures, kept as data).
RANET_TABLE3 = RECIPES_DIR / "tables" / "ranet_table3.yaml"

#: What ``profile_attention_module`` counts at each scope, printed with the figures.
SCOPE_NOTES = {
    "module": "the attention module alone on the map (same channels in and out; its own 1x1 "
              "convs, no 3x3 input/output convs, no classifier)",
    "head": "the method's whole decode head with the map as its stage-5 input (3x3 input/output "
            "convs, fusion and 19-class classifier included; ANN's stage-4 input = the first "
            "half of the map's channels)",
}


def load_ranet_table3() -> dict:
    """RANet Table 3 as ``{"source", "input_shape", "rows": {name: {label, gflops, params_m,
    memory_mb, miou}}}``, read from :data:`RANET_TABLE3`."""
    try:
        table = yaml.safe_load(RANET_TABLE3.read_text())
    except (OSError, yaml.YAMLError) as error:
        message = f"{RANET_TABLE3}: cannot read the RANet Table 3 data ({error})"
        raise GsbenchError(message) from None
    keys = {"label", "gflops", "params_m", "memory_mb", "miou"}
    if not isinstance(table, dict) or not isinstance(table.get("rows"), dict) or any(
            not isinstance(row, dict) or set(row) != keys for row in table["rows"].values()):
        raise GsbenchError(f"{RANET_TABLE3}: expected 'rows' mapping names to {sorted(keys)}")
    return table


def _materialise_lazy(module: nn.Module, shape: tuple[int, ...]) -> None:
    """Run one no-grad forward when a lazy module (PSANet's mask predictor without a mask size)
    still has to fix its parameters from the map it sees; the profiler copies the module to
    the meta device, which a lazy parameter cannot survive."""
    lazy = any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()
               for m in module.modules())
    if lazy:
        was_training = module.training
        module.eval()
        device = next(module.buffers()).device
        with torch.no_grad():
            module(torch.zeros(shape, device=device))
        module.train(was_training)


def profile_attention_module(name: str, input_shape: tuple[int, int, int, int],
                             scope: str = "module", device: str = "cpu", latency: bool = False,
                             warmup: int = 2, repeat: int = 5, on_progress=None) -> dict:
    """Complexity figures of attention module ``name`` on an N x C x H x W feature map.

    The figures of :func:`gsbench.analysis.complexity.profile_model` (parameters, GFLOPs with a
    multiply-add = 2 and GMACs, peak memory of an eval forward and of a train-mode
    forward + backward, optionally latency) for the module built at ``scope`` with C input
    channels; ``counts`` says what the module includes, ``paper`` is its RANet Table 3 row (or
    None). Everything the module computes is its cost: it is the *increase* over a network
    without it. Off CUDA, memory is the peak of live tensors, the input map included.
    ``on_progress(done, total)``: as in :func:`~gsbench.analysis.complexity.profile_model`.
    """
    shape = tuple(int(v) for v in input_shape)
    entry = get_attention_entry(name)
    with torch.device(device):
        module = build_attention_module(name, shape[1], scope)
    _materialise_lazy(module, shape)
    figures = profile_model(module, shape, latency=latency, warmup=warmup, repeat=repeat,
                            on_progress=on_progress)
    table = load_ranet_table3()
    report = {
        "module": name,
        "scope": scope,
        "counts": SCOPE_NOTES[scope],
        **figures,
        "device": device,
        "paper": table["rows"].get(name),
        "paper_source": table["source"],
        "paper_input_shape": table["input_shape"],
    }
    if entry.counts.get(scope):
        report["counts"] = entry.counts[scope]
    if entry.cases:
        keys = ("gflops", "gmacs", "peak_memory_forward_mib", "peak_memory_train_mib")
        first, *others = entry.cases
        report["cases"] = [{"case": first, "regions": _regions_of(module, shape),
                            **{key: figures[key] for key in keys}}]
        report["cases"] += [case_figures(name, scope, shape, device, case) for case in others]
    return report


def _regions_of(module: nn.Module, shape: tuple[int, ...]) -> int | None:
    return module.regions(shape[-2], shape[-1]) if hasattr(module, "regions") else None


def case_figures(name: str, scope: str, shape: tuple[int, ...], device: str, case: str) -> dict:
    """FLOPs and peak memory of one input case of a value-dependent module, with the number
    of regions the case forms (None for a module without regions)."""
    from gsbench.analysis.complexity import count_flops, measure_peak_memory

    with torch.device(device):
        module = build_attention_module(name, shape[1], scope, case)
    flops = count_flops(module, shape)
    forward, train = (measure_peak_memory(module, shape, backward=b) for b in (False, True))
    return {"case": case, "regions": _regions_of(module, shape), "gflops": flops.gflops,
            "gmacs": flops.gmacs, "peak_memory_forward_mib": forward.mib,
            "peak_memory_train_mib": train.mib}


class HeadOnMap(nn.Module):
    """A decode head fed with one map as c5 (and its first half of channels as c4); returns the
    main logits (DANet's head returns a dict)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        low = x[:, : x.shape[1] // 2]
        logits = self.head([low, low, low, x])
        return logits["out"] if isinstance(logits, dict) else logits


# --- the methods of RANet Table 3 ------------------------------------------------------------------


def _ccnet_head(in_channels: int) -> nn.Module:
    return HeadOnMap(CCHead(in_channels, HEAD_NUM_CLASSES))


@register_attention_module("ccnet", head=_ccnet_head,
                           description="CCNet recurrent criss-cross attention, R = 2")
def _ccnet_module(in_channels: int) -> nn.Module:
    return RecurrentCrissCrossAttention(in_channels, recurrence=2)


def _danet_head(in_channels: int) -> nn.Module:
    return HeadOnMap(DAHead(in_channels, HEAD_NUM_CLASSES))


@register_attention_module("danet", head=_danet_head,
                           description="DANet position + channel attention (PAM + CAM)")
def _danet_module(in_channels: int) -> nn.Module:
    return DualAttention(in_channels)


class _AsymmetricPair(nn.Module):
    """ANN's two blocks on one map: AFNB (the map as both levels), then APNB."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.fusion = AFNB(in_channels, in_channels, in_channels, channels=256)
        self.context = APNB(in_channels, in_channels, channels=256)

    def forward(self, x: Tensor) -> Tensor:
        return self.context(self.fusion(x, x))


def _annet_head(in_channels: int) -> nn.Module:
    return HeadOnMap(ANNHead(in_channels // 2, in_channels, HEAD_NUM_CLASSES))


@register_attention_module("annet", head=_annet_head,
                           description="Asymmetric non-local: AFNB + APNB, pyramid 1/3/6/8")
def _annet_module(in_channels: int) -> nn.Module:
    return _AsymmetricPair(in_channels)


def _psanet_head(in_channels: int) -> nn.Module:
    return HeadOnMap(PSAHead(in_channels, HEAD_NUM_CLASSES))


@register_attention_module(
    "psanet", head=_psanet_head,
    description="PSANet bi-directional PSA, shrink 2, full over-complete mask")
def _psanet_module(in_channels: int) -> nn.Module:
    return PointwiseSpatialAttention(in_channels, in_channels // 4, "bi", False, None, 2)


def _nonlocal_head(in_channels: int) -> nn.Module:
    return HeadOnMap(NonLocalHead(in_channels, HEAD_NUM_CLASSES))


@register_attention_module("nonlocal", head=_nonlocal_head,
                           description="Non-local block, embedded Gaussian, C/2 inner channels")
def _nonlocal_module(in_channels: int) -> nn.Module:
    return NonLocalBlock(in_channels)


# RANet: the released form (the one whose size RANet Table 3 prints), with score maps that form a
# chosen number of regions.

#: Input cases of the ``ranet`` entry: the number of Voronoi cells of the synthetic score maps.
#: The paper counts "400 pixels in each region, on average" (Sec. 5.2): 24 regions on a 97 x 97
#: map; 200 cells give hundreds of regions; one cell without boundaries gives one region.
RANET_CASES = {"tens": {"cells": 24}, "hundreds": {"cells": 200}, "single": {"cells": 1}}


def region_layout_logits(height: int, width: int, cells: int, num_classes: int = 19,
                         seed: int = 0, margin: float = 12.0) -> tuple[Tensor, Tensor]:
    """Two-class boundary logits and class logits (1 x 2 x h x w, 1 x K x h x w) of a map cut
    into ``cells`` Voronoi cells around random centres: B ~ 1 on the pixels whose right or
    lower neighbour lies in another cell, ~ 0 elsewhere; one confident class per cell (cell
    index modulo K). Convex cells with confident classes and thin boundaries group into about
    one region each, as a trained RANet's maps of a street scene do; ``cells=1`` gives one
    class and no boundary: a single region."""
    boundary = torch.zeros(1, 2, height, width)
    classes = torch.zeros(1, num_classes, height, width)
    if cells <= 1:
        boundary[0, 0] = margin
        classes[0, 0] = margin
        return boundary, classes
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(cells, 2, generator=generator) * torch.tensor([height, width])
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pixels = torch.stack([ys, xs], -1).float().view(-1, 1, 2)
    cell = ((pixels - centres) ** 2).sum(-1).argmin(1).view(height, width)
    edge = torch.zeros(height, width, dtype=torch.bool)
    edge[:, :-1] |= cell[:, :-1] != cell[:, 1:]
    edge[:-1] |= cell[:-1] != cell[1:]
    boundary[0, 1] = torch.where(edge, margin, -margin)
    classes[0] = F.one_hot(cell % num_classes, num_classes).permute(2, 0, 1) * margin
    return boundary, classes


class LayoutScores(nn.Module):
    """Stands in for RANet's score heads: the logits of :func:`region_layout_logits` at the
    input's size, plus 0 x the input so that backward runs through RCB as in training."""

    def __init__(self, cells: int, num_classes: int = HEAD_NUM_CLASSES):
        super().__init__()
        self.cells = cells
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        boundary, classes = region_layout_logits(x.shape[-2], x.shape[-1], self.cells,
                                                 self.num_classes)
        zero = 0 * x[:, :1]
        return boundary.to(x) + zero, classes.to(x) + zero

    boundary_probability = staticmethod(lambda logits: torch.softmax(logits, dim=1)[:, 1])


def _count_regions(attention: RegionAttention, height: int, width: int) -> int:
    """The number of regions RCB forms on the layout of ``attention``'s score heads."""
    with torch.no_grad():
        boundary, classes = attention.score_heads(torch.zeros(1, 1, height, width))
        b = attention.score_heads.boundary_probability(boundary).reshape(-1)
        prob = torch.softmax(classes, 1)[0].reshape(classes.shape[1], -1).T
        return int(attention.regions(b, prob, height, width).max()) + 1


class _RegionAttentionContext(nn.Module):
    """RANet's region attention as released: the 3x3 conv from the map to 512 channels
    (``feats_conv``), RCB and RIB with their learned layers; score maps from a layout of
    ``cells`` cells. On the 2048-channel stage-5 map it holds the 21.24 M parameters that
    RANet Table 3 prints as +21 M."""

    def __init__(self, in_channels: int, cells: int = 24):
        super().__init__()
        self.reduce = conv_bn_leaky(in_channels, 512)
        self.attention = RegionAttention(512, HEAD_NUM_CLASSES, **RELEASED_FORMS)
        self.attention.score_heads = LayoutScores(cells)

    def forward(self, x: Tensor) -> Tensor:
        a = self.reduce(x)
        return self.attention(a, a)[0]

    def regions(self, height: int, width: int) -> int:
        return _count_regions(self.attention, height, width)


class _RANetHeadOnMap(nn.Module):
    """The whole released RANet decode head with the map as c5 (and every other level),
    returning the logits; score maps from a layout of ``cells`` cells."""

    def __init__(self, in_channels: int, cells: int = 24):
        super().__init__()
        self.head = RANetHead(in_channels, HEAD_NUM_CLASSES, **RELEASED_FORMS)
        self.head.context.score_heads = LayoutScores(cells)

    def forward(self, x: Tensor) -> Tensor:
        return self.head([x, x, x, x])["out"]

    def regions(self, height: int, width: int) -> int:
        return _count_regions(self.head.context, height, width)


register_attention_module(
    "ranet", head=_RANetHeadOnMap, cases=RANET_CASES,
    counts={"module": "RANet's region attention as released: the 3x3 conv from the map to 512 "
                      "channels (feats_conv), RCB and RIB with the query / value / collect / "
                      "interact / distribute convs; no fusion conv, no classifier (on a "
                      "2048-channel map: the +21 M of RANet Table 3)"},
    description="RANet RCB + RIB as released (feats_conv, learned RIB layers, official RCB), "
                "K = 8, score maps of 24 / 200 / 1 Voronoi cells",
)(_RegionAttentionContext)
