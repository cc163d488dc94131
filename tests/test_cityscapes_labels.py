"""The Cityscapes label table equals the official one in cityscapesscripts."""

import numpy as np
import pytest

from gsbench.data import cityscapes as L

official = pytest.importorskip("cityscapesscripts.helpers.labels")


def test_table_matches_cityscapesscripts():
    ours = {(lab.name, lab.id, lab.train_id, lab.category, lab.has_instances,
             lab.ignore_in_eval, lab.color) for lab in L.CITYSCAPES_LABELS}
    theirs = {(lab.name, lab.id, lab.trainId, lab.category, lab.hasInstances,
               lab.ignoreInEval, lab.color) for lab in official.labels}
    assert ours == theirs


def test_lookup_tables_agree_with_official_mapping():
    for lab in official.labels:
        if lab.id < 0:
            continue
        expected = lab.trainId if 0 <= lab.trainId < 255 else 255
        assert L.CITYSCAPES_LABEL_TO_TRAIN[lab.id] == expected, lab.name
        if 0 <= lab.trainId < 255:
            assert L.CITYSCAPES_TRAIN_TO_LABEL[lab.trainId] == lab.id
    assert L.CITYSCAPES_TRAIN_TO_LABEL[255] == 0
    assert np.all(L.CITYSCAPES_LABEL_TO_TRAIN[34:] == 255)


def test_class_names_and_instance_classes():
    assert len(L.CITYSCAPES_CLASS_NAMES) == L.CITYSCAPES_NUM_CLASSES == 19
    assert L.CITYSCAPES_CLASS_NAMES[0] == "road" and L.CITYSCAPES_CLASS_NAMES[-1] == "bicycle"
    names = {L.CITYSCAPES_CLASS_NAMES[t] for t in L.CITYSCAPES_INSTANCE_TRAIN_IDS}
    assert names == {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
