"""``gsbench import-weights``: a released checkpoint as an ordinary, finished run folder.

:func:`import_weights` reads the file safely (:mod:`.reading`), checks that the recipe is one the
source has weights for, resolves the recipe with the source's official-form model options (for
example ``model.align_corners: true`` for hszhao/semseg), maps every tensor onto the recipe's
model (:mod:`.mapping`), and writes::

    RUN/recipe.yaml             the resolved recipe (official forms; the source's test
                                procedure as its ``test:`` section)
    RUN/checkpoints/final.pt    the weights, in gsbench's checkpoint format
    RUN/provenance.json         source, repository and commit read, file name, size, sha256,
                                the mapping (every key, what was dropped and why), the
                                source's preprocessing and test procedure, the recipe asked for
    RUN/command.txt, versions.json

into a temporary sibling folder renamed to ``RUN`` at the end: an import that fails leaves no
``RUN`` behind, and ``RUN`` must be absent or empty. ``gsbench eval RUN`` and ``gsbench report``
then treat it like a trained run (the report marks its cells "released weights").

The source's preprocessing must be gsbench's own (``gsbench.data.transforms.Normalize``: RGB,
[0, 1], ImageNet mean / std), since every dataset goes through that one pipeline; a source that
normalises otherwise is refused with one line saying how. hszhao/semseg (RGB 0-255 with the mean
and std times 255) and nv-tlabs/GSCNN (``ToTensor`` then the ImageNet statistics) compute the
same input.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsbench.engine.checkpoint import save_checkpoint
from gsbench.engine.run_dir import (
    CHECKPOINTS_DIR, FINAL_NAME, PROVENANCE_FILE, RECIPE_FILE,
)
from gsbench.engine.train import versions
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_json, atomic_write_text, sha256_file
from gsbench.models.backbones import RandomInitWarning
from gsbench.recipes import Recipe, build_model_from_recipe, load_recipe, recipe_from_dict
from gsbench.weights import get_source
from gsbench.weights.mapping import MappingReport, map_state_dict
from gsbench.weights.reading import read_released_checkpoint
from gsbench.weights.source import GSBENCH_PREPROCESSING, Source

PROVENANCE_FORMAT = "gsbench-imported-weights/1"


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    recipe: Recipe
    report: MappingReport
    provenance: dict[str, Any]


def imported_recipe(base: Recipe, source: Source, file_name: str) -> Recipe:
    """``base`` with the source's official-form model options, its test procedure as the
    default test protocol (the ``test:`` section ``gsbench eval RUN`` follows), no backbone
    weights to load (the file has every tensor) and a description that says where the weights
    came from."""
    raw = base.to_dict()
    raw["model"].update(source.model_options(base))
    raw["test"] = source.test_protocol(base)
    raw["pretrained"] = None
    raw["description"] = (f"{base.description} Weights: {file_name} released with "
                          f"{source.repository}, imported with its official forms.").strip()
    return recipe_from_dict(raw, source=f"recipe {base.name} with {source.repository}'s forms")


def default_run_dir(recipe: Recipe, source: Source) -> Path:
    """``runs/<recipe>-<source>``, beside the runs ``gsbench train`` writes."""
    return Path("runs") / f"{recipe.name}-{source.name}"


def import_weights(
    file: str | os.PathLike,
    source_name: str,
    recipe_name: str,
    out: str | os.PathLike | None = None,
    command: Sequence[str] = (),
) -> ImportResult:
    """Import the released checkpoint ``file`` of ``source_name`` for ``recipe_name`` (a built-in
    recipe or a YAML file) into the run folder ``out`` (module docstring)."""
    file = Path(file)
    source = get_source(source_name)
    base = load_recipe(recipe_name)
    source.check_recipe(base)
    if not source.preprocessing.same_as(GSBENCH_PREPROCESSING):
        raise GsbenchError(
            f"{source.repository} normalises its input as {source.preprocessing.as_dict()}, "
            f"gsbench as {GSBENCH_PREPROCESSING.as_dict()}: its weights cannot be imported")
    run_dir = Path(out) if out is not None else default_run_dir(base, source)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise GsbenchError(f"{run_dir}: exists and is not an empty folder; choose another --out")
    checkpoint = read_released_checkpoint(file, source.allowed_globals)
    unknown = [e for e in checkpoint.other_entries if e not in source.training_only_entries]
    if unknown:
        raise GsbenchError(
            f"{file}: top-level entries {', '.join(map(repr, unknown))} are not what "
            f"{source.repository}'s training script saves beside the weights "
            f"({', '.join(source.training_only_entries)}): not a {source.name} checkpoint?")
    recipe = imported_recipe(base, source, file.name)
    source.check_file(file, checkpoint.state_dict, recipe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)  # every weight comes from the file
        model = build_model_from_recipe(recipe, pretrained=None)
    state, report = map_state_dict(checkpoint.state_dict, source.mapping(recipe),
                                   model.state_dict(), where=str(file),
                                   model_name=f"recipe {base.name}'s model")
    model.load_state_dict(state, strict=True)
    provenance = {
        "format": PROVENANCE_FORMAT,
        **source.describe(),
        "file": file.name,
        "bytes": file.stat().st_size,
        "sha256": sha256_file(file),
        "recipe": base.name,
        "requested_recipe": base.to_dict(),
        "model_options": source.model_options(base),
        "preprocessing": source.preprocessing.as_dict(),
        "test_protocol": recipe.test.to_dict(),
        "test_script": source.test_script,
        "checkpoint": {"state_dict_entry": checkpoint.entry,
                       "data_parallel_prefix": checkpoint.data_parallel,
                       "dropped_entries": {e: source.training_only_entries[e]
                                           for e in checkpoint.other_entries}},
        "mapping": report.as_dict(),
    }
    _write_run(run_dir, recipe, state, provenance, command)
    return ImportResult(run_dir, recipe, report, provenance)


def _write_run(run_dir: Path, recipe: Recipe, state: dict, provenance: dict[str, Any],
               command: Sequence[str]) -> None:
    """Write the run folder's files into a temporary sibling, then rename it to ``run_dir``
    (which must be absent or empty: a rename onto a non-empty folder fails)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = run_dir.parent / f".{run_dir.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        atomic_write_text(staging / RECIPE_FILE, recipe.to_yaml())
        save_checkpoint(staging / CHECKPOINTS_DIR / FINAL_NAME, {
            "kind": "model", "iteration": None, "model": state, "recipe": recipe.to_dict(),
            "imported": {key: provenance[key] for key in ("source", "repository", "commit",
                                                          "file", "sha256")}})
        atomic_write_json(staging / PROVENANCE_FILE, json.loads(json.dumps(provenance)))
        if command:
            atomic_write_text(staging / "command.txt", shlex.join(command) + "\n")
        atomic_write_json(staging / "versions.json", versions())
        try:
            os.rename(staging, run_dir)
        except OSError as exc:
            raise GsbenchError(f"{run_dir}: cannot create the run folder ({exc.strerror}; "
                               "another import or run wrote it meanwhile?)") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
