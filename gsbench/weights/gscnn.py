"""nv-tlabs/GSCNN: the released Cityscapes checkpoint of Gated-SCNN on WideResNet-38
(``best_cityscapes_checkpoint.pth``), read from the official code at commit edd16c5 (2023-10-23).

The file is ``{"state_dict", "optimizer", "epoch", "mean_iu", "command"}`` saved by
``utils/misc.py`` (``evaluate_eval``) from the DataParallel model of ``network/__init__.py``:
every key starts with ``module.``, and ``mean_iu`` is a ``numpy.float64`` (loaded with the
numpy-scalar allow-list, never used). The layout of ``network/gscnn.py`` maps onto gsbench's
``gscnn`` on ``wideresnet38`` with every official form switched on (``gate``, ``decoder``,
``aspp_projection``, ``classifier``, ``canny``: "official"; ``align_corners: true``; no aux
head; see :mod:`gsbench.models.gscnn`):

=================================  ============================================================
GSCNN                              gsbench
=================================  ============================================================
``mod{1-7}.*``                     ``backbone.mod{1-7}.*`` (same names)
``res{1,2,3}`` / ``d{1,2,3}``      ``shape_stream.blocks.{0,1,2}`` / ``shape_stream.reduce.*``
``dsn{3,4,7}``                     ``shape_stream.regular_maps.{0,1,2}`` (mod3, mod4, mod7)
``gate<i>.weight``                 ``shape_stream.gates.<i-1>.weight.weight``
``gate<i>._gate_conv.{0,1,3,4}``   ``...gates.<i-1>.{gate_norm,gate_hidden,gate_conv,gate_out_norm}``
``fuse`` / ``cw``                  ``shape_stream.to_boundary`` / ``canny_fusion``
``aspp.features.<i>``              ``aspp.branches.<i>`` (1x1, rates 12, 24, 36)
``aspp.img_conv`` / ``edge_conv``  ``aspp.image_pool.1`` / ``aspp.boundary``
``bot_aspp``                       ``aspp.project`` (input blocks reordered, below)
``bot_fine``                       ``low_level`` (1x1 on mod2)
``final_seg.{0,1,3,4}``            ``fuse.{0,1}.{0,1}`` (``final_seg.0``'s input reordered)
``final_seg.6``                    ``cls.1`` (no bias)
=================================  ============================================================

Two concatenations differ in order only: the ASPP branches (official ``[image pooling, edge,
1x1, r12, r24, r36]``, gsbench ``[1x1, r12, r24, r36, image pooling, edge]``) and the decoder
input (official ``[low-level 48, ASPP 256]``, gsbench ``[ASPP, low-level]``); the input channels
of ``bot_aspp`` and ``final_seg.0`` are reordered accordingly. Dropped: ``dsn1`` (built in
``GSCNN.__init__``, never called by ``forward``) and ``criterion.*`` (the training loss's
class-weight buffer, which the loss is an attribute of the model to hold).

Preprocessing (``datasets/cityscapes.py``, ``datasets/__init__.py``): PIL RGB, ``ToTensor`` (0-1),
ImageNet mean / std, as gsbench. Test procedure (``train.py --evaluate``, ``validate``): whole
1024 x 2048 images, one scale, no flip; the paper reports 80.8 val mIoU for the WideResNet-38
model (Table 1), which the README does not confirm for this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gsbench.recipes import Recipe
from gsbench.weights.mapping import Mapping, Rule
from gsbench.weights.reading import NUMPY_SCALAR
from gsbench.weights.source import Preprocessing, Source, require

#: Widths of the ASPP branches in the official concatenation order, and gsbench's order of them.
ASPP_BLOCKS = (256,) * 6
ASPP_ORDER = (2, 3, 4, 5, 0, 1)
#: The decoder input: official [low-level 48, ASPP 256]; gsbench [ASPP, low-level].
DECODER_BLOCKS = (48, 256)
DECODER_ORDER = (1, 0)


def reorder_input_channels(widths: Sequence[int], order: Sequence[int]
                           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The transform that reorders a conv weight's input-channel blocks (``widths`` in the
    official order) into ``order``; a weight of another input width is left for the shape check
    to report."""

    def reorder(weight: torch.Tensor) -> torch.Tensor:
        if weight.dim() < 2 or weight.shape[1] != sum(widths):
            return weight
        blocks = torch.split(weight, list(widths), dim=1)
        return torch.cat([blocks[i] for i in order], dim=1)

    return reorder


def _minus_one(template: str) -> Callable:
    """A target naming the official 1-based index ``m[1]`` by gsbench's 0-based one."""
    return lambda m: template.format(int(m[1]) - 1, *m.groups()[1:])


class GSCNNSource(Source):
    name = "gscnn"
    repository = "nv-tlabs/GSCNN"
    commit = "edd16c5d3f346a0ec009cec539fbcaf6d79b5111"
    preprocessing = Preprocessing(
        "RGB", 1.0, IMAGENET_MEAN, IMAGENET_STD,
        "nv-tlabs/GSCNN datasets/cityscapes.py (PIL RGB), datasets/__init__.py (ToTensor, "
        "Normalize with the ImageNet mean and std)")
    allowed_globals = NUMPY_SCALAR
    test_script = "nv-tlabs/GSCNN train.py --evaluate (validate: whole images, one scale, no flip)"
    training_only_entries = {"optimizer": "the SGD state of train.py",
                             "epoch": "the epoch counter",
                             "mean_iu": "the validation mIoU when saved (a numpy scalar)",
                             "command": "the training command line"}

    def check_recipe(self, recipe: Recipe) -> None:
        model = recipe.model
        require(model.name == "gscnn", self, recipe, f"model {model.name!r} is not gscnn")
        require(model.backbone == "wideresnet38", self, recipe,
                f"backbone {model.backbone!r} is not wideresnet38")
        require(model.output_stride == 8, self, recipe,
                f"output stride {model.output_stride}, not 8")
        require(model.shape_stream and model.use_canny, self, recipe,
                "it leaves out the shape stream or the Canny fusion")
        require(recipe.data.dataset == "cityscapes", self, recipe,
                f"dataset {recipe.data.dataset!r} is not cityscapes")

    def model_options(self, recipe: Recipe) -> dict[str, Any]:
        return {"aux": False, "gate": "official", "decoder": "official",
                "aspp_projection": "official", "classifier": "official", "canny": "official",
                "align_corners": True}

    def mapping(self, recipe: Recipe) -> Mapping:
        gate = "shape_stream.gates.{0}"
        rules = (
            Rule(r"(mod[1-7]\..+)", r"backbone.\1", "WideResNet-38 A2 (same names)"),
            Rule(r"res([123])\.(.+)", _minus_one("shape_stream.blocks.{0}.{1}"),
                 "shape stream residual block"),
            Rule(r"d([123])\.(.+)", _minus_one("shape_stream.reduce.{0}.{1}"),
                 "shape stream 1x1 reduction"),
            Rule(r"dsn3\.(.+)", r"shape_stream.regular_maps.0.\1", "mod3 -> one channel"),
            Rule(r"dsn4\.(.+)", r"shape_stream.regular_maps.1.\1", "mod4 -> one channel"),
            Rule(r"dsn7\.(.+)", r"shape_stream.regular_maps.2.\1", "mod7 -> one channel"),
            Rule(r"dsn1\..+", None, "built in GSCNN.__init__ but never called by forward()"),
            Rule(r"gate([123])\.weight", _minus_one(gate + ".weight.weight"), "GCL w_t"),
            Rule(r"gate([123])\._gate_conv\.0\.(.+)", _minus_one(gate + ".gate_norm.{1}"),
                 "gate BN(C+1)"),
            Rule(r"gate([123])\._gate_conv\.1\.(.+)", _minus_one(gate + ".gate_hidden.{1}"),
                 "gate 1x1 C+1 -> C+1"),
            Rule(r"gate([123])\._gate_conv\.3\.(.+)", _minus_one(gate + ".gate_conv.{1}"),
                 "gate 1x1 C+1 -> 1"),
            Rule(r"gate([123])\._gate_conv\.4\.(.+)", _minus_one(gate + ".gate_out_norm.{1}"),
                 "gate BN(1)"),
            Rule(r"fuse\.weight", "shape_stream.to_boundary.weight", "8 -> 1 boundary logits"),
            Rule(r"cw\.weight", "canny_fusion.weight", "[boundary, Canny] -> 1"),
            Rule(r"aspp\.features\.(\d)\.(.+)", r"aspp.branches.\1.\2", "ASPP 1x1 / atrous"),
            Rule(r"aspp\.img_conv\.(.+)", r"aspp.image_pool.1.\1", "ASPP image pooling"),
            Rule(r"aspp\.edge_conv\.(.+)", r"aspp.boundary.\1", "ASPP boundary branch"),
            Rule(r"bot_aspp\.weight", "aspp.project.weight",
                 "ASPP projection; input blocks [pool, edge, 1x1, r12, r24, r36] reordered to "
                 "[1x1, r12, r24, r36, pool, edge]",
                 reorder_input_channels(ASPP_BLOCKS, ASPP_ORDER)),
            Rule(r"bot_fine\.weight", "low_level.weight", "decoder 1x1 on mod2"),
            Rule(r"final_seg\.0\.weight", "fuse.0.0.weight",
                 "decoder 3x3; input [low-level, ASPP] reordered to [ASPP, low-level]",
                 reorder_input_channels(DECODER_BLOCKS, DECODER_ORDER)),
            Rule(r"final_seg\.1\.(.+)", r"fuse.0.1.\1", "decoder BN"),
            Rule(r"final_seg\.3\.(.+)", r"fuse.1.0.\1", "decoder 3x3"),
            Rule(r"final_seg\.4\.(.+)", r"fuse.1.1.\1", "decoder BN"),
            Rule(r"final_seg\.6\.weight", "cls.1.weight", "classifier (no bias)"),
            Rule(r"criterion\..+", None, "the training loss's buffers (per-image class weights "
                 "of the cross-entropy, loss.py)"),
        )
        return Mapping("gscnn-wrn38/1", rules, optional={
            r".+\.num_batches_tracked": "BatchNorm step counter, absent from files saved by "
                                        "torch < 0.4.1; unused at test time"})

    def test_protocol(self, recipe: Recipe) -> dict[str, Any]:
        return {"procedure": "gsbench", "mode": "whole", "scales": [1.0], "flip": False}


SOURCE = GSCNNSource()
