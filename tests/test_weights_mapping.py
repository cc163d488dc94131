"""The key mapping: every source tensor mapped or dropped with a reason, every model tensor
filled exactly once, shape mismatches with both shapes, all in one-line errors."""

from __future__ import annotations

import pytest
import torch

from gsbench.errors import GsbenchError
from gsbench.weights.mapping import Mapping, Rule, map_state_dict

TARGET = {
    "conv.weight": torch.zeros(4, 3, 1, 1),
    "bn.weight": torch.zeros(4),
    "bn.num_batches_tracked": torch.tensor(5),
    "mask_hw": torch.tensor([3, 3]),
}
MAPPING = Mapping(
    "toy/1",
    (Rule(r"features\.0\.(.+)", r"conv.\1", "conv"),
     Rule(r"features\.1\.(.+)", r"bn.\1", "BN"),
     Rule(r"aux\..+", None, "training-only head")),
    derived={r"mask_hw": "from the recipe"},
    optional={r".+\.num_batches_tracked": "absent from old files"},
)


def source(**changes):
    state = {"features.0.weight": torch.randn(4, 3, 1, 1), "features.1.weight": torch.randn(4),
             "features.1.num_batches_tracked": torch.tensor(9), "aux.weight": torch.randn(2)}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def test_every_tensor_is_accounted_for():
    given = source()
    state, report = map_state_dict(given, MAPPING, TARGET, "f.pth")
    assert set(state) == set(TARGET)
    assert torch.equal(state["conv.weight"], given["features.0.weight"])
    assert int(state["bn.num_batches_tracked"]) == 9
    assert report.mapped == {"features.0.weight": "conv.weight", "features.1.weight": "bn.weight",
                             "features.1.num_batches_tracked": "bn.num_batches_tracked"}
    assert report.dropped == {"aux.weight": "training-only head"}
    assert report.kept == {"mask_hw": "from the recipe"}


def test_an_optional_tensor_missing_from_the_file_keeps_the_models_value():
    state, report = map_state_dict(source(**{"features.1.num_batches_tracked": None}), MAPPING,
                                   TARGET, "f.pth")
    assert int(state["bn.num_batches_tracked"]) == 5
    assert report.kept["bn.num_batches_tracked"] == "absent from old files"


def test_unmapped_source_keys_are_named_with_their_shapes():
    with pytest.raises(GsbenchError) as error:
        map_state_dict(source(**{"head.weight": torch.zeros(7, 2)}), MAPPING, TARGET, "f.pth")
    message = str(error.value)
    assert message.startswith("f.pth: 1 source tensors match no rule of mapping toy/1: "
                              "head.weight [7, 2]")
    assert "\n" not in message


def test_a_key_with_no_place_in_the_model():
    mapping = Mapping("toy/1", MAPPING.rules + (Rule(r"extra\.(.+)", r"extra.\1"),),
                      MAPPING.derived, MAPPING.optional)
    with pytest.raises(GsbenchError, match=r"1 have no place in the net: extra.w \[1\] "
                                           r"\(-> extra.w\)"):
        map_state_dict(source(**{"extra.w": torch.zeros(1)}), mapping, TARGET, "f.pth", "the net")


def test_a_shape_mismatch_names_both_shapes():
    with pytest.raises(GsbenchError, match=r"f.pth: 1 tensors differ in shape from the model's: "
                                           r"features.0.weight \[19, 3, 1, 1\] vs conv.weight "
                                           r"\[4, 3, 1, 1\]"):
        map_state_dict(source(**{"features.0.weight": torch.zeros(19, 3, 1, 1)}), MAPPING,
                       TARGET, "f.pth")


def test_a_model_tensor_without_source_is_an_error():
    with pytest.raises(GsbenchError, match=r"1 tensors of the model get no tensor from the file: "
                                           r"bn.weight \[4\]"):
        map_state_dict(source(**{"features.1.weight": None}), MAPPING, TARGET, "f.pth")


def test_two_source_keys_for_one_target_is_an_error():
    mapping = Mapping("toy/1", (Rule(r"features\.\d\.weight", "bn.weight"),) + MAPPING.rules)
    with pytest.raises(GsbenchError, match="features.0.weight and features.1.weight both map"):
        map_state_dict(source(), mapping, TARGET, "f.pth")


def test_long_lists_are_cut_in_the_message():
    extra = {f"junk.{i}": torch.zeros(i + 1) for i in range(10)}
    with pytest.raises(GsbenchError, match=r"10 source tensors .*junk.3 \[4\] and 6 more"):
        map_state_dict(source(**extra), MAPPING, TARGET, "f.pth")


def test_transform_is_applied_before_the_shape_check():
    flip = Rule(r"features\.0\.weight", "conv.weight", "reversed input channels",
                lambda w: w.flip(1))
    mapping = Mapping("toy/1", (flip,) + MAPPING.rules, MAPPING.derived, MAPPING.optional)
    given = source()
    state, report = map_state_dict(given, mapping, TARGET, "f.pth")
    assert torch.equal(state["conv.weight"], given["features.0.weight"].flip(1))
    assert report.transformed == {"features.0.weight": "reversed input channels"}
