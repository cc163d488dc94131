"""Load a local ImageNet checkpoint into a backbone (deep-stem ResNet, WideResNet-38, HRNetV2),
with clear errors.

Accepted layouts (after unwrapping a ``state_dict`` / ``model`` entry and dropping ``module.``
and ``backbone.`` prefixes):

- semseg / torchvision-style names with the deep stem (``conv1, bn1, conv2, bn2, conv3, bn3,
  layer1..layer4``): must fit exactly;
- mmsegmentation ``ResNetV1c`` names (``stem.0, stem.1, stem.3, stem.4, stem.6, stem.7``,
  ``layer1..layer4``): renamed to the above, must fit exactly. mmseg's ImageNet weights
  (``open-mmlab://resnet50_v1c``, ``resnet101_v1c``) have a 32-32-64 stem: they fit the
  ``resnet50_v1c`` / ``resnet101_v1c`` backbones, and the refusal of any other names them;
- a plain torchvision ResNet (7x7 ``conv1``): its stem and the first block's input-side weights
  cannot fit the deep stem, so only the tensors that fit are loaded and a warning lists the rest.

The ImageNet classifier is always dropped: ``fc.*`` (ResNet) and ``classifier.*`` plus the
final ``bn_out.*`` of the WideResNet-38 checkpoints, which the segmentation backbone does not use;
of the official HRNet ImageNet checkpoints (``hrnetv2_w48_imagenet_pretrained.pth``, names
``conv1, bn1, conv2, bn2, layer1, transition1, stage2 ... stage4``, which must fit exactly) also
the classification head ``incre_modules.*``, ``downsamp_modules.*`` and ``final_layer.*``. Files
load with ``weights_only=True``: no pickled code is executed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gsbench.errors import GsbenchError

# mmseg ResNetV1c stem: Sequential(conv, bn, relu, conv, bn, relu, conv, bn, relu)
_MMSEG_STEM = {"stem.0.": "conv1.", "stem.1.": "bn1.", "stem.3.": "conv2.", "stem.4.": "bn2.",
               "stem.6.": "conv3.", "stem.7.": "bn3."}
_PLAIN_STEM_PREFIXES = ("conv1.", "bn1.")
_STEM_FED_PREFIXES = ("layer1.0.conv1.", "layer1.0.downsample.")
_SHOWN_KEYS = 8


class PartialCheckpointWarning(UserWarning):
    """A checkpoint was loaded only partly (a plain-stem torchvision ResNet into the deep stem)."""


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and with backbone-level key names."""
    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: pretrained weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / pickled-code files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GsbenchError(f"{path}: cannot read as a weights-only torch checkpoint "
                           f"({first_line})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise GsbenchError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        # A whole segmentation checkpoint: keep only its backbone.
        state = {k.removeprefix("backbone."): v for k, v in state.items()
                 if k.startswith("backbone.")}
    renamed = {}
    for key, value in state.items():
        for old, new in _MMSEG_STEM.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return {k: v for k, v in renamed.items() if not k.startswith(_CLASSIFIER_PREFIXES)}


#: ImageNet-classifier tensors of the supported checkpoints (see the module docstring).
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "bn_out.", "incre_modules.", "downsamp_modules.",
                        "final_layer.")


def _stem_widths(state: Mapping[str, torch.Tensor]) -> tuple[int, ...] | None:
    """Output channels of the deep stem's three convolutions, or None without them."""
    keys = ("conv1.weight", "conv2.weight", "conv3.weight")
    if not all(k in state for k in keys):
        return None
    return tuple(int(state[k].shape[0]) for k in keys)


def load_pretrained(backbone: nn.Module, path: str | Path) -> None:
    """Copy the ImageNet weights in ``path`` into ``backbone`` (see the module docstring)."""
    state = read_state_dict(path)
    own = backbone.state_dict()
    plain_stem = "conv1.weight" in state and state["conv1.weight"].shape[-1] == 7
    if plain_stem:
        # The 7x7 stem's BN is tied to that conv: it must not be loaded into the 3x3 stem.
        state = {k: v for k, v in state.items() if not k.startswith(_PLAIN_STEM_PREFIXES)}

    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    # Old checkpoints lack BN's num_batches_tracked counter; it does not affect the weights.
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))

    if plain_stem:
        stem = ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.")
        skipped_body = sorted(k for k in set(missing) | set(mismatched) if not k.startswith(stem))
        # Only the first block's input side sees the stem's width (64 vs 128 channels);
        # anything else that does not fit means another architecture: refuse it.
        wrong = unexpected + [k for k in skipped_body if not k.startswith(_STEM_FED_PREFIXES)]
        if wrong:
            raise GsbenchError(f"{path}: plain-stem ResNet checkpoint does not fit the backbone "
                               f"beyond its stem: {_key_list(wrong)}")
        fitting = {k: v for k, v in state.items() if k not in mismatched}
        backbone.load_state_dict(fitting, strict=False)
        warnings.warn(f"{path}: plain-stem (7x7) torchvision ResNet loaded into the deep-stem "
                      f"ResNet: {len(fitting)} tensors loaded; left at random init: the 3x3 "
                      f"stem (conv1-3, bn1-3) and {_key_list(skipped_body)}",
                      PartialCheckpointWarning, stacklevel=3)
        return

    problems = []
    if missing:
        problems.append(f"missing {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {_key_list(unexpected)}")
    if mismatched:
        problems.append("shape mismatch " + _key_list(
            [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]))
        stem, own_stem = _stem_widths(state), _stem_widths(own)
        if stem is not None and own_stem is not None and stem != own_stem:
            hint = " (mmsegmentation's ResNetV1c: use backbone resnet50_v1c or resnet101_v1c)" \
                if stem == (32, 32, 64) else ""
            problems.append(f"the file's stem is {'-'.join(map(str, stem))} wide, the "
                            f"backbone's {'-'.join(map(str, own_stem))}{hint}")
    if problems:
        raise GsbenchError(f"{path}: checkpoint does not fit the backbone: {'; '.join(problems)}")
    backbone.load_state_dict(state, strict=False)
