"""The label convention of gsbench: trainIds in uint8 with ``IGNORE_INDEX`` (255) = ignore.

Inside gsbench labels are trainIds everywhere; a dataset's raw label values (Cityscapes labelIds,
ADE20K annotation values, ...) appear only at the edges (prepare-data, export), through the label
table of that dataset's module (:mod:`gsbench.data.cityscapes`, :mod:`gsbench.data.ade20k`, ...).
"""

from __future__ import annotations

IGNORE_INDEX = 255
