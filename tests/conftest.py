"""Fixtures shared by several test files."""

import numpy as np
import pytest

from gsbench.io import read_label
from gsbench.metrics.confusion import ConfusionMatrix


@pytest.fixture
def most_frequent_class_miou():
    """``miou(manifest, majority_from="train")``: the val mIoU of always predicting the most
    frequent labelled class of the ``majority_from`` split, the floor a smoke training must beat."""

    def miou(manifest, majority_from: str = "train") -> float:
        counts = np.zeros(256, np.int64)
        for sample in manifest.splits[majority_from]:
            counts += np.bincount(read_label(manifest.root / sample.label).ravel(), minlength=256)
        most_frequent = int(np.argmax(counts[:manifest.num_classes]))
        trivial = ConfusionMatrix(manifest.num_classes)
        for sample in manifest.splits["val"]:
            label = read_label(manifest.root / sample.label)
            trivial.update(np.full_like(label, most_frequent), label)
        return float(trivial.compute()["miou"])

    return miou


@pytest.fixture(params=["native", "opencv"])
def confusion_counting(request, monkeypatch):
    """The confusion matrices counted by the compiled loop (gsbench.native), then without it
    (OpenCV's joint histogram): for the test files of the metrics built on them."""
    from gsbench.metrics import confusion

    if request.param == "native":
        assert confusion._COUNTS.get() is not None  # a C compiler is part of the test setup
    else:
        monkeypatch.setattr(confusion._COUNTS, "get", lambda: None)
    return request.param


@pytest.fixture(params=["native", "pytorch"])
def inference_form(request, monkeypatch):
    """Test-time inference's per-pixel work (merging views, resizing, softmax, summing) by the
    compiled loops (gsbench.engine.inference_native), then by PyTorch's operators."""
    from gsbench.engine import inference_native

    if request.param == "native":
        assert inference_native.LIBRARY.get() is not None  # a C compiler is part of the test setup
    else:
        monkeypatch.setattr(inference_native.LIBRARY, "get", lambda: None)
    return request.param
