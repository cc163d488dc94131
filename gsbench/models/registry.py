"""Model registry: a plain dict of builder functions, timm style.

Every method file in :mod:`gsbench.models` decorates its builder with :func:`register_model`;
:func:`build_model` and :func:`list_models` import every module of the package first, so a new
method file registers itself just by existing. Builders take the same keyword arguments::

    num_classes: int, backbone: str = "resnet101", output_stride: int = 8,
    pretrained: str | None = None, aux: bool = True, dropout: float = 0.1

plus method-specific keyword arguments (e.g. ``ocnet(context="asp")``), each with a type
annotation and the paper's value as default. They are the model's recipe options, declared
nowhere else: :func:`gsbench.recipes.model_options` reads names, types and defaults from the
builder's signature.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import Callable

from torch import nn

from gsbench.errors import GsbenchError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_PACKAGE = "gsbench.models"


def register_model(fn: Callable | None = None, *, name: str | None = None):
    """Register a model builder under ``name`` (default: the function's name).

    Use as ``@register_model`` or ``@register_model(name="deeplabv3plus")``.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _MODELS and _MODELS[key] is not builder:
            raise ValueError(f"model {key!r} is registered twice ({_MODELS[key].__module__} "
                             f"and {builder.__module__})")
        _MODELS[key] = builder
        return builder

    return decorator(fn) if fn is not None else decorator


def import_all_model_modules() -> None:
    """Import every module of gsbench.models so that their builders are registered."""
    package = importlib.import_module(_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{_PACKAGE}.{info.name}")


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    import_all_model_modules()
    return sorted(_MODELS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name raises a GsbenchError with hints."""
    import_all_model_modules()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.4)
        known = ", ".join(sorted(_MODELS))
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {known}"
        raise GsbenchError(f"unknown model {name!r}; {hint}")
    return _MODELS[name]


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments.

    A keyword the builder does not take raises a GsbenchError naming it and the accepted ones.
    """
    builder = get_model_builder(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise GsbenchError(f"model {name!r} does not take {', '.join(unknown)}; "
                               f"it takes {', '.join(params)}")
    return builder(**kwargs)
