"""Reading a released checkpoint safely: ``torch.load(weights_only=True)``, never a pickle that
can run code.

A released file is a PyTorch checkpoint (the zip format of torch >= 1.6, or the legacy format
of the older releases: hszhao/semseg and nv-tlabs/GSCNN were saved by torch 1.0 - 1.4). What
the training scripts wrapped around the tensors is unwrapped here:

* the state dict itself, or a dict holding it under ``"state_dict"`` (hszhao/semseg
  ``tool/train.py``, nv-tlabs/GSCNN ``utils/misc.py``, mmsegmentation) or ``"model"``;
* the ``module.`` prefix of a model saved inside ``DataParallel`` /
  ``DistributedDataParallel``, stripped once from every key;
* the other top-level entries (epoch, optimizer state, a metric, the command line, meta data)
  are returned by name so that the import can list what it dropped.

Some files hold more than tensors and plain Python values: GSCNN's ``mean_iu`` is a
``numpy.float64``. Such values need a minimal allow-list of globals (:data:`NUMPY_SCALAR`),
passed by the source that needs it; anything else that is not allowed fails with one line naming
the global. Every failure is a :class:`~gsbench.errors.GsbenchError` naming the file: a missing
file, a file that is no PyTorch checkpoint, a damaged or truncated one, one without a state dict.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsbench.errors import GsbenchError

#: The globals a ``numpy.float64`` scalar needs under ``weights_only=True``: numpy 2's scalar
#: reconstructor, the same under the name files pickled by numpy 1.x use, and the dtype.
NUMPY_SCALAR: tuple[Any, ...] = (
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType,
)

_ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy format starts with a protocol-2 pickle of its magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
#: Where a checkpoint's training script may have put the state dict, in the order looked at.
STATE_DICT_ENTRIES = ("state_dict", "model")
DATA_PARALLEL_PREFIX = "module."


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """The tensors of a released file, unwrapped, and what was around them."""

    #: source key (``module.`` removed) -> tensor, in the file's order
    state_dict: dict[str, torch.Tensor]
    #: top-level entries besides the state dict (``epoch``, ``optimizer``, ``meta`` ...)
    other_entries: tuple[str, ...]
    #: where the state dict was: ``"state_dict"``, ``"model"`` or ``""`` (the file's top level)
    entry: str
    #: whether every key carried the ``module.`` prefix (a DataParallel-wrapped model)
    data_parallel: bool


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _load(path: Path, allowed_globals: Sequence[Any]) -> Any:
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if not head:
        raise GsbenchError(f"{path}: empty file, not a checkpoint")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign, unsafe and damaged files
        message = str(exc)
        refused = re.search(r"GLOBAL ([\w.]+)", message)
        if refused and "weights only" in message.lower():
            raise GsbenchError(
                f"{path}: holds a pickled {refused.group(1)} object, which safe loading "
                "(torch.load weights_only=True) refuses; gsbench never runs code from a "
                "checkpoint") from None
        if head.startswith(_ZIP_MAGIC):
            kind = "damaged or truncated PyTorch checkpoint (zip format)"
        elif head == _LEGACY_MAGIC:
            kind = "damaged or truncated PyTorch checkpoint (legacy format)"
        else:
            kind = "not a PyTorch checkpoint"
        raise GsbenchError(f"{path}: {kind}: {_one_line(exc)}") from None


def read_released_checkpoint(path: str | os.PathLike,
                             allowed_globals: Sequence[Any] = ()) -> ReleasedCheckpoint:
    """Load ``path`` with ``torch.load(weights_only=True)`` (``allowed_globals`` added to the
    allow-list for this call only) and unwrap its state dict (module docstring)."""
    path = Path(path)
    if not path.exists():
        raise GsbenchError(f"{path}: no such file")
    if not path.is_file():
        raise GsbenchError(f"{path}: not a file (a checkpoint is one .pth / .pt file)")
    loaded = _load(path, allowed_globals)
    if not isinstance(loaded, dict):
        raise GsbenchError(f"{path}: holds a {type(loaded).__name__}, not a state dict or a "
                           "dict with one")
    entry = next((name for name in STATE_DICT_ENTRIES if isinstance(loaded.get(name), dict)), "")
    state = loaded[entry] if entry else loaded
    others = tuple(str(key) for key in loaded if key != entry) if entry else ()
    if not state:
        raise GsbenchError(f"{path}: the state dict{f' ({entry!r})' if entry else ''} is empty")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            top = ", ".join(map(str, list(loaded)[:8]))
            where = f"'{entry}' entry" if entry else f"top level (keys: {top})"
            raise GsbenchError(f"{path}: {where} is not a state dict: {key!r} holds a "
                               f"{type(value).__name__}, not a tensor")
    prefixed = [key.startswith(DATA_PARALLEL_PREFIX) for key in state]
    data_parallel = all(prefixed)
    if any(prefixed) and not data_parallel:
        plain = next(key for key in state if not key.startswith(DATA_PARALLEL_PREFIX))
        raise GsbenchError(f"{path}: some keys carry DataParallel's {DATA_PARALLEL_PREFIX!r} "
                           f"prefix and some do not (e.g. {plain!r})")
    if data_parallel:
        state = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
    return ReleasedCheckpoint(dict(state), others, entry, data_parallel)
