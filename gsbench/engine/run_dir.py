"""The run folder: what ``gsbench train`` leaves behind and how every other command reads it.

A run folder holds everything needed to understand and continue a run::

    recipe.yaml  command.txt  versions.json  seed.txt  log.csv  metrics.json (if validated)
    checkpoints/last.pt   (the full training state, every train.checkpoint_every iterations)
    checkpoints/final.pt  (the final weights)
    tensorboard/          (when the tensorboard package is installed)
    eval/<split>_<tag>/   (what ``gsbench eval RUN`` writes, see :mod:`gsbench.evaluation.setting`)
    provenance.json       (only in a run imported from released weights, :mod:`gsbench.weights`)

A run is *finished* once ``checkpoints/final.pt`` exists and *interrupted* while only
``checkpoints/last.pt`` does (``gsbench train --resume`` continues it). The checkpoint files'
contents are :mod:`gsbench.engine.checkpoint`'s. This module loads no torch, so that the tables
can look at run folders without loading the models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from gsbench.errors import GsbenchError
from gsbench.recipes import Recipe, load_recipe, recipe_from_dict

RECIPE_FILE = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"
LAST_NAME = "last.pt"
FINAL_NAME = "final.pt"
#: Where an imported run (``gsbench import-weights``) says where its weights came from.
PROVENANCE_FILE = "provenance.json"


def is_finished(run_dir: Path) -> bool:
    """Whether the run reached its last iteration (its final weights are written)."""
    return (Path(run_dir) / CHECKPOINTS_DIR / FINAL_NAME).is_file()


def is_interrupted(run_dir: Path) -> bool:
    """Whether the run stopped part-way with a checkpoint to resume from."""
    return (Path(run_dir) / CHECKPOINTS_DIR / LAST_NAME).is_file() and not is_finished(run_dir)


def check_run_dir(run_dir: Path, resume: bool) -> str | None:
    """Why ``run_dir`` cannot be used (or None): a fresh run needs an empty or absent folder,
    a resumed one a previous run's recipe and last checkpoint."""
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            return f"{run_dir}: run folder is not empty; pass --resume to continue it or choose another --out"
        return None
    for needed in (RECIPE_FILE, f"{CHECKPOINTS_DIR}/{LAST_NAME}"):
        if not (run_dir / needed).is_file():
            return f"{run_dir}: cannot resume, {needed} is missing"
    return None


def load_run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe saved in a run folder."""
    path = Path(run_dir) / RECIPE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GsbenchError(f"{path}: cannot read the run's recipe ({exc})") from None
    return recipe_from_dict(raw, source=str(path))


def load_resumed_recipe(
    run_dir: Path, recipe: str | None = None, overrides: Sequence[str] = ()
) -> Recipe:
    """The recipe a resumed run continues with: its own. ``recipe`` and ``overrides`` (what
    ``--recipe`` / ``--set`` asked for) may only repeat it; the data root may differ, since
    the run records where its data was."""
    resolved = load_run_recipe(run_dir)
    if recipe is not None or overrides:
        requested = load_recipe(recipe if recipe is not None else run_dir / RECIPE_FILE, overrides)
        same_data = {"root": resolved.data.root}
        if requested.to_dict() | {"data": requested.to_dict()["data"] | same_data} != resolved.to_dict():
            raise GsbenchError(f"{run_dir}/{RECIPE_FILE}: --recipe/--set differ from the run's "
                               "recipe; a resumed run keeps its recipe (start a new --out instead)")
    return resolved


def find_checkpoint(target: str | os.PathLike) -> tuple[Path, Path | None]:
    """(checkpoint file, run folder or None) for a run folder (its final weights, else its
    last training checkpoint) or a checkpoint file (inside ``RUN/checkpoints/`` or anywhere)."""
    target = Path(target).expanduser()
    if target.is_dir():
        for name in (FINAL_NAME, LAST_NAME):
            candidate = target / CHECKPOINTS_DIR / name
            if candidate.is_file():
                return candidate, target
        raise GsbenchError(
            f"{target}: no {CHECKPOINTS_DIR}/{FINAL_NAME} or {CHECKPOINTS_DIR}/{LAST_NAME} "
            "(is it a run folder?)"
        )
    if not target.exists():
        raise GsbenchError(f"{target}: no such run folder or checkpoint")
    run_dir = target.parent.parent if target.parent.name == CHECKPOINTS_DIR else None
    if run_dir is not None and not (run_dir / RECIPE_FILE).is_file():
        run_dir = None
    return target, run_dir
