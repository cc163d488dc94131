"""Training recipes: a flat YAML file per model/dataset setup, validated against a typed schema.

A recipe names the model (registry name, backbone and method options), the data pipeline (crop,
scale range, flips ...) and the optimisation (lr, poly power, iterations, batch ...). The built-in
recipes live in the repository's ``recipes/`` folder (``recipes/<name>.yaml``); any YAML file with
the same keys can be passed by path. Overrides use dotted keys whose values are parsed as YAML
scalars (``train.lr=0.02``, ``data.crop_size=[512,512]``, ``pretrained=null``).

Every unknown or misspelt key, at any level and in overrides, is a one-line
:class:`~gsbench.errors.GsbenchError` that names the closest valid key, and so is a value of the
wrong type. Method options of a model (e.g. PSANet's ``psa_type``) are declared once, by the
keyword arguments of the model's builder: :func:`model_options` reads their names, recipe types
and defaults from the builder's signature.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from gsbench.errors import GsbenchError
from gsbench.protocol import RECIPE_TYPES as TEST_TYPES
from gsbench.protocol import TestProtocol

#: The folder of built-in recipes (``recipes/`` beside the package in a source checkout).
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class ModelConfig:
    """Which model to build: ``build_model(name, num_classes=..., backbone=..., **options)``."""

    name: str
    backbone: str = "resnet101"
    output_stride: int = 8
    aux: bool = True
    dropout: float = 0.1
    #: method-specific keyword arguments (written flat in the YAML ``model:`` section; the
    #: builder declares them, see :func:`model_options`)
    options: dict[str, Any] = field(default_factory=dict)

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the model builder, except ``num_classes`` and ``pretrained``."""
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
        return {
            "backbone": self.backbone,
            "output_stride": self.output_stride,
            "aux": self.aux,
            "dropout": self.dropout,
            **options,
        }

    def __getattr__(self, name: str) -> Any:
        # recipe.model.psa_type reads a method option like a field: the recipe's value, or the
        # builder's default when the recipe leaves the option out
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        model = self.__dict__.get("name")
        if not name.startswith("_") and isinstance(model, str) and model in _model_names():
            declared = model_options(model).get(name)
            if declared is not None:
                return declared.default
        raise AttributeError(name)


#: Builder keyword arguments that are not method options: the shared fields of
#: :class:`ModelConfig`, and the two a recipe gives elsewhere (``data.num_classes``,
#: ``pretrained``).
SHARED_BUILDER_ARGUMENTS = ("num_classes", "pretrained", *(
    f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("name", "options")))


@dataclass(frozen=True)
class ModelOption:
    """A method option of a model, as a recipe writes it (``model.<name>`` in YAML)."""

    name: str
    #: the YAML type: a list where the builder takes a tuple or a sequence
    type: Any
    #: the builder's default, in the YAML type (lists for tuples)
    default: Any
    #: a two-value tuple of the builder (``[height, width]`` in the recipe)
    pair: bool = False


def model_options(model: str) -> dict[str, ModelOption]:
    """The method options of ``model``, in the builder's order: every keyword argument of its
    registered builder besides :data:`SHARED_BUILDER_ARGUMENTS`, with the recipe type derived
    from the builder's annotation and the builder's default.

    Annotations map to recipe types as ``tuple[int, ...]`` / ``Sequence[int]`` -> ``list[int]``
    (nested alike), ``tuple[int, int]`` -> a list of two ints (``pair``); a union is written in
    its first form (``tuple[int, int] | int | None``: a list of two ints, or null), the other
    forms being conveniences of the builder for Python callers.
    """
    from gsbench.models.registry import get_model_builder

    builder = get_model_builder(model)
    hints = typing.get_type_hints(builder)
    declared = {}
    for name, parameter in inspect.signature(builder).parameters.items():
        if name in SHARED_BUILDER_ARGUMENTS:
            continue
        where = f"builder of model {model!r}, argument {name!r}"
        if name not in hints or parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{where}: a method option needs a type annotation and a default")
        recipe_type, pair = _recipe_type(hints[name], where)
        declared[name] = ModelOption(name, recipe_type, _as_yaml(parameter.default), pair)
    return declared


def _model_names() -> list[str]:
    from gsbench.models.registry import list_models

    return list_models()


def _recipe_type(hint: Any, where: str) -> tuple[Any, bool]:
    """(recipe type, is a two-value pair) of a builder annotation; see :func:`model_options`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        first, pair = _recipe_type(next(a for a in args if a is not type(None)), where)
        return (first | None if type(None) in args else first), pair
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[_recipe_type(args[0], where)[0]], False
    if origin is tuple and len(args) == 2 and args[0] == args[1]:
        return list[_recipe_type(args[0], where)[0]], True
    if origin in (list, collections.abc.Sequence) and len(args) == 1:
        return list[_recipe_type(args[0], where)[0]], False
    if hint in (bool, int, float, str):
        return hint, False
    raise TypeError(f"{where}: no recipe form for the annotation {hint!r}")


def _as_yaml(value: Any) -> Any:
    """A builder default as a recipe writes it: tuples become lists."""
    if isinstance(value, (tuple, list)):
        return [_as_yaml(v) for v in value]
    return value


@dataclass(frozen=True)
class DataConfig:
    """Dataset and the joint training transforms (in the order they are applied)."""

    dataset: str
    num_classes: int
    crop_size: list[int]  # [height, width]
    root: str | None = None  # prepared dataset folder; the --data option overrides it
    train_split: str = "train"
    val_split: str = "val"
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    rotate_degrees: float = 0.0  # uniform in [-d, d]; 0 disables rotation
    blur_prob: float = 0.0  # probability of a 5x5 Gaussian blur
    #: [low, high]: the blur's sigma is uniform in it (kernel to 4 sigma); null: the 5x5 kernel
    blur_sigma: list[float] | None = None
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; 0 disables it
    hue_jitter: float = 0.0  # hue shift uniform in [-h, h] of the hue circle (h <= 0.5)
    jitter_order: str = "fixed"  # "random": the jitter steps in a random order per image
    flip: bool = True
    #: fraction of each epoch's crops centred on a class drawn uniformly among the split's
    #: classes (Gated-SCNN's test-server model: 0.5; see gsbench.data.uniform); 0 disables it
    class_uniform: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: SGD with momentum and the poly schedule ``lr * (1 - it/iters) ** power``."""

    iterations: int
    batch_size: int  # global batch, split evenly across torchrun processes
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    head_lr_mult: float = 10.0  # lr multiplier for every parameter outside model.backbone
    aux_weight: float = 0.4
    ohem_thresh: float | None = None
    ohem_min_kept: int = 100000
    amp: bool = True  # autocast + grad scaler; CUDA only, ignored on CPU
    amp_dtype: str = "bfloat16"  # or "float16"
    channels_last: bool = True  # model and images in NHWC memory layout (CPU and CUDA)
    num_workers: int = 4
    log_every: int = 20
    checkpoint_every: int = 1000
    val_every: int = 0  # validate (mIoU) every N iterations; 0 disables it
    #: extra keyword arguments of the model's loss (e.g. Gated-SCNN's edge weight), checked
    #: against the loss class's signature when it is built
    loss_options: dict[str, Any] = field(default_factory=dict)
    #: a run folder or checkpoint whose weights initialise the model where names and shapes
    #: match, over the backbone's ``pretrained`` weights (GFF Table 1: the trained PSPNet);
    #: null: the model as built
    init_from: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    description: str = ""
    seed: int = 0
    pretrained: str | None = None  # backbone weights (a path), or null to train from scratch
    #: the default test protocol of ``gsbench eval RUN`` (gsbench.protocol; flags override it)
    test: TestProtocol = field(default_factory=TestProtocol)

    def to_dict(self) -> dict[str, Any]:
        """Plain, flat dictionary as written in YAML (method options inside ``model``)."""
        model = {f.name: getattr(self.model, f.name) for f in dataclasses.fields(ModelConfig)}
        model.update(model.pop("options"))
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "pretrained": self.pretrained,
            "model": model,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "test": self.test.to_dict(),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --- loading --------------------------------------------------------------------------------------


def list_recipes() -> list[str]:
    """Names of the built-in recipes."""
    if not RECIPES_DIR.is_dir():
        return []
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | os.PathLike, overrides: Iterable[str] = ()) -> Recipe:
    """Load a built-in recipe by name (``psanet101``) or a YAML file by path, apply ``key=value``
    overrides and validate the result."""
    path, source = _locate(name_or_path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise GsbenchError(f"{path}: a recipe must be a mapping of keys to values")
    raw = _resolve_base(raw, path)
    raw.setdefault("name", path.stem)
    overrides = list(overrides)
    for item in overrides:
        _apply_override(raw, item)
    return recipe_from_dict(raw, source=source, override_keys=[o.split("=", 1)[0] for o in overrides])


def recipe_from_dict(
    raw: dict[str, Any], source: str = "recipe", override_keys: Iterable[str] = ()
) -> Recipe:
    """Validate a plain dictionary (as read from YAML) into a :class:`Recipe`."""
    override_keys = {k.strip() for k in override_keys}
    try:
        recipe = _build(Recipe, raw, "")
        _check_values(recipe)
        return recipe
    except _SchemaError as exc:
        overridden = exc.key in override_keys or any(
            exc.key.startswith(f"{key}.") for key in override_keys)
        where = f"--set {exc.key}" if overridden else source
        raise GsbenchError(f"{where}: {exc.message}") from None


def build_model_from_recipe(recipe: Recipe, pretrained: str | None = None):
    """The recipe's model, with ``pretrained`` (or the recipe's) backbone weights."""
    from gsbench.models.registry import build_model

    return build_model(
        recipe.model.name,
        num_classes=recipe.data.num_classes,
        pretrained=pretrained if pretrained is not None else recipe.pretrained,
        **recipe.model.builder_kwargs(),
    )


def build_loss_from_recipe(recipe: Recipe):
    """The loss registered for the recipe's model (:func:`gsbench.losses.build_loss`): by default
    cross-entropy with ignore (255), the recipe's aux weight and optional OHEM."""
    from gsbench.losses import build_loss

    return build_loss(
        recipe.model.name,
        ignore_index=255,
        aux_weight=recipe.train.aux_weight,
        ohem_thresh=recipe.train.ohem_thresh,
        ohem_min_kept=recipe.train.ohem_min_kept,
        options=recipe.train.loss_options,
    )


def _locate(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        if not path.is_file():
            raise GsbenchError(f"{path}: recipe file not found")
        return path, str(path)
    builtin = RECIPES_DIR / f"{text}.yaml"
    if builtin.is_file():
        return builtin, f"recipe {text}"
    if path.is_file():
        return path, str(path)
    close = difflib.get_close_matches(text, list_recipes(), n=3, cutoff=0.5)
    hint = f" (closest: {', '.join(close)})" if close else " (see `gsbench zoo`)"
    raise GsbenchError(f"unknown recipe {text!r}{hint}")


def _resolve_base(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """A recipe may name one ``base:`` recipe; its keys are merged under this file's keys."""
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str):
        raise GsbenchError(f"{path}: 'base' must be a recipe name")
    base_path, _ = _locate(base_name)
    base = _read_yaml(base_path)
    if not isinstance(base, dict) or "base" in base:
        raise GsbenchError(f"{path}: base recipe {base_name!r} must be a plain recipe (no base chains)")
    base.pop("name", None)
    return _deep_merge(base, raw)


def _read_yaml(path: Path) -> Any:
    """The YAML document in the UTF-8 text file ``path``, or a one-line error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GsbenchError(f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} "
                           f"at offset {exc.start})") from None
    except OSError as exc:
        raise GsbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GsbenchError(f"{path}: not valid YAML ({_one_line(exc)})") from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise GsbenchError(f"--set {item}: expected key=value (e.g. train.lr=0.02)")
    key, text = (s.strip() for s in item.split("=", 1))
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise GsbenchError(f"--set {item}: expected a dotted key such as train.lr")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise GsbenchError(f"--set {item}: value is not a YAML scalar ({_one_line(exc)})") from None
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise GsbenchError(f"--set {item}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


# --- schema validation ----------------------------------------------------------------------------


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
#: The largest float32 (the precision the models and the optimiser compute in) and the bound of
#: a 64-bit integer: every number of a recipe must fit them.
_FLOAT32_MAX = 3.4028234663852886e38
_INT64_LIMIT = 2**63


class _SchemaError(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def _build(cls: type, raw: Any, prefix: str) -> Any:
    section = prefix.rstrip(".") or "recipe"
    if not isinstance(raw, dict):
        raise _SchemaError(prefix.rstrip("."), f"{section} must be a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if cls is ModelConfig:
        return _build_model_config(raw, prefix, hints, fields)
    if cls is TestProtocol:
        return _build_test_protocol(raw, prefix)
    _reject_unknown(raw, fields, prefix)
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _SchemaError(key, f"missing required key {key!r}")
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], key + ".")
        else:
            values[name] = _check_type(raw[name], hint, key)
    return cls(**values)


def _build_model_config(raw, prefix, hints, fields) -> ModelConfig:
    name = raw.get("name")
    if not isinstance(name, str):
        raise _SchemaError(prefix + "name", f"missing required key {prefix + 'name'!r} (a model name)")
    models = _model_names()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=3, cutoff=0.4)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise _SchemaError(prefix + "name", f"unknown model {name!r}{hint}")
    option_types = {key: option.type for key, option in model_options(name).items()}
    allowed = {n: f for n, f in fields.items() if n != "options"}
    _reject_unknown(raw, {**allowed, **option_types}, prefix)
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key in allowed:
            values[key] = _check_type(value, hints[key], prefix + key)
        else:
            options[key] = _check_type(value, option_types[key], prefix + key)
    return ModelConfig(**values, options=options)


def _build_test_protocol(raw: dict[str, Any], prefix: str) -> TestProtocol:
    _reject_unknown(raw, TEST_TYPES, prefix)
    values = {key: _check_type(value, TEST_TYPES[key], prefix + key) for key, value in raw.items()}
    try:
        return TestProtocol(**values)
    except GsbenchError as exc:  # its messages start with the key, "test.<key> ..."
        key = str(exc).split(" ", 1)[0].rstrip(":")
        raise _SchemaError(key if key.startswith(prefix) else prefix.rstrip("."), str(exc)) from None


def _check_values(recipe: Recipe) -> None:
    """Range checks that types alone cannot express."""
    positive = {
        "data.num_classes": recipe.data.num_classes,
        "train.iterations": recipe.train.iterations,
        "train.batch_size": recipe.train.batch_size,
        "train.lr": recipe.train.lr,
        "train.log_every": recipe.train.log_every,
        "train.checkpoint_every": recipe.train.checkpoint_every,
        "model.output_stride": recipe.model.output_stride,
    }
    for key, value in positive.items():
        if value <= 0:
            raise _SchemaError(key, f"{key} must be positive, got {value}")
    head_lr = recipe.train.lr * recipe.train.head_lr_mult
    if abs(head_lr) > _FLOAT32_MAX:
        raise _SchemaError("train.lr", f"train.lr x train.head_lr_mult = {head_lr:.4g} (the head's "
                                       f"learning rate) exceeds float32's range "
                                       f"({_FLOAT32_MAX:.4g})")
    for key, value in {"train.val_every": recipe.train.val_every,
                       "train.num_workers": recipe.train.num_workers}.items():
        if value < 0:
            raise _SchemaError(key, f"{key} must be zero or positive, got {value}")
    pairs = {"data.crop_size": recipe.data.crop_size, "data.scale_range": recipe.data.scale_range}
    for option in model_options(recipe.model.name).values():
        if option.pair and recipe.model.options.get(option.name) is not None:
            pairs[f"model.{option.name}"] = recipe.model.options[option.name]
    for key, value in pairs.items():
        if len(value) != 2:
            raise _SchemaError(key, f"{key} must be a list of two values [height, width], got {value}")
    if min(recipe.data.crop_size) <= 0:
        raise _SchemaError("data.crop_size", f"data.crop_size must be positive, got {recipe.data.crop_size}")
    low, high = recipe.data.scale_range
    if not 0 < low <= high:
        raise _SchemaError("data.scale_range", f"data.scale_range must be 0 < low <= high, got {[low, high]}")
    _check_range("data.blur_prob", recipe.data.blur_prob, 0, 1)
    sigma = recipe.data.blur_sigma
    if sigma is not None and (len(sigma) != 2 or not 0 < sigma[0] <= sigma[1]):
        raise _SchemaError("data.blur_sigma", "data.blur_sigma must be [low, high] with "
                           f"0 < low <= high, got {sigma}")
    _check_range("data.hue_jitter", recipe.data.hue_jitter, 0, 0.5)
    if recipe.data.jitter_order not in ("fixed", "random"):
        raise _SchemaError("data.jitter_order", "data.jitter_order must be fixed or random, "
                           f"got {recipe.data.jitter_order!r}")
    _check_range("data.class_uniform", recipe.data.class_uniform, 0, 1)
    if recipe.train.amp_dtype not in ("bfloat16", "float16"):
        raise _SchemaError("train.amp_dtype", f"train.amp_dtype must be bfloat16 or float16, got {recipe.train.amp_dtype!r}")


def _reject_unknown(raw: dict[str, Any], valid: Iterable[str], prefix: str) -> None:
    valid = list(valid)
    for key in raw:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.0)
            hint = f" (closest valid key: {prefix + close[0]!r})" if close else ""
            raise _SchemaError(prefix + str(key), f"unknown key {prefix + str(key)!r}{hint}")


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise _SchemaError(key, f"{key} must be in [{low:g}, {high:g}], got {value}")


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _check_type(value, non_none[0], key)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list) or not value:
            raise _SchemaError(key, f"{key} must be a list of {item_type.__name__}s, got {_describe(value)}")
        return [_check_type(v, item_type, key) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _SchemaError(key, f"{key} must be a mapping, got {_describe(value)}")
        _check_free_numbers(value, key)
        return value
    if hint is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            # PyYAML (YAML 1.1) reads 1e-4 as a string; users mean a number
            return _finite_float32(value.strip(), key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _SchemaError(key, f"{key} must be a number, got {_describe(value)}")
        return _finite_float32(value, key)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _SchemaError(key, f"{key} must be an integer, got {_describe(value)}")
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise _SchemaError(key, f"{key} must fit a 64-bit integer, got {value}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _SchemaError(key, f"{key} must be true or false, got {_describe(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _SchemaError(key, f"{key} must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported schema type {hint!r} for {key}")


def _check_free_numbers(value: Any, key: str) -> None:
    """The numbers inside a free-form mapping (``train.loss_options``, typed later by the loss's
    signature) obey the rule of every typed number: finite, and within float32's range."""
    if isinstance(value, dict):
        for name, item in value.items():
            _check_free_numbers(item, f"{key}.{name}")
    elif isinstance(value, list):
        for item in value:
            _check_free_numbers(item, key)
    elif isinstance(value, float):
        _finite_float32(value, key)


def _finite_float32(value: int | float | str, key: str) -> float:
    """``value`` as a float once it is finite and within float32's range: the engine computes in
    float32 (the SGD step adds ``-lr * grad``), where a larger number overflows to inf."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if math.isnan(number) or abs(number) > _FLOAT32_MAX:
        raise _SchemaError(key, f"{key} must be a finite number within float32's range "
                                f"(|value| <= {_FLOAT32_MAX:.4g}), got {value}")
    return number


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
