"""The run folders under a folder (``runs/`` by default, any depth), found by what they trained.

A run matches a cell when its ``recipe.yaml`` equals the cell's resolved recipe in every key
that changes the result; the keys in :data:`RUN_MATCH_IGNORED` (seed, name, paths, logging and
data-loader settings) may differ. The backbone weights' path is one of them (it differs between
machines); whether a run started from pretrained weights is kept (:attr:`RunInfo.pretrained`).
Likewise a run initialised from another run (``train.init_from``) is matched by whether it was,
not by the path: a cell initialised from a row's run is filled by a run initialised from any
run, and only by such runs.
A run imported from released weights (``gsbench import-weights``, :attr:`RunInfo.released`)
also matches the cells of the recipe it was imported for, whose model it is in the official
forms (its ``provenance.json`` records that recipe).
:func:`eval_metrics_file` finds the metrics ``gsbench eval`` wrote for an evaluation setting of a
run, and :func:`run_name` names the folder of a run to train.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gsbench.engine.run_dir import PROVENANCE_FILE
from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.recipes import recipe_from_dict

#: Recipe keys that may differ between a run and a cell's recipe: they do not change the numbers
#: (the seed is what the mean +- std is taken over).
RUN_MATCH_IGNORED = (
    "name", "description", "seed", "pretrained", "data.root", "train.num_workers",
    "train.log_every", "train.checkpoint_every", "train.val_every", "train.channels_last",
    "test",  # the default test protocol: each evaluation names its own (eval/<split>_<tag>)
)


@dataclass(frozen=True)
class RunInfo:
    path: Path
    seed: int
    fingerprint: str
    pretrained: bool  # whether the backbone started from pretrained weights
    released: bool = False  # imported from a released checkpoint (gsbench import-weights)


def _drop(mapping: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if not rest:
        mapping.pop(head, None)
    elif isinstance(mapping.get(head), dict):
        _drop(mapping[head], rest)


def recipe_fingerprint(recipe_dict: dict[str, Any]) -> str:
    """The result-relevant part of a resolved recipe (``Recipe.to_dict()``), as a stable string."""
    data = json.loads(json.dumps(recipe_dict))
    for key in RUN_MATCH_IGNORED:
        _drop(data, key)
    if isinstance(data.get("train"), dict):  # whether it is set, not where it points
        data["train"]["init_from"] = data["train"].get("init_from") is not None
    return json.dumps(data, sort_keys=True)


class RunIndex:
    """The run folders under a directory (any depth), by recipe fingerprint."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self.by_fingerprint: dict[str, list[RunInfo]] = {}
        self.warnings: list[str] = []
        if not self.runs_dir.is_dir():
            return
        for recipe_file in sorted(self.runs_dir.rglob("recipe.yaml")):
            run_dir = recipe_file.parent
            try:
                raw = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
                recipe = recipe_from_dict(raw, source=str(recipe_file))
            except (OSError, yaml.YAMLError, GsbenchError, TypeError, AttributeError) as exc:
                self.warnings.append(f"{recipe_file}: skipped, not a readable recipe "
                                     f"({' '.join(str(exc).split())})")
                continue
            fingerprints = [recipe_fingerprint(recipe.to_dict())]
            provenance = run_dir / PROVENANCE_FILE
            if provenance.is_file():
                try:
                    requested = json.loads(provenance.read_text(encoding="utf-8"))
                    fingerprints.append(recipe_fingerprint(requested["requested_recipe"]))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self.warnings.append(f"{provenance}: skipped, not a readable provenance "
                                         f"record ({' '.join(str(exc).split())})")
                    continue
            for fingerprint in dict.fromkeys(fingerprints):
                info = RunInfo(run_dir, recipe.seed, fingerprint, recipe.pretrained is not None,
                               provenance.is_file())
                self.by_fingerprint.setdefault(info.fingerprint, []).append(info)

    def runs_for(self, recipe) -> list[RunInfo]:
        return self.by_fingerprint.get(recipe_fingerprint(recipe.to_dict()), [])

    def all_runs(self) -> list[RunInfo]:
        """Every run once (an imported run is indexed under two fingerprints)."""
        return list({run.path: run for runs in self.by_fingerprint.values() for run in runs}
                    .values())


def eval_metrics_file(run_dir: Path, setting: EvalSetting) -> Path | None:
    """``RUN/eval/<split>_<tag>/metrics.json`` of ``setting`` (its test protocol included) as
    ``gsbench eval`` writes it, or None."""
    path = setting.folder(run_dir) / "metrics.json"
    return path if path.is_file() else None


def run_name(recipe: str, overrides: tuple[str, ...] = ()) -> str:
    """The folder name of a run of ``recipe`` with ``overrides`` (what ablate trains into and
    the report suggests): the recipe, then its overrides."""
    parts = [recipe, *overrides]
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", "+".join(parts)).strip("_")

