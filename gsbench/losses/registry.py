"""Loss registry: the loss class of each model, chosen by the model's registry name.

Every model trains with :class:`~gsbench.losses.common.SegmentationLoss` unless a loss file of
this package registers its own class for it with :func:`register_loss`, as
:mod:`gsbench.models.registry` does for builders: :func:`build_loss` imports every module of
the package first, so a new loss file registers itself just by existing. The registry is keyed
by name only and imports no model module (the model files do not know their losses either).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil

from torch import nn

from gsbench.errors import GsbenchError
from gsbench.losses.common import SegmentationLoss

_PACKAGE = "gsbench.losses"


#: Loss class of each model that needs more than :class:`SegmentationLoss` (edge or boundary
#: terms); every other model trains with :class:`SegmentationLoss`.
MODEL_LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(model_name: str):
    """Class decorator: ``@register_loss("gscnn")`` makes the class the loss of that model.

    The class takes the keyword arguments of :class:`SegmentationLoss` plus its own, each with
    the paper's value as default, and ``forward(outputs, batch) -> dict`` with a "loss" entry.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if model_name in MODEL_LOSSES:
            raise ValueError(f"a loss is already registered for model {model_name!r}")
        MODEL_LOSSES[model_name] = cls
        return cls

    return decorator


def import_all_loss_modules() -> None:
    """Import every module of gsbench.losses so that their loss classes are registered."""
    package = importlib.import_module(_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{_PACKAGE}.{info.name}")


def build_loss(model_name: str, *, options: dict | None = None, **common) -> nn.Module:
    """The loss of ``model_name``; ``options`` are the recipe's ``train.loss_options``."""
    import_all_loss_modules()  # loss files register their classes when they are imported
    cls = MODEL_LOSSES.get(model_name, SegmentationLoss)
    options = dict(options or {})
    accepted = [name for name in inspect.signature(cls).parameters if name not in common]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (closest valid key: 'train.loss_options.{close[0]}')" if close else (
                f" ({cls.__name__} takes no extra options)" if not accepted else "")
            raise GsbenchError(f"unknown key 'train.loss_options.{key}' for model {model_name!r}{hint}")
    return cls(**common, **options)
