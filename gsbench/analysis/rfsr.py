"""Receptive field (RF) and sample rate (SR) of atrous context modules (GPSNet, TIP 2021, App. A).

The input positions a module's output samples are found by walking every path of atrous layers:
a 3x3 layer of dilation r adds an offset from {-r, 0, r}^2 to each position of its input, and a
layer reading several inputs (a concatenation, a sum or a gate) reads the union of their
positions. For a module with output position set P (offsets from the output pixel):

    RF = side length of the square bounding P = max_x - min_x + 1      (Eq. 4, 5, 7, 8, 9)
    SR = |P| / RF^2

- ASPP (Eq. 5): parallel branches, P = union_b K(r_b); for distinct rates
  |P| = B * k^2 - B + 1.
- DenseASPP (Eq. 8): layer l reads the input and every earlier layer, P_l = (union of its
  inputs' sets) + K(r_l); P = union_l P_l.
- GPS / SuperNet (Eq. 9): layer (b, l) reads layer l - 1 of branch b (the squeeze for l = 1)
  and layer l of branch b - 1 (see :mod:`gsbench.models.gpsnet`); P_b = union_l P_{b,l},
  P = union_b P_b, RF = max_b RF_b. The gate reweights positions but selects none away, so
  the gated and ungated SuperNet have the same RF and SR. A SuperNet of one branch is a
  serial chain of atrous layers (Eq. 7): every 3x3 kernel holds the offset (0, 0), so each
  layer's set contains the one before and the union is the last layer's set.

Sets are boolean canvases centred on the output pixel; each layer is the OR of its input
canvas shifted by the kernel's offsets (nine array shifts per layer, no loop over positions).

Table 4 of the paper (RF / SR / parameters, dilations {1, 12, 24, 36} unless tuned) is
reproduced by :func:`table4` for ASPP, the untuned SuperNet / GPS (SR 0.1241 where the paper
prints 0.125: 5,953 positions, the most any path reaches) and, in RF and SR, DenseASPP. Two
figures are not, for reasons stated in :data:`TABLE4_NOTES` and printed beside them:

- DenseASPP's 25.6 M parameters depend on layer widths the paper does not state; DenseASPP's
  released widths (1x1 to 512, 3x3 to 128 per layer) on 2048 channels give 6.95 M of convolution
  weights. The only reading that gives 25.6 M is four dense 3x3 layers of ASPP's width 256
  without the 1x1 bottlenecks, plus a 1x1 projection 3072 -> 1024 (25.56 M), which is not
  DenseASPP's structure (docs/fidelity.md, "GPSNet, OCNet and DenseASPP").
- Tuned GPS {(1, 3), (11, 13), (23, 29), (33, 37)}: the paper gives RF 199 / SR 0.843. The
  longest path of the grid, (1,1) -> (2,1) -> (3,1) -> (4,1) -> (4,2), spans
  2 * (1 + 11 + 23 + 33 + 37) + 1 = 211 positions, and no path of the grid has the dilation sum
  99 that an RF of 199 needs; the same walk gives the paper's 219 for the untuned grid. The
  walk reaches 33,833 positions: SR 0.760 of 211^2 (0.854 of the paper's 199^2).

Parameter counts are :func:`~gsbench.analysis.complexity.count_parameters` of the real modules
(convolutions + BN) built on ``in_channels`` = 2048 input channels (ResNet-101 stage 5), as
Table 4 implies: ASPP counts its four 3x3 atrous layers 2048 -> 256 (no 1x1, image pooling or
projection), DenseASPP the :class:`~gsbench.models.denseaspp.DenseASPPBlock`, SuperNet / GPS
the :class:`~gsbench.models.gpsnet.SuperNet` (squeeze 256, excitation 1024).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from gsbench.analysis.complexity import count_parameters
from gsbench.errors import GsbenchError
from gsbench.models.deeplab import ASPP
from gsbench.models.denseaspp import DenseASPPBlock
from gsbench.models.gpsnet import TUNED_DILATIONS, UNTUNED_DILATIONS, SuperNet, check_dilations
from gsbench.recipes import RECIPES_DIR

KERNEL_SIZE = 3
#: Input channels assumed for the parameter counts: ResNet-101's stage-5 features.
DEFAULT_IN_CHANNELS = 2048
#: The paper's Table 4 figures (a data file, shown beside the computed rows).
TABLE4_FILE = RECIPES_DIR / "tables" / "gpsnet_table4.yaml"

TABLE4_NOTES = {
    "DenseASPP": (
        "parameters not reproduced: the paper does not state DenseASPP's widths; the release's "
        "(1x1 to 512, 3x3 to 128 per layer, on C = {in_channels}) give {params_m:.1f} M; only 3x3 "
        "layers of growth 256 without bottleneck + a 1x1 3072->1024 projection give 25.6 M"),
    "SuperNet": (
        "SR {sr:.4f} = {positions} positions / 219^2 rounds to 0.124; the paper's 0.125 would "
        "need about 5995 positions, more than any path of the grid reaches"),
    "Untuned GPS": (
        "SR as SuperNet (the gates reweight positions, they add none); parameters include the "
        "six gates"),
    "Tuned GPS": (
        "RF / SR not reproduced: the grid's longest path (1,1)-(2,1)-(3,1)-(4,1)-(4,2) spans "
        "2 x (1+11+23+33+37) + 1 = 211 and no path has the dilation sum 99 that RF 199 needs "
        "(the same walk gives the paper's 219 untuned); {positions} positions = SR {sr:.3f} of "
        "211^2, {sr_paper_rf:.3f} of 199^2"),
}


# --- position sets ----------------------------------------------------------------------------

def _canvas(reach: int) -> np.ndarray:
    """An empty position set able to hold offsets up to ``reach``, with only the centre set."""
    canvas = np.zeros((2 * reach + 1, 2 * reach + 1), dtype=bool)
    canvas[reach, reach] = True
    return canvas


def _shift_or(out: np.ndarray, source: np.ndarray, dy: int, dx: int) -> None:
    """out |= source shifted by (dy, dx); bits shifted off the canvas are dropped."""
    h, w = source.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] |= source[ys, xs]


def atrous_layer(positions: np.ndarray, dilation: int,
                 kernel_size: int = KERNEL_SIZE) -> np.ndarray:
    """Positions after one k x k atrous layer of ``dilation``: P + {-r .. r step r}^2 (Eq. 4)."""
    half = (kernel_size - 1) // 2
    offsets = [dilation * (i - half) for i in range(kernel_size)]
    out = np.zeros_like(positions)
    for dy in offsets:
        for dx in offsets:
            _shift_or(out, positions, dy, dx)
    return out


def _reach(dilations: Sequence[int], kernel_size: int = KERNEL_SIZE) -> int:
    return sum(r * ((kernel_size - 1) // 2) for r in dilations)


def aspp_positions(rates: Sequence[int]) -> np.ndarray:
    """Parallel 3x3 atrous layers (Eq. 5): the union of the kernels' positions."""
    centre = _canvas(max(rates))
    return np.logical_or.reduce([atrous_layer(centre, r) for r in rates])


def denseaspp_positions(rates: Sequence[int]) -> np.ndarray:
    """Densely connected cascade (Eq. 8): layer l reads the input and all earlier layers."""
    seen = _canvas(_reach(rates))  # the input itself is part of DenseASPP's output
    for r in rates:
        seen = seen | atrous_layer(seen, r)
    return seen


def supernet_positions(grid: Sequence[Sequence[int]]) -> np.ndarray:
    """The SuperNet grid (Eq. 9): layer (b, l) reads layer l - 1 of branch b and layer l of
    branch b - 1; the union over every layer of every branch."""
    squeezed = _canvas(_reach([r for branch in grid for r in branch]))
    union = squeezed.copy()
    previous_branch: list[np.ndarray] = []
    for b, branch in enumerate(grid):
        horizontal, current = squeezed, []
        for layer, r in enumerate(branch):
            merged = horizontal if b == 0 else horizontal | previous_branch[layer]
            horizontal = atrous_layer(merged, r)
            current.append(horizontal)
            union |= horizontal
        previous_branch = current
    return union


def receptive_field(positions: np.ndarray) -> tuple[int, int, float]:
    """(RF as side length, number of sample positions, SR = positions / RF^2) of a set."""
    rows = np.flatnonzero(positions.any(axis=1))
    cols = np.flatnonzero(positions.any(axis=0))
    side = int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    count = int(positions.sum())
    return side, count, count / side ** 2


# --- modules and Table 4 ------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextModuleStats:
    """RF / SR of a context module and the parameters of the real module (2048 inputs)."""

    method: str
    dilations: str
    rf: int
    positions: int
    sr: float
    params: int
    conv_weights: int  # convolution weights alone (no BN), the count that matches Table 4
    in_channels: int

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def _counts(module: nn.Module) -> tuple[int, int]:
    return count_parameters(module), _conv_weights(module)


def _on_meta(build):
    with torch.device("meta"):  # counts only: no weights are allocated
        return build()


def format_rates(rates: Sequence[int]) -> str:
    return "{" + ", ".join(str(r) for r in rates) + "}"


def format_grid(grid: Sequence[Sequence[int]]) -> str:
    return "{" + ", ".join("(" + ", ".join(str(r) for r in b) + ")" for b in grid) + "}"


def _check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    rates = tuple(rates)
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise GsbenchError(f"dilation rates must be positive integers, got {rates!r}")
    return rates


def aspp_stats(rates: Sequence[int], in_channels: int = DEFAULT_IN_CHANNELS) -> ContextModuleStats:
    """ASPP's parallel 3x3 atrous layers (parameters: those layers of gsbench's ASPP)."""
    rates = _check_rates(rates)
    module = _on_meta(lambda: ASPP(in_channels, rates))
    params, conv = _counts(module.branches[1:])  # branches[0] is the 1x1 branch
    rf, count, sr = receptive_field(aspp_positions(rates))
    return ContextModuleStats("ASPP", format_rates(rates), rf, count, sr, params, conv, in_channels)


def denseaspp_stats(rates: Sequence[int],
                    in_channels: int = DEFAULT_IN_CHANNELS) -> ContextModuleStats:
    """DenseASPP with the released widths (1x1 to 512, 3x3 to 128)."""
    rates = _check_rates(rates)
    module = _on_meta(lambda: DenseASPPBlock(in_channels, rates))
    params, conv = _counts(module)
    rf, count, sr = receptive_field(denseaspp_positions(rates))
    return ContextModuleStats("DenseASPP", format_rates(rates), rf, count, sr, params, conv,
                              in_channels)


def supernet_stats(grid: Sequence[Sequence[int]], gate: bool, method: str | None = None,
                   in_channels: int = DEFAULT_IN_CHANNELS) -> ContextModuleStats:
    """The SuperNet (``gate=False``) or GPS module (``gate=True``) of this dilation grid."""
    grid = check_dilations(grid)
    module = _on_meta(lambda: SuperNet(in_channels, grid, gate=gate))
    params, conv = _counts(module)
    rf, count, sr = receptive_field(supernet_positions(grid))
    name = method or ("GPS" if gate else "SuperNet")
    return ContextModuleStats(name, format_grid(grid), rf, count, sr, params, conv, in_channels)


def load_table4(path: Path = TABLE4_FILE) -> list[dict]:
    """The paper's Table 4 rows: method, dilations, rf, sr, params_m."""
    try:
        rows = yaml.safe_load(path.read_text(encoding="utf-8"))["rows"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise GsbenchError(f"{path}: cannot read GPSNet Table 4 ({exc})") from None
    return rows


def table4(in_channels: int = DEFAULT_IN_CHANNELS) -> list[dict]:
    """Every row of the paper's Table 4 computed here, with the paper's figures beside and a
    note where a figure is not reproduced (a difference beyond the paper's rounding)."""
    computed = {
        "ASPP": lambda: aspp_stats([b[0] for b in UNTUNED_DILATIONS], in_channels),
        "DenseASPP": lambda: denseaspp_stats([b[0] for b in UNTUNED_DILATIONS], in_channels),
        "SuperNet": lambda: supernet_stats(UNTUNED_DILATIONS, False, "SuperNet", in_channels),
        "Untuned GPS": lambda: supernet_stats(UNTUNED_DILATIONS, True, "Untuned GPS", in_channels),
        "Tuned GPS": lambda: supernet_stats(TUNED_DILATIONS, True, "Tuned GPS", in_channels),
    }
    rows = []
    for paper in load_table4():
        stats = computed[paper["method"]]()
        row = {**stats.to_dict(), "paper_rf": paper["rf"], "paper_sr": paper["sr"],
               "paper_params_m": paper["params_m"]}
        template = TABLE4_NOTES.get(paper["method"], "")
        row["note"] = template.format(params_m=stats.params / 1e6, positions=stats.positions,
                                      in_channels=in_channels,
                                      sr=stats.sr, sr_paper_rf=stats.positions / paper["rf"] ** 2)
        rows.append(row)
    return rows


def parse_dilations(text: str) -> tuple[str, tuple]:
    """``"1,12,24,36"`` -> ("rates", (1, 12, 24, 36)) for ASPP / DenseASPP;
    ``"1,3;11,13;23,29;33,37"`` -> ("grid", ((1, 3), ...)) for SuperNet / GPS."""
    try:
        parts = [tuple(int(v) for v in part.split(","))
                 for part in text.replace(" ", "").split(";")]
    except ValueError:
        parts = []
    if not parts or any(not p or min(p) < 1 for p in parts):
        raise GsbenchError(f"--dilations {text!r}: expected positive integers like 1,12,24,36 "
                           "(ASPP / DenseASPP) or 1,3;11,13;23,29;33,37 (SuperNet / GPS branches)")
    if len(parts) == 1 and ";" not in text:
        return "rates", parts[0]
    if len({len(p) for p in parts}) != 1:
        raise GsbenchError(f"--dilations {text!r}: every branch needs the same number of layers")
    return "grid", tuple(parts)


def stats_for_dilations(text: str,
                        in_channels: int = DEFAULT_IN_CHANNELS) -> list[ContextModuleStats]:
    """The rows a ``--dilations`` setting asks for: ASPP and DenseASPP for a flat list of rates,
    SuperNet and GPS for a grid of branches."""
    kind, value = parse_dilations(text)
    if kind == "rates":
        return [aspp_stats(value, in_channels), denseaspp_stats(value, in_channels)]
    return [supernet_stats(value, False, in_channels=in_channels),
            supernet_stats(value, True, in_channels=in_channels)]

