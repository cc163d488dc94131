"""The label convention of gsbench, and the label table every dataset declares.

Inside gsbench labels are trainIds in uint8 with ``IGNORE_INDEX`` (255) = ignore; a dataset's raw
label values (Cityscapes labelIds, ADE20K annotation values, ...) appear only at the edges
(prepare-data, export), through the :class:`LabelTable` of that dataset's module
(:mod:`gsbench.data.cityscapes`, :mod:`gsbench.data.ade20k`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True, eq=False)
class LabelTable:
    """How a dataset's raw label values become trainIds.

    ``values[t]`` is the raw value of trainId ``t`` (so there are ``len(values)`` classes);
    ``void`` lists the raw values that exist in the official table but are not evaluated (they
    become :data:`IGNORE_INDEX`). Any other raw value is outside the table: prepare-data refuses
    a label file that holds one.

    ``to_train`` (uint8, 256 entries) maps every raw value to its trainId, 255 for void and
    unknown values; ``known`` (bool, 256 entries) marks the values of the table. Both are
    read-only, as they are shared by every user of the dataset.
    """

    values: tuple[int, ...]
    void: tuple[int, ...] = ()
    to_train: np.ndarray = field(init=False, repr=False)
    known: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        listed = list(self.values) + list(self.void)
        if len(self.values) > IGNORE_INDEX:
            raise ValueError(f"at most {IGNORE_INDEX} classes fit in uint8 trainIds, got "
                             f"{len(self.values)}")
        if any(not 0 <= v <= 255 for v in listed) or len(set(listed)) != len(listed):
            raise ValueError("label values must be distinct integers in 0..255")
        to_train = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        to_train[list(self.values)] = np.arange(len(self.values), dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        known[listed] = True
        for array in (to_train, known):
            array.flags.writeable = False
        object.__setattr__(self, "to_train", to_train)
        object.__setattr__(self, "known", known)

    @property
    def num_classes(self) -> int:
        return len(self.values)
