"""Released-checkpoint layouts for the tests (``tests/fixtures/weights/<source>/<arch>.json``,
written by ``tests/fixtures/weights/gen_official_fixtures.py`` from the official model code),
and state dicts built from them, as the official training scripts would have saved them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "weights"


def load_fixture(source: str, arch: str) -> dict:
    return json.loads((FIXTURES / source / f"{arch}.json").read_text(encoding="utf-8"))


def fixture_shapes(fixture: dict, dataset: str | None = None) -> dict[str, list[int]]:
    """``{key: shape}`` of the fixture for ``dataset`` (the class count and, for PSANet, the
    mask size of that dataset: the fixture's ``dataset_dependent`` formulas)."""
    dataset = dataset or fixture["reference_dataset"]
    facts = fixture["datasets"][dataset]
    names = {"classes": facts["classes"]}
    if "mask" in facts:
        names["mask_h"], names["mask_w"] = facts["mask"]
    shapes = dict(fixture["tensors"])
    for key, formula in fixture["dataset_dependent"].items():
        shapes[key] = eval(formula, {"__builtins__": {}}, names)  # "[classes, 512, 1, 1]"
    return shapes


def random_state_dict(fixture: dict, dataset: str | None = None, *, device: str = "cpu",
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the fixture's layout (keys with their ``module.`` prefix); on the
    ``meta`` device only the shapes and dtypes exist."""
    generator = torch.Generator().manual_seed(seed)
    by_suffix = fixture["dtypes"]["by_suffix"]
    state = {}
    for key, shape in fixture_shapes(fixture, dataset).items():
        dtype = getattr(torch, next((d for s, d in by_suffix.items() if key.endswith(s)), "float32"))
        if device == "meta":
            state[key] = torch.empty(shape, dtype=dtype, device="meta")
        elif dtype.is_floating_point:
            state[key] = torch.randn(shape, generator=generator, dtype=dtype)
        else:
            state[key] = torch.randint(0, 1000, shape, generator=generator, dtype=dtype)
    return state
