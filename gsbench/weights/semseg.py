"""hszhao/semseg: the released PSPNet and PSANet checkpoints (ResNet-50 / 101; ADE20K, VOC 2012,
Cityscapes), read from the official code at commit 4f274c3 (2020-05-15).

The files (``exp/<dataset>/<arch>/model/train_epoch_<N>.pth``, published in the Google Drive
folder the README links) are ``{"epoch", "state_dict", "optimizer"}`` saved by ``tool/train.py``
from a (Distributed)DataParallel model, so every key starts with ``module.``. The layout
(``model/pspnet.py``, ``model/psanet.py``, ``model/resnet.py`` with ``deep_base=True``) maps
one to one onto gsbench's ``pspnet`` / ``psanet`` on the deep-stem ResNet:

===============================  ==============================================================
semseg                           gsbench
===============================  ==============================================================
``layer0.{0,3,6}``               ``backbone.conv{1,2,3}`` (deep stem 3x3 convs 64, 64, 128)
``layer0.{1,4,7}``               ``backbone.bn{1,2,3}``
``layer{1-4}.*``                 ``backbone.layer{1-4}.*`` (torchvision names)
``ppm.features.<i>.{1,2}``       ``decode_head.ppm.stages.<i>.1.{0,1}`` (bins 1, 2, 3, 6)
``psa.reduce[_p].{0,1}``         ``decode_head.psa.reduce.<branch>.{0,1}``
``psa.attention[_p].{0,1}``      ``decode_head.psa.attention.<branch>.0.{0,1}``
``psa.attention[_p].3``          ``decode_head.psa.attention.<branch>.1`` (mask predictor)
``psa.proj.{0,1}``               ``decode_head.psa.proj.{0,1}`` (input [collect, distribute])
``cls.{0,1}`` / ``cls.4``        ``decode_head.bottleneck.{0,1}`` / ``decode_head.cls.1``
``aux.{0,1}`` / ``aux.4``        ``aux_head.conv.{0,1}`` / ``aux_head.cls.1`` (training-only)
===============================  ==============================================================

``<branch>``: semseg names the first branch ``reduce`` / ``attention`` whatever its direction
(collect for ``psa_type`` 0 and 2, distribute for 1) and the second one, which only the
bi-directional module has, ``reduce_p`` / ``attention_p`` (distribute). gsbench's PSA
``mask_hw`` buffers are derived from the recipe's ``mask_size``.

Official forms the weights need: ``model.align_corners: true`` (the PPM upsampling and the final
x8 upsampling use ``align_corners=True``) and, for PSANet, the mask of the training crop
(``2 * ((train_h - 1) // 16 + 1) - 1``: 89 x 89 for 705, 59 x 59 for 465; ``tool/test.py``).

Preprocessing (``util/dataset.py``, ``tool/test.py``): RGB, 0-255, ``(x - 255 * ImageNet mean)
/ (255 * ImageNet std)``, which is gsbench's ``Normalize``. Test procedure (``tool/test.py``):
the ``semseg`` protocol, with each config's ``base_size`` and ``test_h`` x ``test_w`` crop
(:data:`DATASETS`); "ss" in the README is scale 1.0 with the flip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gsbench.recipes import Recipe
from gsbench.weights.mapping import Mapping, Rule
from gsbench.weights.source import Preprocessing, Source, require

ARCHITECTURES = ("pspnet", "psanet")
BACKBONES = ("resnet50", "resnet101")


@dataclass(frozen=True)
class SemsegDataset:
    """A dataset's settings in semseg's ``config/<dataset>/<dataset>_<arch>.yaml``: train and
    test crop per architecture (square) and ``base_size`` (the long side at scale 1.0)."""

    crop: dict[str, int]
    base_size: int


DATASETS: dict[str, SemsegDataset] = {
    "cityscapes": SemsegDataset({"pspnet": 713, "psanet": 705}, 2048),
    "ade20k": SemsegDataset({"pspnet": 473, "psanet": 465}, 512),
    "voc2012": SemsegDataset({"pspnet": 473, "psanet": 465}, 512),
}


def psa_mask(train_crop: int, shrink_factor: int = 2) -> int:
    """semseg's over-complete mask side for a training crop: ``2 * ((crop - 1) // (8 * shrink)
    + 1) - 1`` (``tool/train.py`` ``check``, ``tool/test.py``)."""
    return 2 * ((train_crop - 1) // (8 * shrink_factor) + 1) - 1


def _layer0(index: int) -> str:
    kind = "conv" if index % 3 == 0 else "bn"
    return f"backbone.{kind}{index // 3 + 1}"


class SemsegSource(Source):
    name = "semseg"
    repository = "hszhao/semseg"
    commit = "4f274c3f276778228bc14a4565822d46359f0cc8"
    preprocessing = Preprocessing(
        "RGB", 255.0, tuple(255 * m for m in IMAGENET_MEAN), tuple(255 * s for s in IMAGENET_STD),
        "hszhao/semseg util/dataset.py (cv2 BGR -> RGB, float 0-255), tool/test.py (mean, std "
        "x 255)")
    test_script = ("hszhao/semseg tool/test.py with config/<dataset>/<dataset>_<arch>.yaml "
                   "TEST (base_size, test_h, test_w, scales)")
    training_only_entries = {"epoch": "the epoch counter of tool/train.py",
                             "optimizer": "the SGD state of tool/train.py"}

    def check_recipe(self, recipe: Recipe) -> None:
        model = recipe.model
        require(model.name in ARCHITECTURES, self, recipe,
                f"model {model.name!r} is not {' or '.join(ARCHITECTURES)}")
        require(model.backbone in BACKBONES, self, recipe,
                f"backbone {model.backbone!r} is not {' or '.join(BACKBONES)}")
        require(model.output_stride == 8, self, recipe,
                f"output stride {model.output_stride}, not 8")
        require(recipe.data.dataset in DATASETS, self, recipe,
                f"dataset {recipe.data.dataset!r} is none of {', '.join(DATASETS)}")
        if model.name == "pspnet":
            require(list(model.bins) == [1, 2, 3, 6], self, recipe,
                    f"pyramid bins {list(model.bins)}, not [1, 2, 3, 6]")
        else:
            require(model.shrink_factor == 2, self, recipe,
                    f"shrink_factor {model.shrink_factor}, not 2")

    def _dataset(self, recipe: Recipe) -> SemsegDataset:
        return DATASETS[recipe.data.dataset]

    def model_options(self, recipe: Recipe) -> dict[str, Any]:
        options: dict[str, Any] = {"align_corners": True}
        if recipe.model.name == "psanet" and not recipe.model.compact:
            side = psa_mask(self._dataset(recipe).crop["psanet"])
            options["mask_size"] = [side, side]
        return options

    def mapping(self, recipe: Recipe) -> Mapping:
        rules = [
            Rule(r"layer0\.([013467])\.(.+)",
                 lambda m: f"{_layer0(int(m[1]))}.{m[2]}", "deep stem: 3x3 conv / BN"),
            Rule(r"(layer[1-4]\..+)", r"backbone.\1", "ResNet stages (torchvision names)"),
            Rule(r"ppm\.features\.(\d+)\.1\.(.+)", r"decode_head.ppm.stages.\1.1.0.\2",
                 "PPM 1x1 conv"),
            Rule(r"ppm\.features\.(\d+)\.2\.(.+)", r"decode_head.ppm.stages.\1.1.1.\2", "PPM BN"),
        ]
        if recipe.model.name == "psanet":
            psa_type = recipe.model.psa_type
            branches = {"": "distribute" if psa_type == "distribute" else "collect"}
            if psa_type == "bi":
                branches["_p"] = "distribute"
            for suffix, branch in branches.items():
                head = f"decode_head.psa.attention.{branch}"
                rules += [
                    Rule(rf"psa\.reduce{suffix}\.([01])\.(.+)",
                         rf"decode_head.psa.reduce.{branch}.\1.\2", f"{branch}: 1x1 reduce + BN"),
                    Rule(rf"psa\.attention{suffix}\.([01])\.(.+)", rf"{head}.0.\1.\2",
                         f"{branch}: attention 1x1 + BN"),
                    Rule(rf"psa\.attention{suffix}\.3\.weight", rf"{head}.1.weight",
                         f"{branch}: mask predictor (mask_h * mask_w outputs)"),
                ]
            rules.append(Rule(r"psa\.proj\.([01])\.(.+)", r"decode_head.psa.proj.\1.\2",
                              "PSA fusion 1x1 + BN"))
        rules += [
            Rule(r"cls\.([01])\.(.+)", r"decode_head.bottleneck.\1.\2", "3x3 conv 4096 -> 512 + BN"),
            Rule(r"cls\.4\.(.+)", r"decode_head.cls.1.\1", "classifier"),
        ]
        aux_why = ("stage-3 deep-supervision head (loss weight 0.4), built whenever the model is "
                   "in training mode and unused at test time")
        if recipe.model.aux:
            rules += [Rule(r"aux\.([01])\.(.+)", r"aux_head.conv.\1.\2", "aux 3x3 conv + BN"),
                      Rule(r"aux\.4\.(.+)", r"aux_head.cls.1.\1", "aux classifier")]
        else:
            rules.append(Rule(r"aux\..+", None, aux_why))
        return Mapping(
            f"semseg-{recipe.model.name}/1", tuple(rules),
            derived={r"decode_head\.psa\.attention\.\w+\.1\.mask_hw":
                     "the PSA mask size, from the recipe's model.mask_size"},
            optional={r".+\.num_batches_tracked":
                      "BatchNorm step counter, absent from files saved by torch < 0.4.1; "
                      "unused at test time"},
        )

    def test_protocol(self, recipe: Recipe) -> dict[str, Any]:
        dataset = self._dataset(recipe)
        crop = dataset.crop[recipe.model.name]
        return {"procedure": "semseg", "crop_size": [crop, crop],
                "base_size": [dataset.base_size], "scales": [1.0], "flip": True}


SOURCE = SemsegSource()
