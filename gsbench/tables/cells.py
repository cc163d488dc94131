"""What a paper table is once loaded: its cells, each with the setting that reproduces it.

:mod:`gsbench.tables.registry` reads the table files (``recipes/tables/*.yaml``) into these
classes; everything else in :mod:`gsbench.tables` (the computed tables, the report, ablate)
reads them. A :class:`Cell` carries every setting resolved: the paper's number, the recipe (plus
``--set`` overrides) that trains it and the cell whose run initialises it, if any, the evaluation (:attr:`Cell.evaluation`, see
:mod:`gsbench.evaluation.setting`) with the paper's test protocol (:class:`~gsbench.protocol.
TestProtocol`) and where that protocol is stated (:attr:`Cell.protocol_source`), and the metric.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsbench.engine.outputs import MAIN_OUTPUT
from gsbench.evaluation.setting import (
    DEFAULT_MS_SCALES, SINGLE_SCALE, EvalSetting, is_default_ms, scale_text,
)
from gsbench.errors import GsbenchError
from gsbench.protocol import TestProtocol, protocol_tag_parts
from gsbench.recipes import load_recipe

#: The papers: key -> (short name, venue, plain-text copy's file name in the papers folder).
PAPERS: dict[str, tuple[str, str, str]] = {
    "gpsnet": ("GPSNet", "IEEE TIP 2021", "000_dc999b7d06b15ff9.txt"),
    "gff": ("GFF", "AAAI 2020", "001_e903c52e517b761d.txt"),
    "gscnn": ("Gated-SCNN", "ICCV 2019", "002_d8963c6ce4eee698.txt"),
    "ranet": ("RANet", "NeurIPS 2020", "003_0c5a92734f975c13.txt"),
    "psanet": ("PSANet", "ECCV 2018", "004_e9b1a9deee7520e3.txt"),
}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    metric: str | None  # None for a text column (e.g. the backbone or the dilation setting)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One number of a paper's table and how gsbench reproduces it (all settings resolved)."""

    table_id: str
    row_id: str
    row_label: str
    column: str
    column_label: str
    paper_value: float | None
    metric: str
    kind: str  # "trained" (from run folders) or "static" (computed on the spot)
    dataset: str | None
    split: str
    scales: str
    flip: bool
    radius: int | None = None
    crop_factor: int | None = None
    class_name: str | None = None
    ms_scales: tuple[float, ...] | None = None  # the test scales of an ms cell (None for ss)
    output: str = MAIN_OUTPUT  # the model output scored (an auxiliary map, e.g. RANet's coarse)
    recipe: str | None = None
    overrides: tuple[str, ...] = ()
    baseline: str | None = None
    baseline_overrides: tuple[str, ...] = ()
    #: the cell whose trained model initialises this cell's (``train.init_from``): the same
    #: column of another row, as GFF Table 1's fusion rows start from the trained PSPNet
    init_from: Cell | None = None
    status: str = "ok"
    reproducible: bool = True
    reason: str | None = None
    quoted_from: str | None = None
    note: str | None = None
    #: the paper's test protocol of the cell (scales and flip included); None for a figure
    #: computed on the spot
    protocol: TestProtocol | None = None
    #: where the protocol is stated: the paper's section or the official file (or that neither
    #: states it, and what gsbench assumes)
    protocol_source: str | None = None

    @property
    def setting(self) -> str:
        """The evaluation setting in words: ``cityscapes val ms+flip r=5px``,
        ``cityscapes val ms(0.75,1.0,1.25,1.5,1.75)`` (a list other than the default),
        ``cityscapes val ss+flip slide psanet-caffe b2048`` (the test protocol's procedure,
        windows and base size, as the eval folder names them), ``cityscapes val ss
        output=coarse`` (``computed`` for a figure computed on the spot)."""
        if self.kind == "static":
            return "computed"
        scales = self.scales
        if self.ms_scales is not None and not is_default_ms(self.ms_scales):
            scales += "(" + ",".join(scale_text(s) for s in self.ms_scales) + ")"
        parts = [self.dataset or "-", self.split, scales + ("+flip" if self.flip else "")]
        if self.protocol is not None:
            parts += protocol_tag_parts(self.protocol)
        if self.output != MAIN_OUTPUT:
            parts.append(f"output={self.output}")
        if self.radius is not None:
            parts.append(f"r={self.radius}px")
        if self.crop_factor is not None:
            parts.append(f"crop={self.crop_factor}")
        if self.class_name is not None:
            parts.append(self.class_name)
        return " ".join(parts)

    @property
    def protocol_text(self) -> str:
        """The test protocol in words, every parameter spelt out: ``psanet-caffe, slide, crop =
        training crop, stride = ceil(2/3 crop), base 2048, scales 1.0, flip`` (``computed`` for
        a figure computed on the spot)."""
        p = self.protocol
        if p is None:
            return "computed"
        parts = [p.procedure, p.mode]
        if p.slide:
            parts.append("crop " + ("= training crop" if p.crop_size is None
                                    else "x".join(map(str, p.crop_size))))
            parts.append("stride " + ("= ceil(2/3 crop)" if p.stride is None
                                      else "x".join(map(str, p.stride))))
        if p.base_size is not None:
            parts.append("base " + "x".join(map(str, p.base_size)))
        parts.append("scales " + ",".join(scale_text(s) for s in p.scales))
        parts.append("flip" if p.flip else "no flip")
        if p.align_corners:
            parts.append("align_corners")
        return ", ".join(parts)

    @property
    def evaluation(self) -> EvalSetting:
        """The evaluation of a run that gives this cell's number (split, test protocol with its
        scales and flip, output): what ``gsbench ablate`` runs and where ``gsbench report``
        reads the metrics."""
        if self.protocol is not None:
            return EvalSetting(self.split, output=self.output, protocol=self.protocol)
        scales = (self.ms_scales or DEFAULT_MS_SCALES) if self.scales == "ms" else SINGLE_SCALE
        return EvalSetting(self.split, scales, self.flip, self.output)

    @property
    def reproduced_by_training(self) -> bool:
        """True when gsbench can fill the cell from run folders (a recipe that exists, data it
        prepares)."""
        return (self.kind == "trained" and self.reproducible and self.recipe is not None
                and self.status == "ok")


@dataclass(frozen=True)
class Table:
    """One paper table: its header, columns, row labels (in order) and resolved cells."""

    paper: str
    number: int
    caption: str
    path: Path
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, str], ...]  # (row id, row label)
    text: dict[tuple[str, str], str]  # (row id, text column key) -> text
    cells: tuple[Cell, ...]
    compute: str | None = None
    input_shape: tuple[int, ...] | None = None
    notes: str | None = None
    raw_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return table_id(self.paper, self.number)

    @property
    def title(self) -> str:
        name, venue, _ = PAPERS[self.paper]
        return f"{name} ({venue}) Table {self.number}: {self.caption}"

    def cell(self, row_id: str, column: str) -> Cell:
        for cell in self.cells:
            if cell.row_id == row_id and cell.column == column:
                return cell
        raise KeyError(f"{self.id}: no cell {row_id}.{column}")


def table_id(paper: str, number: int) -> str:
    """``gff.table1``: how tables are named on the command line."""
    return f"{paper}.table{number}"


def slug(text: str) -> str:
    """A row id from a method name: ``ResNet50+COLLECT(Compact)`` -> ``resnet50-collect-compact``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


@functools.lru_cache(maxsize=None)
def _resolved_recipe_cached(name: str, overrides: tuple[str, ...]):
    # a table repeats its recipes over many cells, and the registry and the report resolve each
    return load_recipe(name, overrides)


def resolved_recipe(name: str, overrides: tuple[str, ...], where: str):
    """Built-in recipe ``name`` with ``overrides``, validated; an error names ``where`` (the
    table file and key, or the cell) first."""
    try:
        return _resolved_recipe_cached(name, overrides)
    except GsbenchError as exc:
        raise GsbenchError(f"{where}: {exc}") from None


def cell_recipe(cell: Cell, baseline: bool = False):
    """The resolved :class:`~gsbench.recipes.Recipe` of a cell (or of its baseline)."""
    name, sets = (cell.baseline, cell.baseline_overrides) if baseline else (cell.recipe, cell.overrides)
    if name is None:
        raise GsbenchError(f"{cell.table_id} {cell.row_id}.{cell.column}: the cell names no recipe")
    return resolved_recipe(name, sets, f"{cell.table_id} {cell.row_id}.{cell.column}")
