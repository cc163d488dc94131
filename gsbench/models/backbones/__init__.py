"""Backbones: ``build_backbone(name, output_stride, pretrained)`` -> module returning [c2..c5].

Every backbone's forward returns the four stage features ``[c2, c3, c4, c5]`` and the module
has ``.channels`` with their channel counts. For HRNetV2 (:mod:`.hrnet`) c2-c4 are its first three
branches and c5 is the HRNetV2 representation (all four branches concatenated at the output
stride, 4 or 8).
"""

from __future__ import annotations

import difflib
import warnings
from typing import Callable

from torch import nn

from gsbench.errors import GsbenchError
from gsbench.models.backbones.hrnet import HRNetV2, hrnetv2_tiny, hrnetv2_w48
from gsbench.models.backbones.pretrained import PartialCheckpointWarning, load_pretrained
from gsbench.models.backbones.resnet import (ResNet, resnet18, resnet50, resnet50_v1c, resnet101,
                                             resnet101_v1c, resnet_tiny)
from gsbench.models.backbones.wideresnet import WideResNet38, wideresnet38, wideresnet_tiny

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet50_v1c": resnet50_v1c,
    "resnet101_v1c": resnet101_v1c,
    "resnet_tiny": resnet_tiny,
    "wideresnet38": wideresnet38,
    "wideresnet_tiny": wideresnet_tiny,
    "hrnetv2_w48": hrnetv2_w48,
    "hrnetv2_tiny": hrnetv2_tiny,
}


class RandomInitWarning(UserWarning):
    """A backbone was built without ImageNet weights (numbers will not match the papers)."""


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, output_stride: int = 8, pretrained: str | None = None) -> nn.Module:
    """Build backbone ``name``; load ``pretrained`` (a local file) or warn about random init."""
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, list(BACKBONES), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(BACKBONES)}"
        raise GsbenchError(f"unknown backbone {name!r}; {hint}")
    backbone = BACKBONES[name](output_stride=output_stride)
    if pretrained is not None:
        load_pretrained(backbone, pretrained)
    elif not name.endswith("_tiny"):  # the tiny backbones only exist for smoke runs
        # The default "once per call site" filter shows this once per process.
        warnings.warn(f"backbone {name} has random (Kaiming) initialisation: pass pretrained=FILE "
                      "with ImageNet weights to reproduce the papers' numbers",
                      RandomInitWarning, stacklevel=2)
    return backbone


__all__ = ["BACKBONES", "HRNetV2", "PartialCheckpointWarning", "RandomInitWarning", "ResNet",
           "WideResNet38", "build_backbone", "list_backbones", "load_pretrained"]
