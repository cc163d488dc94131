"""Test protocols: how a trained model's logits become one prediction per image.

A :class:`TestProtocol` is one small, explicit description: a named *procedure* (the semantics of
one code base's test script, :data:`PROCEDURES`) and its *parameters* - whole image or sliding
windows (``mode``), the window ``crop_size`` and ``stride``, the test ``scales`` and the resize
rule that turns a scale into an image size (``base_size``), horizontal ``flip``, and for mmseg
whether logits are resized back with ``align_corners``. The procedure fixes what the code bases
differ in and what no flag should mix: the padding of an image smaller than the window, whether
the mirror image is taken per window or per image, and whether logits or probabilities are
averaged over mirrors, windows and scales. Each procedure restates one official script:

============  ===================================================================================
gsbench       gsbench's own: image scaled by round(s x H), round(s x W) (bilinear, half-pixel);
              windows zero-padded at the bottom/right (zero = the mean colour after
              normalisation); the mirror image batched with the original and their *logits*
              averaged at the scaled size; logits of overlapping windows averaged; logits resized
              back once per scale, softmax, *probabilities* averaged over scales.
semseg        hszhao/semseg ``tool/test.py`` (``test``, ``scale_process``, ``net_process``): long
              side round(s x base_size), the other round(long / L x l) (``cv2.resize``
              INTER_LINEAR); padded *centred* with the mean up to the crop; each window batched
              with its mirror, softmax of both averaged; *probabilities* averaged over windows,
              padding cut off, probabilities resized back (INTER_LINEAR) and averaged over
              scales. The released "ss" numbers include the flip, so flip defaults to on.
psanet-caffe  hszhao/PSANet ``evaluation/`` (``eval_sub.m``, ``scale_process.m``,
              ``caffe_process.m``, ``pre_img.m``), the code behind PSANet's tables: long side
              base_size x s + 1 (MATLAB ``round`` for the other side), MATLAB ``imresize``
              bilinear (antialiased when shrinking); padded at the bottom/right with the mean;
              per window softmax(z + mirror(z_mirror)) (*summed* logits); probabilities averaged
              over windows, resized back with ``imresize``, renormalised to sum 1, averaged over
              scales. Flip defaults to on (the script always mirrors).
toolbox       the RANet / CCNet ``evaluate.py`` (``predict_sliding``, ``predict_whole``,
              ``predict_multiscale``): image zoomed by s (``ndimage.zoom(order=1)``, corner
              aligned); windows of stride ceil(crop x 2/3) zero-padded at the bottom/right;
              *logits* averaged over windows, over the image and its mirror (0.5 x (z + z_m)),
              zoomed back and averaged over scales.
mmseg         open-mmlab/mmsegmentation (``EncoderDecoder.whole_inference`` /
              ``slide_inference``, ``BaseSegmentor.postprocess_result``, the multi-scale and
              flip merge of ``SegTTAModel`` / 0.x ``aug_test``): each scale's size fits the image
              keep-ratio inside base_size x s (``rescale_size``, ``int(x + 0.5)``; without
              base_size the image is scaled by s); sliding windows are *not* padded (an image
              smaller than the crop is fed as the smaller patch); window *logits* averaged;
              every view (scale, mirror) resized back to the image (``align_corners`` as the
              model's head), softmax, *probabilities* averaged over views.
============  ===================================================================================

The window grid is the same in every code base: windows start every ``stride`` pixels and the
last one is shifted back to end at the border (``ceil((size - crop) / stride) + 1`` windows).
The stride defaults to ceil(2/3 x crop) (semseg's ``stride_rate``, the toolbox's 1/3 overlap,
mmseg's 513 for 769). Images are resized as normalised float tensors; the official scripts resize
the 8-bit image (semseg: float), which differs only by its rounding to 8 bits.

A recipe records its default protocol in a ``test:`` section (:data:`RECIPE_TYPES`); ``gsbench
eval RUN`` follows it unless flags change it (:func:`apply_changes`). Pure Python, no torch: the
recipes and the tables read protocols without loading the models; the inference engine
(:mod:`gsbench.engine.inference`) implements them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gsbench.errors import GsbenchError

#: Whole-image inference or sliding windows.
MODES = ("whole", "slide")


@dataclass(frozen=True)
class Procedure:
    """The semantics of one code base's test script (see the module docstring)."""

    name: str
    #: the official files it restates
    source: str
    modes: tuple[str, ...]
    default_mode: str
    default_flip: bool
    #: how a scale becomes an image size: ``image`` (round(s x H), round(s x W)),
    #: ``long-side`` (semseg), ``long-side+1`` (PSANet Caffe), ``fit`` (mmseg ``rescale_size``)
    scale_rule: str
    #: how images and scores are resized: ``half-pixel`` (bilinear, align_corners=False; cv2
    #: INTER_LINEAR), ``corners`` (align_corners=True; ``ndimage.zoom(order=1)``), ``matlab``
    #: (MATLAB ``imresize`` bilinear, antialiased when shrinking)
    resize: str
    #: an image smaller than the window: ``bottom-right`` or ``centre`` padding with the mean
    #: colour, or ``none`` (the smaller patch is fed as it is)
    padding: str
    #: ``image``: the mirror image is a view of its own; ``window``: each window with its mirror
    flip_form: str
    #: how the mirror joins the original: ``logits`` (mean of logits), ``probabilities`` (mean of
    #: softmax), ``summed-logits`` (softmax of the sum of logits, PSANet Caffe)
    flip_merge: str
    #: what overlapping windows average: ``logits`` or ``probabilities``
    window_merge: str
    #: what the scales (and views) average: ``logits`` or ``probabilities``
    scale_merge: str
    #: whether ``base_size`` applies (the long side, or mmseg's test scale)
    uses_base_size: bool

    def describe(self) -> dict[str, str]:
        """The semantics as plain values (recorded in metrics.json beside the parameters)."""
        return {key: getattr(self, key) for key in (
            "scale_rule", "resize", "padding", "flip_form", "flip_merge", "window_merge",
            "scale_merge")}


#: The named procedures, by name (the module docstring describes each).
PROCEDURES: dict[str, Procedure] = {p.name: p for p in (
    Procedure("gsbench", "gsbench/engine/inference.py", MODES, "whole", False, "image",
              "half-pixel", "bottom-right", "image", "logits", "logits", "probabilities", False),
    Procedure("semseg", "hszhao/semseg tool/test.py (test, scale_process, net_process)",
              ("slide",), "slide", True, "long-side", "half-pixel", "centre", "window",
              "probabilities", "probabilities", "probabilities", True),
    Procedure("psanet-caffe", "hszhao/PSANet evaluation/eval_sub.m, scale_process.m, "
              "caffe_process.m, pre_img.m", ("slide",), "slide", True, "long-side+1", "matlab",
              "bottom-right", "window", "summed-logits", "probabilities", "probabilities", True),
    Procedure("toolbox", "speedinghzl/CCNet and dingguo1996/RANet evaluate.py (predict_sliding, "
              "predict_whole, predict_multiscale)", MODES, "slide", False, "image", "corners",
              "bottom-right", "image", "logits", "logits", "logits", False),
    Procedure("mmseg", "open-mmlab/mmsegmentation EncoderDecoder.whole_inference / "
              "slide_inference, BaseSegmentor.postprocess_result, SegTTAModel.merge_preds",
              MODES, "whole", False, "fit", "half-pixel", "none", "image", "probabilities",
              "logits", "probabilities", True),
)}
DEFAULT_PROCEDURE = "gsbench"

#: The ``test:`` section of a recipe: each key with the type a recipe writes
#: (:mod:`gsbench.recipes` validates it like the rest of the recipe).
RECIPE_TYPES: dict[str, Any] = {
    "procedure": str,
    "mode": str | None,
    "scales": list[float],
    "flip": bool | None,
    "crop_size": list[int] | None,
    "stride": list[int] | None,
    "base_size": list[int] | None,
    "align_corners": bool,
}


def default_stride(crop_size: tuple[int, int]) -> tuple[int, int]:
    """2/3 of the crop, rounded up (semseg ``ceil(crop * 2/3)``, the toolbox's 1/3 overlap,
    mmseg's 513 for 769)."""
    return (math.ceil(crop_size[0] * 2 / 3), math.ceil(crop_size[1] * 2 / 3))


def _pair(value: Any, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0
                               for v in values):
        raise GsbenchError(f"test.{key} must be two positive integers [height, width], "
                           f"got {value!r}")
    return (values[0], values[1])


def _round_half_up(value: float) -> int:
    """MATLAB's ``round`` for the positive sizes it is used on (half away from zero)."""
    return int(math.floor(value + 0.5))


def _float32(value: float) -> float:
    """``value`` rounded to single precision (MATLAB's ``single(...)`` in ``eval_sub.m``)."""
    return struct.unpack("f", struct.pack("f", value))[0]


@dataclass(frozen=True)
class TestProtocol:
    """One test protocol: a :data:`PROCEDURES` name and its parameters.

    ``mode`` and ``flip`` left as None take the procedure's defaults. ``crop_size`` None means
    the run's training crop (``data.crop_size``); ``stride`` None means ceil(2/3 x crop), and a
    stride equal to that is stored as None (one setting, one name).
    ``base_size`` is ``[long]`` (semseg, PSANet Caffe: the long side at scale 1; mmseg: fit
    inside long x long) or ``[long, short]`` (mmseg's test scale, e.g. ``[2048, 1024]``); None
    means the image's own size. ``align_corners`` (mmseg only) resizes logits back as the
    model's head does with align_corners=True (mmseg's 769x769 models).
    """

    __test__ = False  # not a pytest test class, whatever its name

    procedure: str = DEFAULT_PROCEDURE
    mode: str | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool | None = None
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    base_size: tuple[int, ...] | None = None
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.procedure not in PROCEDURES:
            close = difflib.get_close_matches(str(self.procedure), list(PROCEDURES), n=1)
            hint = f" (closest: {close[0]})" if close else ""
            raise GsbenchError(f"test.procedure {self.procedure!r} is none of "
                               f"{', '.join(PROCEDURES)}{hint}")
        info = PROCEDURES[self.procedure]

        def set_(name: str, value: Any) -> None:  # how a frozen dataclass sets its fields
            object.__setattr__(self, name, value)

        mode = info.default_mode if self.mode is None else self.mode
        if mode not in info.modes:
            raise GsbenchError(f"test.mode {mode!r}: procedure {self.procedure} runs "
                               f"{' or '.join(info.modes)}")
        set_("mode", mode)
        set_("flip", info.default_flip if self.flip is None else bool(self.flip))
        try:
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            raise GsbenchError(f"test.scales {self.scales!r}: expected numbers") from None
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise GsbenchError(f"test.scales {list(self.scales)}: need at least one scale, "
                               "all finite and > 0")
        set_("scales", scales)
        set_("crop_size", _pair(self.crop_size, "crop_size"))
        set_("stride", _pair(self.stride, "stride"))
        if mode == "whole" and (self.crop_size is not None or self.stride is not None):
            raise GsbenchError("test.crop_size and test.stride are the windows of mode slide; "
                               "mode is whole")
        if self.crop_size is not None and self.stride is not None:
            if self.stride[0] > self.crop_size[0] or self.stride[1] > self.crop_size[1]:
                raise GsbenchError(f"test.stride {list(self.stride)} is larger than "
                                   f"test.crop_size {list(self.crop_size)}: windows would leave gaps")
            if self.stride == default_stride(self.crop_size):
                set_("stride", None)  # the default: one setting, one name
        if self.base_size is not None:
            base = list(self.base_size) if not isinstance(self.base_size, int) else [self.base_size]
            longest = 2 if self.procedure == "mmseg" else 1
            if not info.uses_base_size:
                raise GsbenchError("test.base_size applies to "
                                   + ", ".join(n for n, p in PROCEDURES.items() if p.uses_base_size)
                                   + f"; procedure {self.procedure} scales the image itself")
            if not 1 <= len(base) <= longest or any(
                    isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in base):
                form = "[long] or [long, short]" if longest == 2 else "[long]"
                raise GsbenchError(f"test.base_size must be {form} in positive pixels for "
                                   f"procedure {self.procedure}, got {self.base_size!r}")
            set_("base_size", tuple(base))
        if not isinstance(self.align_corners, bool):
            raise GsbenchError(f"test.align_corners must be true or false, got {self.align_corners!r}")
        if self.align_corners and self.procedure != "mmseg":
            raise GsbenchError(f"test.align_corners is mmseg's (its heads' resize); procedure "
                               f"{self.procedure} resizes with {info.resize}")

    # --- reading --------------------------------------------------------------------------------
    @property
    def info(self) -> Procedure:
        """The procedure's semantics."""
        return PROCEDURES[self.procedure]

    @property
    def slide(self) -> bool:
        return self.mode == "slide"

    @property
    def multi_scale(self) -> bool:
        return self.scales != (1.0,)

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a recipe's ``test:`` section writes it."""
        return {
            "procedure": self.procedure,
            "mode": self.mode,
            "scales": list(self.scales),
            "flip": self.flip,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "stride": None if self.stride is None else list(self.stride),
            "base_size": None if self.base_size is None else list(self.base_size),
            "align_corners": self.align_corners,
        }

    @property
    def window_stride(self) -> tuple[int, int] | None:
        """The stride of the windows: ``stride``, else ceil(2/3 x crop) (None without a crop)."""
        if self.stride is not None:
            return self.stride
        return None if self.crop_size is None else default_stride(self.crop_size)

    def with_crop(self, train_crop: tuple[int, int] | list[int] | None) -> TestProtocol:
        """The protocol with the window crop filled in (``crop_size`` None: the run's training
        crop ``train_crop``), as the inference engine needs it; whole-image protocols
        unchanged."""
        if not self.slide or self.crop_size is not None:
            return self
        crop = _pair(train_crop, "crop_size")
        if crop is None:
            raise GsbenchError("sliding windows need a crop size: give test.crop_size (--crop)")
        return dataclasses.replace(self, crop_size=crop)

    # --- the image size at each scale -----------------------------------------------------------
    def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        """The (height, width) an image of ``height x width`` is resized to at ``scale``."""
        rule = self.info.scale_rule
        if rule == "image":  # gsbench round(); the toolbox's ndimage.zoom rounds the same way
            return max(1, round(height * scale)), max(1, round(width * scale))
        if rule == "long-side":  # semseg tool/test.py:193-200, Python round
            long = round(scale * (self.base_size[0] if self.base_size else max(height, width)))
            if height > width:
                return long, max(1, round(long / height * width))
            return max(1, round(long / width * height)), long
        if rule == "long-side+1":  # PSANet eval_sub.m:35-42, single precision, MATLAB round
            base = self.base_size[0] if self.base_size else max(height, width)
            long = _round_half_up(base * scale + 1)
            if height > width:
                return long, max(1, _round_half_up(_float32(_float32(long / height) * width)))
            return max(1, _round_half_up(_float32(_float32(long / width) * height))), long
        # fit (mmseg): the 0.x MultiScaleFlipAug target int(W_test * r), int(H_test * r), or the
        # image scaled by r (1.x TTA); then mmcv.rescale_size keeps the ratio inside it
        if self.base_size:
            long_edge, short_edge = self.base_size[0], self.base_size[-1]
            target = (int(long_edge * scale), int(short_edge * scale))
        else:
            target = (int(width * scale + 0.5), int(height * scale + 0.5))
        factor = min(max(target) / max(height, width), min(target) / min(height, width))
        return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


#: The keys :func:`apply_changes` accepts (the fields of :class:`TestProtocol`).
PROTOCOL_KEYS = tuple(f.name for f in dataclasses.fields(TestProtocol))


def apply_changes(base: TestProtocol, changes: Mapping[str, Any]) -> TestProtocol:
    """``base`` (a run's recorded protocol) with the values given in ``changes`` (the flags of
    ``gsbench eval``; None means not given).

    Naming a ``procedure`` starts from that procedure's defaults: nothing of ``base`` is kept,
    so that a written command line means the same whatever the run recorded. Switching to
    whole-image inference drops the base's windows."""
    given = {key: value for key, value in changes.items() if value is not None}
    unknown = sorted(set(given) - set(PROTOCOL_KEYS))
    if unknown:
        raise GsbenchError(f"test protocol has no key {', '.join(unknown)}")
    if "procedure" in given:
        return TestProtocol(**given)
    values = {key: getattr(base, key) for key in PROTOCOL_KEYS}
    if given.get("mode") == "whole":
        values.update(crop_size=None, stride=None)
    values.update(given)
    return TestProtocol(**values)


def protocol_changes(protocol: TestProtocol, base: TestProtocol) -> dict[str, Any]:
    """The values that :func:`apply_changes` needs to turn ``base`` into ``protocol``: what
    differs, and when the procedure differs the procedure and all of ``protocol`` that is not
    that procedure's default."""
    changes: dict[str, Any] = {}
    if protocol.procedure != base.procedure:
        base = TestProtocol(protocol.procedure)
        changes["procedure"] = protocol.procedure
    elif protocol.mode == "whole" and base.mode != "whole":  # as apply_changes drops windows
        base = dataclasses.replace(base, mode="whole", crop_size=None, stride=None)
        changes["mode"] = "whole"
    for key in PROTOCOL_KEYS:
        if key != "procedure" and getattr(protocol, key) != getattr(base, key):
            changes[key] = getattr(protocol, key)
    return changes


def scale_text(scale: float) -> str:
    """A scale as it appears in folder names and on the command line: ``0.75``, ``1.0``
    (Python's shortest exact spelling, so two different scales never share a name)."""
    return repr(float(scale))


def _size_text(size: tuple[int, ...]) -> str:
    return str(size[0]) if len(set(size)) == 1 else "x".join(str(v) for v in size)


def protocol_tag_parts(protocol: TestProtocol) -> list[str]:
    """The folder-name parts of a protocol after its scales and flip: ``slide`` (with
    ``-<crop>`` and ``-s<stride>`` when given), the procedure unless gsbench's, ``b<base>``,
    ``ac`` for mmseg's align_corners."""
    parts = []
    if protocol.slide:
        part = "slide"
        if protocol.crop_size is not None:
            part += "-" + _size_text(protocol.crop_size)
        if protocol.stride is not None:
            part += "-s" + _size_text(protocol.stride)
        parts.append(part)
    if protocol.procedure != DEFAULT_PROCEDURE:
        parts.append(protocol.procedure)
    if protocol.base_size is not None:
        parts.append("b" + "x".join(str(v) for v in protocol.base_size))
    if protocol.align_corners:
        parts.append("ac")
    return parts


__all__ = ["DEFAULT_PROCEDURE", "MODES", "PROCEDURES", "PROTOCOL_KEYS", "Procedure",
           "RECIPE_TYPES", "TestProtocol", "apply_changes", "default_stride",
           "protocol_changes", "protocol_tag_parts", "scale_text"]
