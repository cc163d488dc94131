"""What gsbench knows about a dataset (:class:`DatasetDescription`), and what its reader finds on
disk (:class:`RawDataset`).

Each dataset module (:mod:`gsbench.data.cityscapes`, :mod:`gsbench.data.ade20k`, ...) declares
one description next to the reader of its raw layout; :mod:`gsbench.data.registry` lists them
by name. Code that depends on the dataset asks its description instead of comparing names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsbench.data.labels import LabelTable
from gsbench.data.raw import RawSample, read_raw_label


@dataclass(frozen=True, eq=False)
class DatasetDescription:
    """One dataset: its name, classes and label table, the reader of its raw layout, and the
    evaluation defaults that depend on it.

    ``find(root, out, *, progress=False, **options)`` finds the raw files under ``root``
    (extracting official archives into ``out``) and returns a :class:`RawDataset`; ``options``
    are the reader's own keyword arguments (Cityscapes: ``coarse``). ``label_reader`` reads one
    raw label file as a 2-D uint8 id map; it runs in the prepare-data worker processes, so it
    must be a module-level function.
    """

    #: the name in manifests, recipes and the paper tables (recipes/tables)
    name: str
    #: class names in trainId order
    class_names: tuple[str, ...]
    #: raw label value -> trainId
    labels: LabelTable
    find: Callable[..., RawDataset]
    label_reader: Callable[[Path], np.ndarray] = read_raw_label
    #: Gated-SCNN's distance-based crop mIoU is evaluated unless asked otherwise. The crops
    #: assume Cityscapes' fixed 1024x2048 street views with a vanishing point; images of any
    #: size and aspect (a portrait ADE20K image has no room for them) get none.
    distance_crops: bool = False
    #: the instance-level IoU (iIoU) is evaluated when every sample of the split has its
    #: instance map (the Cityscapes benchmark's iIoU)
    iiou: bool = False
    #: trainId -> RGB colour (num_classes x 3, uint8) of the dataset's official colour coding
    palette: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.class_names) != self.labels.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for a label "
                             f"table of {self.labels.num_classes} classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class RawDataset:
    """A raw dataset found on disk: its description and its samples."""

    dataset: DatasetDescription
    samples: tuple[RawSample, ...]
