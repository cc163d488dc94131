"""Reading released checkpoints: weights_only loading with the numpy-scalar allow-list, the
unwrapping of state_dict / model / ``module.``, and one-line errors for bad files."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from gsbench.errors import GsbenchError
from gsbench.weights.reading import NUMPY_SCALAR, read_released_checkpoint

STATE = {"layer.weight": torch.arange(6.0).view(2, 3), "layer.bias": torch.ones(2)}


def _module(state):
    return {"module." + key: value for key, value in state.items()}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("wrapping", ["bare", "state_dict", "model"])
def test_state_dict_is_unwrapped_and_the_data_parallel_prefix_stripped(tmp_path, zip_format,
                                                                        wrapping):
    state = _module(STATE)
    saved = state if wrapping == "bare" else {wrapping: state, "epoch": 7, "optimizer": {}}
    path = tmp_path / "file.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=zip_format)
    loaded = read_released_checkpoint(path)
    assert list(loaded.state_dict) == list(STATE)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in STATE.items())
    assert loaded.data_parallel
    assert loaded.entry == ("" if wrapping == "bare" else wrapping)
    assert loaded.other_entries == (() if wrapping == "bare" else ("epoch", "optimizer"))


def test_keys_without_the_prefix_are_kept(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": STATE}, path)
    loaded = read_released_checkpoint(path)
    assert list(loaded.state_dict) == list(STATE) and not loaded.data_parallel


def test_a_numpy_scalar_needs_the_allow_list(tmp_path):
    """GSCNN's files hold mean_iu as numpy.float64: refused without the allow-list (naming the
    global), read with it - also in the legacy format and under numpy 1.x's module name."""
    path = tmp_path / "gscnn.pth"
    torch.save({"state_dict": _module(STATE), "mean_iu": np.float64(0.8)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(GsbenchError, match=r"gscnn.pth: holds a pickled numpy\S*scalar object"):
        read_released_checkpoint(path)
    assert list(read_released_checkpoint(path, NUMPY_SCALAR).state_dict) == list(STATE)
    numpy1 = tmp_path / "numpy1.pth"
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    numpy1.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert read_released_checkpoint(numpy1, NUMPY_SCALAR).other_entries == ("mean_iu",)


def test_other_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "args.pth"
    torch.save({"state_dict": STATE, "args": argparse.Namespace(lr=0.01)}, path)
    with pytest.raises(GsbenchError) as error:
        read_released_checkpoint(path, NUMPY_SCALAR)
    assert "argparse.Namespace" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_files_are_named_as_such(tmp_path, zip_format, keep):
    path = tmp_path / "cut.pth"
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}}, path,
               _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(GsbenchError) as error:
        read_released_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: damaged or truncated PyTorch checkpoint")
    assert "\n" not in message


@pytest.mark.parametrize("content, expected", [
    (b"", "empty file"),
    (b"label,iou\nroad,0.98\n", "not a PyTorch checkpoint"),
])
def test_files_that_are_no_checkpoint(tmp_path, content, expected):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(GsbenchError, match=f"weights.pth: {expected}"):
        read_released_checkpoint(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(GsbenchError, match="nope.pth: no such file"):
        read_released_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(GsbenchError, match="not a file"):
        read_released_checkpoint(tmp_path)


@pytest.mark.parametrize("saved, expected", [
    ([torch.zeros(2)], "holds a list, not a state dict"),
    ({"state_dict": {}}, "the state dict \\('state_dict'\\) is empty"),
    ({"epoch": 3, "best": 0.5}, "top level \\(keys: epoch, best\\) is not a state dict: 'epoch' "
                                "holds a int"),
    ({"state_dict": {"module.a": torch.zeros(1), "b": torch.zeros(1)}}, "some keys carry"),
])
def test_containers_that_hold_no_state_dict(tmp_path, saved, expected):
    path = tmp_path / "odd.pth"
    torch.save(saved, path)
    with pytest.raises(GsbenchError, match=expected):
        read_released_checkpoint(path)
