"""What every source of released weights declares: :class:`Source`, and the input normalisation
it expects (:class:`Preprocessing`).

A source is one code base whose training script saved the files (hszhao/semseg, nv-tlabs/GSCNN,
mmsegmentation). Its module in this package defines ``SOURCE``, an instance of a
:class:`Source` subclass, with the facts read from the official code at ``commit``: which
recipes can receive its files (:meth:`Source.check_recipe`), the official-form model options the
weights need (:meth:`Source.model_options`), the key mapping (:meth:`Source.mapping`), the
preprocessing, and the official test procedure (:meth:`Source.test_protocol`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gsbench.errors import GsbenchError
from gsbench.recipes import Recipe
from gsbench.weights.mapping import Mapping


@dataclass(frozen=True)
class Preprocessing:
    """How a source turns an image into the network's input: ``(x - mean) / std`` per channel,
    with ``x`` in ``channel_order`` and in 0..``value_range`` (255: uint8 values, 1: scaled to
    [0, 1] first); ``where``: the official file that does it."""

    channel_order: str
    value_range: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    where: str

    def rgb_unit(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for RGB values in [0, 1], the form gsbench's ``Normalize`` takes."""
        order = {"RGB": (0, 1, 2), "BGR": (2, 1, 0)}[self.channel_order]
        return (tuple(self.mean[i] / self.value_range for i in order),
                tuple(self.std[i] / self.value_range for i in order))

    def same_as(self, other: Preprocessing, tolerance: float = 1e-6) -> bool:
        """Whether both compute the same network input from the same image."""
        return all(abs(a - b) <= tolerance for pair in zip(self.rgb_unit(), other.rgb_unit())
                   for a, b in zip(*pair))

    def as_dict(self) -> dict[str, Any]:
        return {"channel_order": self.channel_order, "value_range": self.value_range,
                "mean": list(self.mean), "std": list(self.std), "where": self.where}


#: What gsbench's input pipeline computes (``gsbench.data.transforms.Normalize``): RGB, values
#: scaled to [0, 1], ImageNet mean and std. Every dataset, training and test, goes through it.
GSBENCH_PREPROCESSING = Preprocessing("RGB", 1.0, IMAGENET_MEAN, IMAGENET_STD,
                                      "gsbench/data/transforms.py Normalize")


class Source:
    """A code base whose released checkpoints gsbench imports (module docstring)."""

    #: the ``--from`` name
    name: str = ""
    #: the official repository, and the commit whose code the mapping and protocol were read from
    repository: str = ""
    commit: str = ""
    preprocessing: Preprocessing = GSBENCH_PREPROCESSING
    #: globals besides tensors and plain values that its files hold (see ``reading.py``)
    allowed_globals: Sequence[Any] = ()
    #: top-level entries its training script saves beside the state dict, and why none is needed
    training_only_entries: dict[str, str] = {}
    #: the official script (and settings) whose procedure :meth:`test_protocol` describes
    test_script: str = ""

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise a GsbenchError if ``recipe``'s model is none of the source's architectures."""
        raise NotImplementedError

    def check_file(self, path: Path, state_dict: dict[str, torch.Tensor], recipe: Recipe) -> None:
        """Raise a GsbenchError if the file itself (its name, its tensors) says it is not for
        ``recipe``, naming what to use instead; by default nothing is checked beyond the
        mapping."""

    def model_options(self, recipe: Recipe) -> dict[str, Any]:
        """The model options (``model.<name>``: value) of the official forms the weights need."""
        raise NotImplementedError

    def mapping(self, recipe: Recipe) -> Mapping:
        """The key mapping for ``recipe``'s model (already with :meth:`model_options`)."""
        raise NotImplementedError

    def test_protocol(self, recipe: Recipe) -> dict[str, Any]:
        """The source's own test procedure for ``recipe``'s dataset and architecture, as a
        recipe's ``test:`` section writes it."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "repository": self.repository, "commit": self.commit}


def require(condition: bool, source: Source, recipe: Recipe, what: str) -> None:
    """One-line refusal of a recipe the source has no weights for."""
    if not condition:
        raise GsbenchError(f"recipe {recipe.name!r}: {what}; {source.repository} has no "
                           "such checkpoints")
