"""The datasets gsbench knows, by name: one :class:`~gsbench.data.description.DatasetDescription`
each, declared in its own module beside the reader of its raw layout.

    from gsbench.data.registry import get_dataset
    get_dataset("cityscapes").labels.to_train   # labelId -> trainId

A new dataset is a module with its description and reader, and one entry here.
"""

from __future__ import annotations

from gsbench.data.ade20k import ADE20K
from gsbench.data.cityscapes import CITYSCAPES
from gsbench.data.cocostuff import COCO_STUFF
from gsbench.data.cocostuff10k import COCO_STUFF10K
from gsbench.data.context import PASCAL_CONTEXT
from gsbench.data.description import DatasetDescription
from gsbench.data.voc import VOC2012
from gsbench.errors import GsbenchError

#: dataset name -> description, in the order error messages list them
DATASETS: dict[str, DatasetDescription] = {
    dataset.name: dataset
    for dataset in (CITYSCAPES, ADE20K, VOC2012, PASCAL_CONTEXT, COCO_STUFF, COCO_STUFF10K)
}


def get_dataset(name: str) -> DatasetDescription:
    """The description of the dataset ``name``, or a GsbenchError listing the known names."""
    if name not in DATASETS:
        raise GsbenchError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return DATASETS[name]
