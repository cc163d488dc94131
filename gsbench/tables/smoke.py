"""What trains a table's cell at each scale: the paper's recipe, or its toy smoke stand-in.

At ``full`` scale a cell is trained with its own recipe and ``--set`` overrides. At ``smoke``
scale (``gsbench ablate --scale smoke``, matched by ``gsbench report --scale smoke``) it is
trained with the toy-size ``-smoke`` variant of its recipe or of the recipe's closest relative
(tiny backbone and crops, a few CPU iterations), with the cell's other settings as ``--set``
overrides, so that a table's ablation runs end to end on synthetic data (:func:`smoke_training`).
It is evaluated with the cell's test protocol at the toy images' own size
(:func:`cell_evaluation`).

The ``-smoke`` recipes are looked for in ``smoke_dir``: the built-in recipes folder unless a
caller names another folder of ``<recipe>-smoke.yaml`` files, whose recipes ``gsbench train`` is
then given by path.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gsbench.errors import GsbenchError
from gsbench.evaluation.setting import EvalSetting
from gsbench.recipes import RECIPES_DIR, Recipe, list_recipes, load_recipe
from gsbench.tables.cells import Cell, cell_recipe
from gsbench.tables.runs import RUN_MATCH_IGNORED, run_name

#: The sizes a table's runs can be trained at (``--scale``): the papers' recipes, or their toy
#: ``-smoke`` variants (tiny backbone and crops, a few CPU iterations) that run end to end on
#: synthetic data.
RUN_SCALES = ("full", "smoke")
SMOKE_SUFFIX = "-smoke"


def check_scale(scale: str) -> None:
    """A GsbenchError unless ``scale`` is one of :data:`RUN_SCALES`."""
    if scale not in RUN_SCALES:
        raise GsbenchError(f"unknown scale {scale!r} (use {' or '.join(RUN_SCALES)})")


@dataclass(frozen=True)
class TrainingSpec:
    """What ``gsbench train`` is given to train a cell (or its baseline) at a scale: the recipe
    (a built-in name, or a file of another smoke folder), its ``--set`` overrides, the resolved
    recipe (what run folders are matched against) and the run folder name; for a cell
    initialised from another row's run (:attr:`~gsbench.tables.cells.Cell.init_from`), what
    trains that run: the job of that run gives ``train.init_from`` its folder."""

    recipe: str
    overrides: tuple[str, ...]
    resolved: Recipe
    folder: str
    init_from: TrainingSpec | None = None


def smoke_recipe(family: str, smoke_dir: Path = RECIPES_DIR) -> str:
    """What ``gsbench train --recipe`` is given for ``family``'s smoke variant: its name when
    ``smoke_dir`` is the built-in folder, else its file."""
    if Path(smoke_dir).resolve() == RECIPES_DIR:
        return family + SMOKE_SUFFIX
    return str(Path(smoke_dir) / f"{family}{SMOKE_SUFFIX}.yaml")


def smoke_families(name: str, smoke_dir: Path = RECIPES_DIR) -> list[str]:
    """Recipes ``F`` with a ``F-smoke`` variant in ``smoke_dir`` that may stand for ``name`` at
    smoke scale, best first: ``name`` itself, then ``name`` cut at its last ``_`` part,
    repeatedly (``gscnn101_nocanny`` -> ``gscnn101``), then every other recipe of the same
    model."""
    with_smoke = [n for n in list_recipes() if not n.endswith(SMOKE_SUFFIX)
                  and (Path(smoke_dir) / f"{n}{SMOKE_SUFFIX}.yaml").is_file()]
    chain, candidate = [], name
    while True:
        if candidate in with_smoke:
            chain.append(candidate)
        if "_" not in candidate:
            break
        candidate = candidate.rsplit("_", 1)[0]
    model = load_recipe(name).model.name
    same_model = [n for n in with_smoke if n not in chain and load_recipe(n).model.name == model]
    return chain + same_model


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _override_text(key: str, value: Any) -> str:
    """``key=value`` that ``--set`` parses back (YAML) into ``value``."""
    text = json.dumps(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and \
            yaml.safe_load(value) == value:
        text = value  # plain words need no quotes
    return f"{key}={text}"


_ABSENT = object()


def smoke_training(name: str, overrides: tuple[str, ...] = (),
                   smoke_dir: Path = RECIPES_DIR) -> TrainingSpec:
    """The smoke-scale stand-in of recipe ``name`` with ``overrides`` (from the ``-smoke``
    recipes in ``smoke_dir``).

    The mapping: take the first family ``F`` of :func:`smoke_families` that can express it. The
    keys in which ``F-smoke`` differs from ``F`` are the toy-size keys (backbone, crop,
    iterations, batch ...). The smoke run trains ``F-smoke`` with every other key of ``name`` +
    ``overrides`` that differs from ``F`` as a ``--set`` override, so a variant
    (``gscnn101_nocanny``, ``gff101_baseline``) and the cell's overrides keep their meaning while
    the toy-size keys stay toy-sized (a cell's ``train.iterations`` or ``model.backbone``
    override is superseded). ``F`` cannot express ``name`` when ``name`` lacks one of ``F``'s keys
    (a ``--set`` cannot remove a key). Raises GsbenchError when no family can."""
    families = smoke_families(name, smoke_dir)
    if not families:
        raise GsbenchError(f"no smoke recipe for {name} (no {name}{SMOKE_SUFFIX}, nor a "
                           f"{SMOKE_SUFFIX} variant of a shorter name or of the same model)")
    wanted = _flatten(load_recipe(name, overrides).to_dict())
    ignored = set(RUN_MATCH_IGNORED)
    problems = []
    for family in families:
        full = _flatten(load_recipe(family).to_dict())
        stand_in = smoke_recipe(family, smoke_dir)
        smoke = _flatten(load_recipe(stand_in).to_dict())
        toy = {k for k in full.keys() | smoke.keys()
               if full.get(k, _ABSENT) != smoke.get(k, _ABSENT)}
        dropped = sorted(k for k in full if k not in wanted and k not in toy and k not in ignored)
        if dropped:
            more = f" (+{len(dropped) - 2} more)" if len(dropped) > 2 else ""
            problems.append(f"{family}{SMOKE_SUFFIX} has {', '.join(dropped[:2])}{more}, "
                            f"which {name} lacks")
            continue
        sets = tuple(_override_text(k, v) for k, v in wanted.items()
                     if k not in toy and k not in ignored and full.get(k, _ABSENT) != v)
        resolved = load_recipe(stand_in, sets)
        kept = tuple(o for o in overrides if o.split("=", 1)[0].strip() not in toy)
        return TrainingSpec(stand_in, sets, resolved, run_name(name + SMOKE_SUFFIX, kept))
    raise GsbenchError(f"no smoke variant expresses {name}: {'; '.join(problems)} "
                       f"(a --set cannot remove a key)")


def cell_training(cell: Cell, baseline: bool = False, scale: str = "full",
                  smoke_dir: Path = RECIPES_DIR) -> TrainingSpec:
    """What trains ``cell`` (or its baseline) at ``scale`` (``full``: the cell's recipe and
    overrides; ``smoke``: :func:`smoke_training` of them, from ``smoke_dir``).

    A cell initialised from another row's cell (:attr:`Cell.init_from`; its baseline is not)
    is trained with ``train.init_from`` set: its resolved recipe says so with the row's id (run
    folders match by whether it is set, :func:`~gsbench.tables.runs.recipe_fingerprint`), its
    folder name ends in ``+init_from=ROW`` and :attr:`TrainingSpec.init_from` is that row's
    training at the same scale."""
    check_scale(scale)
    name = cell.baseline if baseline else cell.recipe
    sets = cell.baseline_overrides if baseline else cell.overrides
    if name is None:
        raise GsbenchError(f"{cell.table_id} {cell.row_id}.{cell.column}: the cell names no recipe")
    if scale == "full":
        spec = TrainingSpec(name, sets, cell_recipe(cell, baseline=baseline), run_name(name, sets))
    else:
        spec = _smoke_training_cached(name, sets, Path(smoke_dir))
        if isinstance(spec, str):
            raise GsbenchError(spec)
    source = None if baseline else cell.init_from
    if source is None:
        return spec
    resolved = spec.resolved
    marked = dataclasses.replace(resolved, train=dataclasses.replace(resolved.train,
                                                                     init_from=source.row_id))
    return dataclasses.replace(spec, resolved=marked,
                               folder=run_name(spec.folder, (f"init_from={source.row_id}",)),
                               init_from=cell_training(source, scale=scale, smoke_dir=smoke_dir))


def cell_evaluation(cell: Cell, scale: str = "full") -> EvalSetting:
    """The evaluation that scores ``cell`` at ``scale``: the cell's own (its test protocol) at
    full scale; at smoke scale the same protocol without its ``base_size``, so that toy images
    are tested at their own size (a 64 x 128 image is not resized to a 2048-pixel long side)."""
    check_scale(scale)
    setting = cell.evaluation
    if scale == "full" or setting.protocol.base_size is None:
        return setting
    protocol = dataclasses.replace(setting.protocol, base_size=None)
    return EvalSetting(setting.split, output=setting.output, protocol=protocol)


@functools.lru_cache(maxsize=None)
def _smoke_training_cached(name: str, overrides: tuple[str, ...],
                           smoke_dir: Path) -> TrainingSpec | str:
    # the refusal is cached too: a table repeats its recipes over many cells (a folder's recipes
    # do not change while gsbench runs; another folder is another key)
    try:
        return smoke_training(name, overrides, smoke_dir)
    except GsbenchError as exc:
        return str(exc)
