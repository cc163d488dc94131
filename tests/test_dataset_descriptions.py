"""Dataset descriptions: the shared label-table helper and the registry of the datasets."""

import numpy as np
import pytest

from gsbench.data.cityscapes import CITYSCAPES
from gsbench.data.cocostuff import COCO_STUFF
from gsbench.data.cocostuff10k import COCO_STUFF10K
from gsbench.data.labels import IGNORE_INDEX, LabelTable
from gsbench.data.registry import DATASETS, get_dataset
from gsbench.errors import GsbenchError


def test_label_table_maps_values_to_train_ids_and_void_or_unknown_to_ignore():
    table = LabelTable(values=(5, 3, 9), void=(0, 255))
    assert table.num_classes == 3
    assert table.to_train.dtype == np.uint8 and table.to_train.shape == (256,)
    assert [table.to_train[v] for v in (5, 3, 9)] == [0, 1, 2]
    assert table.to_train[0] == table.to_train[255] == table.to_train[4] == IGNORE_INDEX
    assert np.flatnonzero(table.known).tolist() == [0, 3, 5, 9, 255]
    with pytest.raises(ValueError):
        table.to_train[4] = 1  # shared by every user of the dataset: read-only


@pytest.mark.parametrize("values, void", [((1, 2, 1), ()), ((1, 2), (2,)), ((256,), ()),
                                          (tuple(range(256)), ())])
def test_label_table_refuses_repeated_or_out_of_range_values(values, void):
    with pytest.raises(ValueError):
        LabelTable(values=values, void=void)


def test_every_description_is_consistent():
    assert list(DATASETS) == ["cityscapes", "ade20k", "voc2012", "pascal_context", "coco_stuff",
                              "coco_stuff10k"]
    for name, dataset in DATASETS.items():
        assert dataset.name == name
        assert dataset.num_classes == len(dataset.class_names) == dataset.labels.num_classes
        values = np.array(dataset.labels.values)
        np.testing.assert_array_equal(dataset.labels.to_train[values],
                                      np.arange(dataset.num_classes))
        assert dataset.labels.known[values].all()
    assert [n for n, d in DATASETS.items() if d.distance_crops] == ["cityscapes"]
    assert [n for n, d in DATASETS.items() if d.iiou] == ["cityscapes"]
    assert CITYSCAPES.palette.shape == (19, 3) and CITYSCAPES.palette.dtype == np.uint8
    assert CITYSCAPES.palette[0].tolist() == [128, 64, 128]  # road


def test_cocostuff10k_table_is_the_164k_table_shifted_by_one():
    """``S - 1`` is a value of the 164k maps, with unlabeled ``S = 0`` becoming 255."""
    np.testing.assert_array_equal(COCO_STUFF10K.labels.to_train,
                                  np.roll(COCO_STUFF.labels.to_train, 1))
    np.testing.assert_array_equal(COCO_STUFF10K.labels.known, np.roll(COCO_STUFF.labels.known, 1))


def test_unknown_dataset_names_the_known_ones():
    assert get_dataset("ade20k") is DATASETS["ade20k"]
    with pytest.raises(GsbenchError, match=r"unknown dataset 'kitti' \(known: cityscapes, ade20k"):
        get_dataset("kitti")


def test_manifest_names_are_the_paper_tables_dataset_names():
    from gsbench.tables.registry import KNOWN_DATASETS

    assert set(DATASETS) <= set(KNOWN_DATASETS)
