"""What one evaluation of a trained run is, and where ``gsbench eval RUN`` writes its metrics.

An evaluation setting is the split, the test protocol (:class:`~gsbench.protocol.TestProtocol`:
procedure, whole image or sliding windows, scales, flip, resize rule) and which class-logit
output of the model is scored (``"out"``, the final prediction, or an auxiliary map a model
exposes, such as RANet's coarse map C, RANet Table 4). ``gsbench eval`` writes the metrics of a
setting to ``RUN/eval/<split>_<tag>/metrics.json``; ``gsbench report`` and ``gsbench ablate``
look for them there. :func:`protocol_tag` is the one place that names the folder, part by part:

* the scales: ``ss`` single scale; ``ms`` the default multi-scale list
  :data:`DEFAULT_MS_SCALES` (0.5 .. 1.75, the list of PSANet / semseg and RANet); any other list
  spelt out, sorted: ``ms-0.75-1.0-1.25-1.5-1.75`` (GFF, AAAI 2020, Sec. "Ablation Study for
  Improvement Strategies"), ``ms-0.5-1.0-2.0`` (Gated-SCNN's test submission, Sec. 4.2);
* ``_flip``;
* ``_slide`` for sliding windows of the run's training crop, ``_slide-705`` for windows of a
  crop given explicitly (``705x769`` if not square; named so even where it equals the training
  crop), ``-s470`` for a stride other than ceil(2/3 x crop);
* the procedure unless it is gsbench's (``_semseg``, ``_psanet-caffe``, ``_toolbox``,
  ``_mmseg``), ``_b2048`` (``_b2048x1024``) for a base size, ``_ac`` for mmseg's align_corners;
* the output's name unless it is ``out`` (``val_ss_coarse``).

So gsbench's own protocol keeps the names it always had (``val_ms_flip_slide``), and no two
settings share a folder. Kept free of torch so that the table registry can use it without
loading the models.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gsbench.engine.outputs import MAIN_OUTPUT
from gsbench.errors import GsbenchError
from gsbench.protocol import TestProtocol, protocol_tag_parts, scale_text

#: The multi-scale test scales of PSANet / semseg, RANet and mmsegmentation's Cityscapes TTA.
DEFAULT_MS_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
#: The scales of single-scale inference.
SINGLE_SCALE: tuple[float, ...] = (1.0,)


def parse_scales(text: str | Sequence[float]) -> tuple[float, ...]:
    """Scales from ``"0.5,0.75,1.0"`` (or a sequence), for CLI options and recipes."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        scales = tuple(float(part) for part in parts if str(part).strip())
    except ValueError:
        raise GsbenchError(f"scales {text!r}: expected comma-separated numbers like 0.5,1.0,1.5")
    if not scales or any(not s > 0 or s == float("inf") for s in scales):
        raise GsbenchError(f"scales {text!r}: need at least one scale, all > 0 (finite)")
    return scales


def parse_sizes(text: str, option: str, *, pair: bool) -> tuple[int, ...]:
    """Pixel sizes from ``"705"`` or ``"769,769"`` for an option such as ``--crop``: one or two
    positive integers; with ``pair`` one number means a square (``(705, 705)``)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GsbenchError(f"{option}: expected one or two integers like 769 or 512,1024, "
                           f"got {text!r}") from None
    if not 1 <= len(values) <= 2 or min(values) <= 0:
        raise GsbenchError(f"{option}: expected one or two positive integers, got {text!r}")
    return values * 2 if pair and len(values) == 1 else values


def protocol_options(*, procedure: str | None = None, slide: bool | None = None,
                     crop: str | None = None, stride: str | None = None,
                     base_size: str | None = None, ms: bool = False, scales: str | None = None,
                     flip: bool | None = None, align_corners: bool | None = None
                     ) -> dict[str, object]:
    """The test-protocol options of ``gsbench eval`` (their text as given, None where not
    given) as :class:`~gsbench.protocol.TestProtocol` values for
    :func:`~gsbench.protocol.apply_changes`: ``--scales`` gives the list, ``--ms`` alone the
    default multi-scale list."""
    return {
        "procedure": procedure,
        "mode": None if slide is None else "slide" if slide else "whole",
        "crop_size": None if crop is None else parse_sizes(crop, "--crop", pair=True),
        "stride": None if stride is None else parse_sizes(stride, "--stride", pair=True),
        "base_size": None if base_size is None else parse_sizes(base_size, "--base-size",
                                                                pair=False),
        "scales": parse_scales(scales) if scales is not None else DEFAULT_MS_SCALES if ms else None,
        "flip": flip,
        "align_corners": align_corners,
    }


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


def protocol_tag(protocol: TestProtocol, output: str = MAIN_OUTPUT) -> str:
    """The folder name part of a protocol and output: ``ss``, ``ms_flip``,
    ``ss_flip_slide-705_semseg_b2048``, ``ss_coarse`` ... (see the module docstring)."""
    parts = [scales_tag(protocol.scales)]
    if protocol.flip:
        parts.append("flip")
    parts += protocol_tag_parts(protocol)
    if output != MAIN_OUTPUT:
        parts.append(output)
    return "_".join(parts)


@dataclass(frozen=True, init=False)
class EvalSetting:
    """One evaluation of a run: what ``gsbench eval RUN`` is told and where it writes.

    ``EvalSetting(split, scales, flip, output)`` is gsbench's protocol with those scales and
    flip; ``protocol=`` gives any other (then ``scales`` and ``flip``, if given, replace the
    protocol's).
    """

    split: str
    protocol: TestProtocol
    output: str

    def __init__(self, split: str = "val", scales: Sequence[float] | None = None,
                 flip: bool | None = None, output: str = MAIN_OUTPUT, *,
                 protocol: TestProtocol | None = None) -> None:
        if protocol is None:
            protocol = TestProtocol()
        elif not isinstance(protocol, TestProtocol):
            raise TypeError(f"protocol must be a TestProtocol, got {protocol!r}")
        changes = {key: value for key, value in (("scales", scales), ("flip", flip))
                   if value is not None}
        if changes:
            protocol = dataclasses.replace(protocol, **changes)
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "output", output)

    @property
    def scales(self) -> tuple[float, ...]:
        return self.protocol.scales

    @property
    def flip(self) -> bool:
        return bool(self.protocol.flip)

    @property
    def multi_scale(self) -> bool:
        return self.protocol.multi_scale

    def tag(self) -> str:
        """See :func:`protocol_tag`."""
        return protocol_tag(self.protocol, self.output)

    def folder(self, run_dir: Path) -> Path:
        """``RUN/eval/<split>_<tag>``: where ``gsbench eval`` writes this setting's metrics."""
        return Path(run_dir) / "eval" / f"{self.split}_{self.tag()}"


__all__ = ["DEFAULT_MS_SCALES", "EvalSetting", "SINGLE_SCALE", "is_default_ms", "parse_scales",
           "parse_sizes", "protocol_options",
           "protocol_tag", "scale_text", "scales_tag"]
