"""Training checkpoints: atomic to write, safe to read (``torch.load(weights_only=True)``).

A checkpoint holds only tensors and plain Python values, never pickled objects, so loading one
runs no code. The training state (``checkpoints/last.pt``)::

    {"format": "gsbench-checkpoint/1", "kind": "train", "iteration": int, "epoch": int,
     "batches_done": int,              # batches of `epoch` already trained (sampler position)
     "model": state_dict, "optimizer": state_dict, "scaler": state_dict or {},
     "rng": {"python": ..., "numpy": ..., "torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "recipe": dict}

and the final weights (``checkpoints/final.pt``): ``{"format", "kind": "model", "iteration",
"model", "recipe"}``; :func:`load_model_weights` reads either. Where they lie in a run folder
is :mod:`gsbench.engine.run_dir`'s. The training engine writes a checkpoint only from finite
weights and optimizer state (:func:`first_nonfinite`).
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsbench.engine.run_dir import find_checkpoint
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, sha256_file

CHECKPOINT_FORMAT = "gsbench-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a crash mid-write leaves the previous file intact)."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GsbenchError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise GsbenchError(f"{path}: not a readable checkpoint ({load_error_text(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise GsbenchError(f"{path}: not a gsbench checkpoint (format must be {CHECKPOINT_FORMAT!r})")
    return state


def load_error_text(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message as one plain line of at most ``limit`` characters: terminal escapes
    and control characters removed, and of ``torch.load``'s advice around a refused file only
    what names the refused content (its advice to load unsafely or allowlist is not ours)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))
    text = text.split("WeightsUnpickler error:")[-1].split(". Please use `torch.serialization")[0]
    advice = ("Weights only load failed", "Check the documentation of torch.load")
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip() and not p.strip().startswith(advice)]
    text = " ".join(paragraphs) or text
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_nonfinite(named: Iterable[tuple[str, Any]]) -> str | None:
    """The name of the first floating-point tensor of ``named`` holding a NaN or an infinity,
    or None when all are finite; decided on the tensors' device with one read by the host."""
    tensors = [(name, t) for name, t in named if torch.is_tensor(t) and t.is_floating_point()]
    if not tensors:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors]).cpu().tolist()
    return next((name for (name, _), ok in zip(tensors, finite) if not ok), None)


def load_model_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state_dict of a checkpoint file, or of a run folder (its final weights, else
    its last training checkpoint)."""
    path, _ = find_checkpoint(path)
    state = load_checkpoint(path)
    if "model" not in state:
        raise GsbenchError(f"{path}: checkpoint has no 'model' weights")
    return state["model"]


def initialise_from(model: torch.nn.Module, source: str | os.PathLike) -> dict[str, Any]:
    """Copy into ``model`` the weights of ``source`` (a run folder or a checkpoint file, as
    :func:`load_model_weights` reads it) wherever a tensor's name and shape match; the model's
    other tensors stay as built. A matching name with another shape, or no matching name at
    all, is a GsbenchError. Returns what was done, for the run folder's record: the file, its
    sha256, the number of tensors loaded, and the model's tensors left as built and the
    source's tensors not used (their numbers, and the modules they lie in, named to two levels:
    ``decode_head.fusion``)."""
    path, _ = find_checkpoint(source)
    weights = load_model_weights(path)
    own = model.state_dict()
    for name, tensor in weights.items():
        if name in own and tuple(tensor.shape) != tuple(own[name].shape):
            raise GsbenchError(f"{path}: tensor {name} has shape {list(tensor.shape)} but the "
                               f"model's has {list(own[name].shape)}")
    loaded = [name for name in own if name in weights]
    if not loaded:
        raise GsbenchError(f"{path}: no tensor name of these weights is one of the model's")
    model.load_state_dict({name: weights[name] for name in loaded}, strict=False)
    as_built = [name for name in own if name not in weights]
    unused = [name for name in weights if name not in own]
    return {"file": str(path.resolve()), "sha256": sha256_file(path), "loaded": len(loaded),
            "as_built": len(as_built), "as_built_modules": _modules(as_built),
            "unused": len(unused), "unused_modules": _modules(unused)}


def _modules(names: list[str]) -> list[str]:
    """The modules of tensor names to two levels, in order: ``decode_head.fusion``."""
    return list(dict.fromkeys(".".join(name.split(".")[:2]) for name in names))


def capture_rng_state() -> dict[str, Any]:
    """The global random states (python, numpy, torch, CUDA) as tensors and plain values."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"],
        "gauss": np_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
