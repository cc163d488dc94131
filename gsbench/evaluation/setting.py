"""What one evaluation of a trained run is, and where ``gsbench eval RUN`` writes its metrics.

An evaluation setting is the split, the test scales (one scale, 1.0, is single-scale inference),
horizontal flip, and which class-logit output of the model is scored (``"out"``, the final
prediction, or an auxiliary map a model exposes, such as RANet's coarse map C, RANet Table 4).
``gsbench eval`` writes the metrics of a setting to ``RUN/eval/<split>_<tag>/metrics.json``
(``_slide`` added after the flip part for sliding-window inference); ``gsbench report`` and
``gsbench ablate`` look for them there. :func:`eval_tag` is the one place that names the folder:

* ``ss``: single scale; ``ms``: the default multi-scale list :data:`DEFAULT_MS_SCALES`
  (0.5 .. 1.75, the list of PSANet / semseg and RANet), so runs evaluated before per-cell
  lists existed keep their folders;
* any other list spells out its scales, sorted: ``ms-0.75-1.0-1.25-1.5-1.75`` (GFF, AAAI 2020,
  Sec. "Ablation Study for Improvement Strategies"), ``ms-0.5-1.0-2.0`` (Gated-SCNN's test
  submission, Sec. 4.2);
* then ``_flip``, ``_slide``, and the output's name unless it is ``out`` (``val_ss_coarse``).

Kept free of torch so that the table registry can use it without loading the models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gsbench.engine.outputs import MAIN_OUTPUT
from gsbench.errors import GsbenchError

#: The multi-scale test scales of PSANet / semseg, RANet and mmsegmentation's Cityscapes TTA.
DEFAULT_MS_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
#: The scales of single-scale inference.
SINGLE_SCALE: tuple[float, ...] = (1.0,)


def scale_text(scale: float) -> str:
    """A scale as it appears in folder names and on the command line: ``0.75``, ``1.0``
    (Python's shortest exact spelling, so two different scales never share a name)."""
    return repr(float(scale))


def parse_scales(text: str | Sequence[float]) -> tuple[float, ...]:
    """Scales from ``"0.5,0.75,1.0"`` (or a sequence), for CLI options and recipes."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        scales = tuple(float(part) for part in parts if str(part).strip())
    except ValueError:
        raise GsbenchError(f"scales {text!r}: expected comma-separated numbers like 0.5,1.0,1.5")
    if not scales or any(s <= 0 for s in scales):
        raise GsbenchError(f"scales {text!r}: need at least one scale, all > 0")
    return scales


def is_default_ms(scales: Sequence[float]) -> bool:
    """Whether ``scales`` is :data:`DEFAULT_MS_SCALES` (in any order)."""
    return sorted(float(s) for s in scales) == sorted(DEFAULT_MS_SCALES)


def scales_tag(scales: Sequence[float]) -> str:
    """``ss``, ``ms`` (the default list) or ``ms-<s1>-<s2>...`` (sorted)."""
    values = tuple(float(s) for s in scales)
    if values == SINGLE_SCALE:
        return "ss"
    if is_default_ms(values):
        return "ms"
    return "ms-" + "-".join(scale_text(s) for s in sorted(values))


def eval_tag(scales: Sequence[float], flip: bool = False, slide: bool = False,
             output: str = MAIN_OUTPUT) -> str:
    """The folder name part of an evaluation setting: ``ss``, ``ms_flip``,
    ``ms-0.75-1.0-1.25-1.5-1.75_flip_slide``, ``ss_coarse`` ... (see the module docstring)."""
    parts = [scales_tag(scales)]
    if flip:
        parts.append("flip")
    if slide:
        parts.append("slide")
    if output != MAIN_OUTPUT:
        parts.append(output)
    return "_".join(parts)


@dataclass(frozen=True)
class EvalSetting:
    """One evaluation of a run: what ``gsbench eval RUN`` is told and where it writes."""

    split: str = "val"
    scales: tuple[float, ...] = SINGLE_SCALE
    flip: bool = False
    output: str = MAIN_OUTPUT

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise GsbenchError(f"evaluation scales {self.scales!r}: need at least one, all > 0")
        object.__setattr__(self, "scales", scales)

    @property
    def multi_scale(self) -> bool:
        return self.scales != SINGLE_SCALE

    def tag(self, slide: bool = False) -> str:
        """See :func:`eval_tag`."""
        return eval_tag(self.scales, self.flip, slide, self.output)

    def folder(self, run_dir: Path, slide: bool = False) -> Path:
        """``RUN/eval/<split>_<tag>``: where ``gsbench eval`` writes this setting's metrics."""
        return Path(run_dir) / "eval" / f"{self.split}_{self.tag(slide)}"



__all__ = ["DEFAULT_MS_SCALES", "EvalSetting", "SINGLE_SCALE", "eval_tag",
           "is_default_ms", "parse_scales", "scale_text", "scales_tag"]
