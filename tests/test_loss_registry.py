"""Losses are chosen by model name; recipe loss options are checked against the loss class."""

import pytest
import torch

from gsbench.errors import GsbenchError
from gsbench.losses import SegmentationLoss, build_loss, register_loss
from gsbench.losses.registry import MODEL_LOSSES
from gsbench.recipes import build_loss_from_recipe, load_recipe


def test_default_loss_is_segmentation_loss_with_recipe_settings():
    loss = build_loss_from_recipe(load_recipe("psanet101-smoke", ["train.ohem_thresh=0.7"]))
    assert type(loss) is SegmentationLoss and loss.ohem_thresh == 0.7


def test_registered_loss_gets_its_options_and_typos_are_named(monkeypatch):
    monkeypatch.setattr("gsbench.losses.registry.MODEL_LOSSES", dict(MODEL_LOSSES))

    @register_loss("toy")
    class ToyLoss(SegmentationLoss):
        def __init__(self, edge_weight: float = 20.0, **common):
            super().__init__(**common)
            self.edge_weight = edge_weight

    common = dict(ignore_index=255, aux_weight=0.4, ohem_thresh=None, ohem_min_kept=10)
    assert build_loss("toy", options={"edge_weight": 3.0}, **common).edge_weight == 3.0
    with pytest.raises(GsbenchError, match="train.loss_options.edge_wieght.*closest valid key: 'train.loss_options.edge_weight'"):
        build_loss("toy", options={"edge_wieght": 3.0}, **common)
    with pytest.raises(GsbenchError, match="takes no extra options"):
        build_loss("fcn", options={"edge_weight": 3.0}, **common)
    out = build_loss("toy", **common)({"out": torch.zeros(1, 2, 2, 2)}, {"label": torch.zeros(1, 2, 2, dtype=torch.long)})
    assert torch.isclose(out["loss"], torch.log(torch.tensor(2.0)))


def test_model_losses_are_found_without_building_the_model_first():
    # DANet's loss file registers it on import; build_loss must not depend on import order.
    loss = build_loss("danet", ignore_index=255, aux_weight=0.4, ohem_thresh=None, ohem_min_kept=10)
    assert type(loss).__name__ == "DANetLoss"
