"""``gsbench export-weights RUN_DIR --to mmseg``: a gsbench run as an mmsegmentation 1.x model.

:func:`export_mmseg` writes, into a new folder (default ``RUN_DIR/mmseg``)::

    <run>.pth   {"meta": {"dataset_meta": {"classes", "palette"}, ...}, "state_dict": {...}}
    <run>.py    a config that inherits mmseg's own for the architecture and dataset
                (``_base_ = 'mmseg::<method>/<config>.py'``) and overrides what the run differs
                in: backbone stem and dilation, head options, classes, align_corners

so that ``mmseg.apis.init_model('<run>.py', '<run>.pth')`` and ``tools/test.py`` run the model.
The ``meta`` dict is what ``init_model`` reads (``mmseg/apis/inference.py``: it indexes
``checkpoint['meta']`` unconditionally and takes the class names and palette from
``dataset_meta``); the state dict has mmseg's keys (:func:`gsbench.weights.mmseg.
to_mmseg_state_dict`, the import mapping read backwards), so ``gsbench import-weights FILE
--from mmseg`` with the run's recipe gives the run's tensors back. mmseg loads checkpoints with
``strict=False``; the export itself guarantees every tensor has its key.

mmseg expresses gsbench's Bottleneck ResNets (``resnet50`` / ``resnet101`` as ``ResNetV1c``
with ``stem_channels=128, contract_dilation=False``; the ``_v1c`` ones as they are), every head
of :data:`gsbench.weights.mmseg.METHODS` in its mmseg form, and DeepLabV3's paper head exactly
(``channels=256``, the 1x1 projection written as a 3x3 kernel that is zero off its centre, the
pooling block moved first). Forms it cannot express are refused with one line saying which
(:func:`gsbench.weights.mmseg.mmseg_form_problem`). The files are written into a temporary
sibling folder renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import gsbench
from gsbench.data.registry import get_dataset
from gsbench.engine.checkpoint import load_model_weights
from gsbench.engine.run_dir import load_run_recipe
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, atomic_write_text
from gsbench.models.deeplab import aspp_rates
from gsbench.recipes import Recipe
from gsbench.weights.mmseg import (BACKBONES, base_config, family_of, mmseg_form_problem,
                                   to_mmseg_state_dict)

#: default output folder inside the run folder
DEFAULT_FOLDER = "mmseg"


@dataclass(frozen=True)
class ExportResult:
    checkpoint: Path
    config: Path
    #: the official config the written one inherits (``mmseg::...``)
    base_config: str
    tensors: int


def mmseg_overrides(recipe: Recipe, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``model = dict(...)`` settings that make mmseg's config build ``recipe``'s model."""
    model = recipe.model
    classes = recipe.data.num_classes
    v1c = model.backbone.endswith("_v1c")
    # mmseg's deep stem is stem_channels/2, /2, x1: 32-32-64 (ResNetV1c) or 64-64-128
    backbone = {"stem_channels": 64 if v1c else 128, "contract_dilation": v1c}
    head: dict[str, Any] = {"num_classes": classes, "align_corners": model.align_corners,
                            "dropout_ratio": model.dropout}
    name = model.name
    if name == "fcn":
        head["concat_input"] = model.concat_input
    elif name == "pspnet":
        head["pool_scales"] = tuple(model.bins)
    elif name in ("deeplabv3", "deeplabv3plus"):
        rates = model.rates if model.rates is not None else aspp_rates(model.output_stride)
        head["dilations"] = (1, *rates)
        if model.head == "paper":
            head["channels"] = int(state["decode_head.aspp.project.0.weight"].shape[0])
    elif name == "nonlocal":
        head["mode"] = model.mode
    elif name == "ccnet":
        head["recurrence"] = model.recurrence
    elif name == "annet":
        head["project_channels"] = model.project_channels
        head["key_pool_scales"] = tuple(model.pyramid_sizes)
    elif name == "psanet":
        mask = state["decode_head.psa.attention." + ("distribute" if model.psa_type ==
                                                      "distribute" else "collect") + ".1.mask_hw"]
        head["mask_size"] = tuple(int(v) for v in mask.tolist())
        head["psa_type"] = "bi-direction" if model.psa_type == "bi" else model.psa_type
        head["shrink_factor"] = model.shrink_factor
    overrides: dict[str, Any] = {"backbone": backbone, "decode_head": head}
    overrides["auxiliary_head"] = ({"num_classes": classes, "align_corners": model.align_corners,
                                    "dropout_ratio": model.dropout} if model.aux else None)
    return overrides


def _python(value: Any, indent: int) -> str:
    """``value`` as a Python literal in mmengine's config style (``dict(key=...)``)."""
    if isinstance(value, dict):
        pad = " " * (indent + 4)
        items = ",\n".join(f"{pad}{key}={_python(item, indent + 4)}" for key, item in value.items())
        return f"dict(\n{items})"
    return repr(value)


def mmseg_config(recipe: Recipe, state: dict[str, torch.Tensor], run_name: str) -> tuple[str, str]:
    """(config text, the official config it inherits) for ``recipe``'s model."""
    family = family_of(recipe)
    base = base_config(recipe.model.name, BACKBONES[recipe.model.backbone], family)
    overrides = mmseg_overrides(recipe, state)
    text = (
        f"# {run_name}: recipe {recipe.name}, exported by gsbench {gsbench.__version__}.\n"
        f"# The base is mmsegmentation's own config for this architecture and dataset; the\n"
        f"# overrides below are what the gsbench model differs in. Resolving 'mmseg::' needs\n"
        f"# mmsegmentation 1.x installed as a package.\n"
        f"_base_ = 'mmseg::{base}'\n"
        f"model = {_python(overrides, 0)}\n"
    )
    return text, base


def _dataset_meta(recipe: Recipe) -> dict[str, Any]:
    dataset = get_dataset(recipe.data.dataset)
    meta: dict[str, Any] = {"classes": list(dataset.class_names)}
    if dataset.palette is not None:
        meta["palette"] = [[int(c) for c in colour] for colour in dataset.palette]
    return meta


def export_mmseg(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> ExportResult:
    """Export the run folder ``run_dir`` (its final weights, else its last checkpoint) to
    mmsegmentation (module docstring); ``out``: the new folder (default ``RUN_DIR/mmseg``)."""
    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir)
    problem = mmseg_form_problem(recipe)
    if problem is not None:
        raise GsbenchError(f"{run_dir}: cannot export to mmsegmentation: {problem}")
    out = Path(out) if out is not None else run_dir / DEFAULT_FOLDER
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GsbenchError(f"{out}: exists and is not an empty folder; choose another --out")
    state = load_model_weights(run_dir)
    mmseg_state = {key: tensor.detach().to("cpu").contiguous()
                   for key, tensor in to_mmseg_state_dict(recipe, state).items()}
    name = run_dir.resolve().name
    config, base = mmseg_config(recipe, state, name)
    checkpoint = {
        "meta": {"dataset_meta": _dataset_meta(recipe),
                 "exported_by": f"gsbench {gsbench.__version__}",
                 "gsbench_recipe": recipe.to_dict()},
        "state_dict": mmseg_state,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        atomic_write_bytes(staging / f"{name}.pth", buffer.getvalue())
        atomic_write_text(staging / f"{name}.py", config)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out / f"{name}.pth", out / f"{name}.py", f"mmseg::{base}",
                        len(mmseg_state))
