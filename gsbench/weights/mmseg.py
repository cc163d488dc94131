"""open-mmlab/mmsegmentation 1.x: the released FCN, PSPNet, DeepLabV3, DeepLabV3+, NonLocal,
DANet, CCNet, ANN and PSANet models on ResNetV1c-50/101-D8 (Cityscapes 512 x 1024 and
769 x 769, ADE20K, VOC 2012 + aug), read from mmsegmentation v1.2.2 (the last 1.x release).

The files (``https://download.openmmlab.com/mmsegmentation/v0.5/<method>/<run>/<run>_<date>_
<time>-<hash>.pth``, listed by each ``configs/<method>/metafile.yaml``) were trained with mmseg
0.x and re-listed unchanged by 1.x: ``{"meta": {...}, "state_dict": {...}}`` with the keys of
the model's ``state_dict()`` (no ``module.`` prefix; ``tools/publish_model.py`` removed the
optimizer and named the file after the first 8 hex digits of its sha256). The key names and
shapes of every architecture are in ``tests/fixtures/weights/mmseg/`` (built by mmseg's own
``MODELS.build`` from each config).

mmseg -> gsbench (an mmcv ``ConvModule`` ``X.conv`` / ``X.bn`` is a gsbench ``ConvBNReLU``
``X.0`` / ``X.1``):

====================================================  ============================================
mmseg                                                 gsbench
====================================================  ============================================
``backbone.stem.{0,3,6}`` / ``stem.{1,4,7}``          ``backbone.conv{1,2,3}`` / ``bn{1,2,3}``
``backbone.layer{1-4}.*``                             the same (torchvision names)
``decode_head.conv_seg``                              ``decode_head.cls.1``
``auxiliary_head.convs.0`` / ``conv_seg``             ``aux_head.conv`` / ``aux_head.cls.1``
fcn ``convs.{0,1}``, ``conv_cat``                     ``convs.{0,1}``, ``conv_cat``
pspnet ``psp_modules.<i>.1``, ``bottleneck``          ``ppm.stages.<i>.1``, ``bottleneck``
deeplabv3(+) ``image_pool.1``, ``aspp_modules.<i>``,  ``aspp.image_pool.1``, ``aspp.branches.<i>``,
``bottleneck``                                        ``aspp.project``
deeplabv3plus ``*.depthwise_conv`` /                  ``*.depthwise`` / ``*.pointwise``;
``*.pointwise_conv``; ``c1_bottleneck``,              ``low_level``, ``fuse.<i>``
``sep_bottleneck.<i>``
nonlocal / ccnet ``convs.0``, ``convs.1``,            ``conv_in``, ``conv_out``, ``bottleneck``
``conv_cat``
nonlocal ``nl_block.{g,theta,phi}.conv``,             ``nonlocal_block.{g,theta,phi}``,
``nl_block.conv_out``                                 ``nonlocal_block.out``
ccnet ``cca.{query,key,value}_conv``,                 ``rcca.attention.{query,key,value}``,
``cca.gamma.scale`` (0-dim)                           ``rcca.attention.gamma`` ([1])
danet ``{pam,cam}_{in,out}_conv``,                    ``{pam,cam}_{in,out}``, ``{pam,cam}_cls.1``,
``{pam,cam}_conv_seg``, ``pam.<x>_project``,          ``pam.<x>``, ``pam.alpha`` / ``cam.beta``
``{pam,cam}.gamma.scale`` (0-dim)                     ([1])
ann ``{fusion,context}.stages.0.<x>_project``,        ``{fusion,context}.attention.<x>``,
``{fusion,context}.bottleneck``, ``bottleneck``       ``{fusion,context}.fuse``, ``bottleneck``
psanet ``reduce`` / ``reduce_p``, ``attention`` /     ``psa.reduce.<branch>``,
``attention_p``, ``proj``, ``bottleneck``             ``psa.attention.<branch>``, ``psa.proj``,
                                                      ``bottleneck``
====================================================  ============================================

ANN's ``context`` block shares one module for key and query (``share_key_query=True``), so the
file holds it twice, as gsbench's state dict does. Every tensor is mapped, the auxiliary head
too (gsbench has the same head; it is dropped, and listed, only for a recipe without ``aux``).

Forms the weights need (the ``*_mmseg_*`` recipes state them): the ``resnet50_v1c`` /
``resnet101_v1c`` backbone (stem 32-32-64, contracted dilation), ``fcn(concat_input=True)``,
``deeplabv3(head="mmseg")``, ``deeplabv3plus(head="mmseg")``, ``psanet(head="mmseg")`` with the
config's mask (97 x 97; 66 x 66 on ADE20K), ``danet(channel_energy="official")``, and
``align_corners: true`` for the 769 x 769 models. A recipe whose *semantics* differ from mmseg's
where the tensors would still fit (PSANet's semseg head, DANet's paper CAM energy) is refused by
:meth:`MmsegSource.check_recipe`; one whose tensors differ fails in the mapping, naming them.
DeepLabV3's paper head (a 1x1 projection, pooling last) receives a file only when its 3x3
bottleneck is a 1x1 kernel in disguise (what ``gsbench export-weights --to mmseg`` writes for
that head): the centre tap, with the input blocks reordered.

Preprocessing (``SegDataPreProcessor`` in ``configs/_base_/models/*_r50-d8.py``): BGR read ->
RGB, 0-255, mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375) = gsbench's
``Normalize``. Test procedure (``test_cfg`` and ``test_pipeline`` of each family, see
:data:`FAMILIES` and ``tests/fixtures/weights/mmseg/_protocols.json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gsbench.errors import GsbenchError
from gsbench.recipes import Recipe
from gsbench.weights.mapping import Mapping, Rule
from gsbench.weights.source import Preprocessing, Source, require

#: gsbench model -> mmseg config folder, file prefix of its configs and of its 0.x file names
METHODS: dict[str, tuple[str, str]] = {
    "fcn": ("fcn", "fcn"),
    "pspnet": ("pspnet", "pspnet"),
    "deeplabv3": ("deeplabv3", "deeplabv3"),
    "deeplabv3plus": ("deeplabv3plus", "deeplabv3plus"),
    "nonlocal": ("nonlocal_net", "nonlocal"),
    "danet": ("danet", "danet"),
    "ccnet": ("ccnet", "ccnet"),
    "annet": ("ann", "ann"),
    "psanet": ("psanet", "psanet"),
}
#: gsbench backbones mmseg's ``ResNetV1c`` expresses (the deep-stem ResNets with Bottleneck
#: blocks: mmseg's BasicBlock does not dilate its second conv) -> depth
BACKBONES: dict[str, int] = {"resnet50_v1c": 50, "resnet101_v1c": 101,
                             "resnet50": 50, "resnet101": 101}


@dataclass(frozen=True)
class Family:
    """A dataset family of mmseg's configs (``configs/_base_/datasets/<name>.py`` with its
    schedule), as the released models were trained and tested."""

    #: gsbench dataset name
    dataset: str
    #: suffix of the 1.x config names (``..._4xb2-40k_cityscapes-512x1024.py``)
    config_suffix: str
    #: GPUs x images per GPU in the config names
    batch_tag: str
    #: schedules with released files, in iterations / 1000
    schedules: tuple[int, int]
    #: (crop tag, dataset tag) of the 0.x file names (``..._512x1024_40k_cityscapes_...``)
    file_tags: tuple[str, str]
    #: training crop (height, width)
    crop: tuple[int, int]
    #: test_pipeline ``Resize(scale=(w, h), keep_ratio=True)``: the image is scaled to fit
    resize_scale: tuple[int, int]
    #: ``test_cfg``: whole-image inference, or sliding windows (crop, stride)
    slide: tuple[tuple[int, int], tuple[int, int]] | None
    #: ``align_corners`` of both heads
    align_corners: bool
    #: PSAHead ``mask_size`` of the family's PSANet config
    psa_mask: int

    @property
    def name(self) -> str:
        return self.config_suffix


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("cityscapes", "cityscapes-512x1024", "4xb2", (40, 80), ("512x1024", "cityscapes"),
           (512, 1024), (2048, 1024), None, False, 97),
    Family("cityscapes", "cityscapes-769x769", "4xb2", (40, 80), ("769x769", "cityscapes"),
           (769, 769), (2049, 1025), ((769, 769), (513, 513)), True, 97),
    Family("ade20k", "ade20k-512x512", "4xb4", (80, 160), ("512x512", "ade20k"),
           (512, 512), (2048, 512), None, False, 66),
    Family("voc2012", "voc12aug-512x512", "4xb4", (20, 40), ("512x512", "voc12aug"),
           (512, 512), (2048, 512), None, False, 97),
)}
#: the family a dataset falls back to when the recipe's crop is none of its families'
DEFAULT_FAMILY = {"cityscapes": "cityscapes-512x1024", "ade20k": "ade20k-512x512",
                  "voc2012": "voc12aug-512x512"}
#: recipe-name tag of each family (``pspnet101_mmseg_cityscapes_769``)
RECIPE_TAGS = {"cityscapes-512x1024": "cityscapes", "cityscapes-769x769": "cityscapes_769",
               "ade20k-512x512": "ade20k", "voc12aug-512x512": "voc2012"}

#: ANN's APNB (``context``) registers one module as key and query: the file holds it twice
SHARED_QUERY = "decode_head.context.stages.0.query_project."
SHARED_KEY = "decode_head.context.stages.0.key_project."

#: 0.x file names of the model zoo, e.g. ``psanet_r50-d8_512x1024_40k_cityscapes_20200606_
#: 103117-99fac37c.pth``
ZOO_FILE_NAME = re.compile(
    r"(?P<prefix>[a-z0-9]+)_r(?P<depth>50|101)-d8_(?P<crop>512x1024|769x769|512x512)_"
    r"(?P<iters>\d+)k_(?P<dataset>cityscapes|ade20k|voc12aug)_\d{8}_\d{6}-(?P<hash>[0-9a-f]{8})"
    r"\.pth")


def family_of(recipe: Recipe) -> Family:
    """The mmseg config family of ``recipe``: its dataset with the family whose training crop
    is the recipe's, else the dataset's default family (the 512 x 1024 one for Cityscapes)."""
    data = recipe.data
    for family in FAMILIES.values():
        if family.dataset == data.dataset and list(family.crop) == list(data.crop_size):
            return family
    if data.dataset not in DEFAULT_FAMILY:
        raise GsbenchError(f"recipe {recipe.name!r}: dataset {data.dataset!r} has no "
                           f"mmsegmentation config here (only {', '.join(DEFAULT_FAMILY)})")
    return FAMILIES[DEFAULT_FAMILY[data.dataset]]


def mmseg_test_section(recipe: Recipe) -> dict[str, Any]:
    """mmseg's single-scale test of ``recipe``'s config family, as a recipe's ``test:`` section
    (procedure ``mmseg`` of :mod:`gsbench.protocol`): the image fitted into the test scale
    (``Resize(scale, keep_ratio=True)``), whole or in windows (``test_cfg``), logits resized
    back with the heads' ``align_corners``. The "mIoU(ms+flip)" column adds ``--ms --flip``
    (0.x ``--aug-test``: ratios 0.5 to 1.75 of the test scale, each mirrored)."""
    family = family_of(recipe)
    section: dict[str, Any] = {"procedure": "mmseg", "scales": [1.0], "flip": False,
                               "base_size": list(family.resize_scale),
                               "align_corners": recipe.model.align_corners}
    if family.slide is not None:
        crop, stride = family.slide
        section.update(mode="slide", crop_size=list(crop), stride=list(stride))
    else:
        section["mode"] = "whole"
    return section


def recipe_name(method: str, depth: int, family: Family) -> str:
    """The built-in recipe for a released model: ``<method><depth>_mmseg_<tag>``."""
    return f"{method}{depth}_mmseg_{RECIPE_TAGS[family.name]}"


def base_config(method: str, depth: int, family: Family) -> str:
    """mmseg 1.x's config of a released model, first schedule (``configs/...``, relative)."""
    folder, prefix = METHODS[method]
    return (f"{folder}/{prefix}_r{depth}-d8_{family.batch_tag}-{family.schedules[0]}k_"
            f"{family.config_suffix}.py")


# --- key mapping, both ways ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One mmseg key template and its gsbench counterpart. ``{name}`` stands for one part of a
    dotted key (``[^.]+``), ``{name:regex}`` for what ``regex`` matches; both templates use the
    same names. ``to_gsbench`` / ``to_mmseg`` convert the tensor on the way (a 0-dim mmcv
    ``Scale`` is a [1] tensor in gsbench)."""

    mmseg: str
    gsbench: str
    note: str
    to_gsbench: Callable[[torch.Tensor], torch.Tensor] | None = None
    to_mmseg: Callable[[torch.Tensor], torch.Tensor] | None = None

    def regex(self, side: str) -> str:
        template = getattr(self, side)
        out, end = [], 0
        for field in _FIELD.finditer(template):
            out.append(re.escape(template[end:field.start()]))
            out.append(f"(?P<{field[1]}>{field[2] or '[^.]+'})")
            end = field.end()
        return "".join(out) + re.escape(template[end:])

    def expand(self, side: str, match: re.Match) -> str:
        return _FIELD.sub(lambda field: match[field[1]], getattr(self, side))


_FIELD = re.compile(r"\{(\w+)(?::([^{}]+))?\}")


def conv_module(mmseg: str, gsbench: str, note: str) -> list[Pair]:
    """An mmcv ``ConvModule`` (``<mmseg>.conv`` + ``<mmseg>.bn``) and a gsbench ``ConvBNReLU``
    (``<gsbench>.0`` + ``<gsbench>.1``)."""
    return [Pair(f"{mmseg}.conv.weight", f"{gsbench}.0.weight", note),
            Pair(f"{mmseg}.bn.{{bn}}", f"{gsbench}.1.{{bn}}", note)]


def conv(mmseg: str, gsbench: str, note: str) -> Pair:
    """A plain convolution (``weight``, and ``bias`` if it has one)."""
    return Pair(f"{mmseg}.{{param:weight|bias}}", f"{gsbench}.{{param:weight|bias}}", note)


def scale(mmseg: str, gsbench: str, note: str) -> Pair:
    """mmcv's ``Scale`` (a 0-dim parameter ``<mmseg>.scale``) and a gsbench [1] parameter."""
    return Pair(f"{mmseg}.scale", gsbench, f"{note} (0-dim Scale, [1] in gsbench)",
                _scale_to_vector, lambda tensor: tensor.reshape(()))


def _scale_to_vector(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dim() != 0:
        raise GsbenchError(f"an mmcv Scale parameter is 0-dim, this one has shape "
                           f"{list(tensor.shape)}")
    return tensor.reshape(1)


def _aspp_bottleneck_to_projection(num_blocks: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """mmseg's ASPP bottleneck (3x3 on [pool, 1x1, rates...]) as the paper head's 1x1 projection
    (on [1x1, rates..., pool]): exact when the kernel is zero off its centre, as the exporter
    writes the paper head; any other kernel is refused."""

    def transform(weight: torch.Tensor) -> torch.Tensor:
        if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
            return weight  # the shape check names both shapes
        off_centre = weight.clone()
        off_centre[..., 1, 1] = 0
        if torch.count_nonzero(off_centre):
            raise GsbenchError(
                "decode_head.bottleneck.conv.weight is a full 3x3 kernel (mmseg's ASPPHead), "
                "the recipe's deeplabv3 head 'paper' a 1x1 projection: use model.head: mmseg")
        block = weight.shape[1] // num_blocks
        centre = weight[..., 1:2, 1:2]
        return torch.cat([centre[:, block:], centre[:, :block]], dim=1)

    return transform


def _projection_to_aspp_bottleneck(num_blocks: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inverse of :func:`_aspp_bottleneck_to_projection`: the paper head's 1x1 projection
    as a 3x3 kernel, zero off its centre, on mmseg's input order (pooling first)."""

    def transform(weight: torch.Tensor) -> torch.Tensor:
        block = weight.shape[1] // num_blocks
        reordered = torch.cat([weight[:, -block:], weight[:, :-block]], dim=1)
        kernel = reordered.new_zeros(*reordered.shape[:2], 3, 3)
        kernel[..., 1, 1] = reordered[..., 0, 0]
        return kernel

    return transform


def _head_pairs(recipe: Recipe) -> list[Pair]:
    model = recipe.model
    name = model.name
    d, g = "decode_head.", "decode_head."
    if name == "fcn":
        return [*conv_module(d + "convs.{i}", g + "convs.{i}", "FCN 3x3 conv"),
                *conv_module(d + "conv_cat", g + "conv_cat", "FCN conv_cat on [c5, convs]")]
    if name == "pspnet":
        return [*conv_module(d + "psp_modules.{i}.1", g + "ppm.stages.{i}.1",
                             "PPM 1x1 conv (one per bin)"),
                *conv_module(d + "bottleneck", g + "bottleneck", "3x3 conv on [c5, PPM]")]
    if name in ("deeplabv3", "deeplabv3plus"):
        pairs = [*conv_module(d + "image_pool.1", g + "aspp.image_pool.1", "ASPP image pooling"),
                 *conv_module(d + "aspp_modules.{i}", g + "aspp.branches.{i}",
                              "ASPP 1x1 / atrous conv")]
        if name == "deeplabv3plus":
            for mm, gs in (("depthwise_conv", "depthwise"), ("pointwise_conv", "pointwise")):
                pairs += conv_module(d + f"aspp_modules.{{i}}.{mm}", g + f"aspp.branches.{{i}}.{gs}",
                                     f"ASPP separable atrous conv, {gs}")
                pairs += conv_module(d + f"sep_bottleneck.{{i}}.{mm}", g + f"fuse.{{i}}.{gs}",
                                     f"decoder separable 3x3 conv, {gs}")
            pairs += conv_module(d + "c1_bottleneck", g + "low_level", "decoder: c2 1x1 to 48")
        if model.head == "paper":
            blocks = len(model.rates if model.rates is not None else (6, 12, 18)) + 2
            pairs += [Pair(d + "bottleneck.conv.weight", g + "aspp.project.0.weight",
                           "ASPP bottleneck = the paper's 1x1 projection (centre tap, pooling "
                           "block first in mmseg, last in gsbench)",
                           _aspp_bottleneck_to_projection(blocks),
                           _projection_to_aspp_bottleneck(blocks)),
                      Pair(d + "bottleneck.bn.{bn}", g + "aspp.project.1.{bn}",
                           "ASPP projection BN")]
        else:
            pairs += conv_module(d + "bottleneck", g + "aspp.project", "ASPP 3x3 bottleneck")
        return pairs
    if name in ("nonlocal", "ccnet"):
        pairs = [*conv_module(d + "convs.0", g + "conv_in", "3x3 conv c5 -> 512"),
                 *conv_module(d + "convs.1", g + "conv_out", "3x3 conv after the attention"),
                 *conv_module(d + "conv_cat", g + "bottleneck", "3x3 conv on [c5, context]")]
        if name == "nonlocal":
            return pairs + [
                conv(d + "nl_block.{x:g|theta|phi}.conv", g + "nonlocal_block.{x:g|theta|phi}",
                     "non-local 1x1 projection"),
                *conv_module(d + "nl_block.conv_out", g + "nonlocal_block.out",
                             "non-local output 1x1 + BN")]
        return pairs + [
            conv(d + "cca.{x:query|key|value}_conv", g + "rcca.attention.{x:query|key|value}",
                 "criss-cross 1x1 projection"),
            scale(d + "cca.gamma", g + "rcca.attention.gamma", "criss-cross gamma")]
    if name == "danet":
        pairs = []
        for branch in ("pam", "cam"):
            pairs += [*conv_module(d + f"{branch}_in_conv", g + f"{branch}_in",
                                   f"{branch.upper()} branch 3x3 conv in"),
                      *conv_module(d + f"{branch}_out_conv", g + f"{branch}_out",
                                   f"{branch.upper()} branch 3x3 conv out"),
                      conv(d + f"{branch}_conv_seg", g + f"{branch}_cls.1",
                           f"{branch.upper()}-only classifier (training loss)")]
        return pairs + [
            conv(d + "pam.{x:query|key|value}_project", g + "pam.{x:query|key|value}",
                 "PAM 1x1 projection"),
            scale(d + "pam.gamma", g + "pam.alpha", "PAM alpha"),
            scale(d + "cam.gamma", g + "cam.beta", "CAM beta")]
    if name == "annet":
        pairs = []
        for block in ("fusion", "context"):
            pairs += [*conv_module(d + f"{block}.stages.0.{{x:key|query}}_project",
                                   g + f"{block}.attention.{{x:key|query}}",
                                   f"{block}: key / query 1x1"),
                      conv(d + f"{block}.stages.0.{{x:value|out}}_project",
                           g + f"{block}.attention.{{x:value|out}}", f"{block}: value / out 1x1")]
        return pairs + [
            *conv_module(d + "fusion.bottleneck", g + "fusion.fuse", "AFNB fusion 1x1 + BN"),
            *conv_module(d + "context.bottleneck", g + "context.fuse", "APNB fusion 1x1"),
            *conv_module(d + "bottleneck", g + "bottleneck", "3x3 conv 2048 -> 512")]
    if name == "psanet":
        # mmseg names the first branch reduce / attention whatever its direction, the second
        # one (bi-directional only, distribute) reduce_p / attention_p
        branches = {"": "distribute" if model.psa_type == "distribute" else "collect"}
        if model.psa_type == "bi":
            branches["_p"] = "distribute"
        pairs = []
        for suffix, branch in branches.items():
            pairs += [*conv_module(d + f"reduce{suffix}", g + f"psa.reduce.{branch}",
                                   f"{branch}: 1x1 reduce"),
                      *conv_module(d + f"attention{suffix}.0", g + f"psa.attention.{branch}.0",
                                   f"{branch}: attention 1x1"),
                      Pair(d + f"attention{suffix}.1.weight", g + f"psa.attention.{branch}.1.weight",
                           f"{branch}: mask predictor (mask_h * mask_w outputs)")]
        return pairs + [*conv_module(d + "proj", g + "psa.proj", "PSA fusion 1x1 (padding 1)"),
                        *conv_module(d + "bottleneck", g + "bottleneck", "3x3 conv on [c5, PSA]")]
    raise GsbenchError(f"model {name!r} has no mmsegmentation layout")


def mmseg_pairs(recipe: Recipe) -> list[Pair]:
    """Every mmseg key template of ``recipe``'s architecture with its gsbench counterpart."""
    stem = [Pair(f"backbone.stem.{i}.weight", f"backbone.conv{n}.weight", "deep stem 3x3 conv")
            for n, i in ((1, 0), (2, 3), (3, 6))]
    stem += [Pair(f"backbone.stem.{i}.{{bn}}", f"backbone.bn{n}.{{bn}}", "deep stem BN")
             for n, i in ((1, 1), (2, 4), (3, 7))]
    pairs = [*stem,
             Pair("backbone.{rest:layer[1-4][.].+}", "backbone.{rest:layer[1-4][.].+}",
                  "ResNet stages (torchvision names)"),
             *_head_pairs(recipe),
             conv("decode_head.conv_seg", "decode_head.cls.1", "classifier")]
    if recipe.model.aux:
        pairs += [*conv_module("auxiliary_head.convs.0", "aux_head.conv", "aux FCN 3x3 conv"),
                  conv("auxiliary_head.conv_seg", "aux_head.cls.1", "aux classifier")]
    return pairs


#: gsbench keys no mmseg file holds, with why
DERIVED = {r"decode_head\.psa\.attention\.\w+\.1\.mask_hw":
           "the PSA mask size, from the recipe's model.mask_size"}


def mmseg_mapping(recipe: Recipe) -> Mapping:
    """The import rules: an mmseg checkpoint of ``recipe``'s architecture onto its model."""
    rules = [Rule(pair.regex("mmseg"), lambda m, pair=pair: pair.expand("gsbench", m), pair.note,
                  pair.to_gsbench)
             for pair in mmseg_pairs(recipe)]
    if not recipe.model.aux:
        rules.append(Rule(r"auxiliary_head\..+", None,
                          "auxiliary FCN head on stage 3 (loss weight 0.4), unused at test "
                          "time; the recipe has no aux head"))
    return Mapping(f"mmseg-{recipe.model.name}/1", tuple(rules), derived=DERIVED)


def to_mmseg_state_dict(recipe: Recipe, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A gsbench state dict of ``recipe``'s model in mmseg's layout (the export direction of
    :func:`mmseg_pairs`): every tensor but the derived ones lands on exactly one mmseg key."""
    pairs = [(re.compile(pair.regex("gsbench")), pair) for pair in mmseg_pairs(recipe)]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if any(re.fullmatch(pattern, key) for pattern in DERIVED):
            continue
        found = next(((pair, m) for regex, pair in pairs if (m := regex.fullmatch(key))), None)
        if found is None:
            raise GsbenchError(f"{key} {list(tensor.shape)}: no mmsegmentation counterpart in "
                               f"the {recipe.model.name} layout")
        pair, match = found
        target = pair.expand("mmseg", match)
        out[target] = pair.to_mmseg(tensor) if pair.to_mmseg is not None else tensor
    return out


def mmseg_form_problem(recipe: Recipe) -> str | None:
    """Why mmsegmentation cannot express ``recipe``'s model (None when it can): the import
    refuses such a recipe, the export such a run."""
    model = recipe.model
    if model.name not in METHODS:
        return f"model {model.name!r} is none of {', '.join(METHODS)}"
    if model.backbone not in BACKBONES:
        return (f"backbone {model.backbone!r} is none of {', '.join(BACKBONES)} (mmseg's "
                "BasicBlock does not dilate its second conv, and its stage depths are fixed)")
    if model.output_stride != 8:
        return f"output stride {model.output_stride}, not 8 (the -D8 configs)"
    if recipe.data.dataset not in DEFAULT_FAMILY:
        return (f"dataset {recipe.data.dataset!r} has no mmsegmentation config here (only "
                f"{', '.join(DEFAULT_FAMILY)})")
    if model.name == "psanet":
        if model.head != "mmseg":
            return (f"psanet head {model.head!r}: mmseg's PSAHead pads its fusion conv and "
                    "shrinks by the map's parity (model.head: mmseg)")
        if model.compact:
            return "compact PSA: mmseg's compact attention is laid out differently"
    if model.name == "danet" and model.channel_energy != "official":
        return (f"danet channel_energy {model.channel_energy!r}: mmseg's CAM softmaxes "
                "max - energy (model.channel_energy: official)")
    if model.name == "deeplabv3plus" and model.head != "mmseg":
        return ("deeplabv3plus head 'paper': mmseg's decoder uses depthwise-separable convs "
                "(model.head: mmseg)")
    return None


# --- the source ----------------------------------------------------------------------------------


class MmsegSource(Source):
    name = "mmseg"
    repository = "open-mmlab/mmsegmentation"
    commit = "v1.2.2"
    preprocessing = Preprocessing(
        "RGB", 255.0, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
        "mmsegmentation configs/_base_/models/*_r50-d8.py data_preprocessor "
        "(SegDataPreProcessor, bgr_to_rgb=True)")
    test_script = ("mmsegmentation tools/test.py with the model's config: test_pipeline Resize "
                   "(keep_ratio) and test_cfg (whole, or slide 769 / 513 on the 769 x 769 "
                   "models); --aug-test (0.x) for mIoU(ms+flip)")
    training_only_entries = {
        "meta": "mmcv / mmengine run meta data (versions, time, CLASSES, PALETTE, config)",
        "optimizer": "the optimizer state of a training checkpoint",
        "param_schedulers": "the learning-rate schedulers of an mmengine training checkpoint",
        "message_hub": "the logged values of an mmengine training checkpoint",
    }

    def check_recipe(self, recipe: Recipe) -> None:
        problem = mmseg_form_problem(recipe)
        require(problem is None, self, recipe, problem or "")

    def model_options(self, recipe: Recipe) -> dict[str, Any]:
        # Everything the file needs is stated by the recipe (the *_mmseg_* recipes), and the
        # mapping checks every tensor; only the PSA mask follows the file's config family when
        # the recipe leaves it to the first forward.
        if recipe.model.name == "psanet" and recipe.model.mask_size is None:
            side = family_of(recipe).psa_mask
            return {"mask_size": [side, side]}
        return {}

    def mapping(self, recipe: Recipe) -> Mapping:
        return mmseg_mapping(recipe)

    def check_file(self, path: Path, state_dict: dict[str, torch.Tensor], recipe: Recipe) -> None:
        """ANN's shared key / query module must hold the same tensors under both names; a
        model-zoo file name says the method, depth and config family, and a recipe of another
        form is refused, naming the recipe that fits."""
        for key, tensor in state_dict.items():
            if key.startswith(SHARED_QUERY):
                twin = SHARED_KEY + key[len(SHARED_QUERY):]
                if twin in state_dict and not torch.equal(tensor, state_dict[twin]):
                    raise GsbenchError(
                        f"{path}: {key} differs from {twin}, but ANN's APNB shares one module "
                        "for key and query (share_key_query=True): a damaged file?")
        match = ZOO_FILE_NAME.fullmatch(path.name)
        methods = {prefix: method for method, (_, prefix) in METHODS.items()}
        if match is None or match["prefix"] not in methods:
            return
        method, depth = methods[match["prefix"]], int(match["depth"])
        family = next(f for f in FAMILIES.values()
                      if f.file_tags == (match["crop"], match["dataset"]))
        model = recipe.model
        if (model.name, model.backbone, family_of(recipe), model.align_corners) \
                != (method, f"resnet{depth}_v1c", family, family.align_corners):
            raise GsbenchError(
                f"{path}: an mmseg {method} R-{depth}-D8 {family.name} model, not the form of "
                f"recipe {recipe.name!r}: use --recipe {recipe_name(method, depth, family)}")

    def test_protocol(self, recipe: Recipe) -> dict[str, Any]:
        return mmseg_test_section(recipe)


SOURCE = MmsegSource()
