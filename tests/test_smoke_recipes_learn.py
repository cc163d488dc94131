"""The smoke recipes not covered by their model's own learning test also learn on synthetic
data: the loss falls and the val mIoU beats always predicting the most frequent class."""

import numpy as np
import pytest
import torch

from gsbench.data.synthetic import prepare_synthetic
from gsbench.engine.train import train
from gsbench.recipes import load_recipe

# gscnn101-smoke, gff101_dfp-smoke, gpsnet101_ocnet-smoke, ranet101-smoke and the peers' smoke
# recipes are checked in their own test files.
RECIPES = ["gscnn_wrn38-smoke", "gscnn101_baseline-smoke", "gff101-smoke", "gpsnet101-smoke",
           "ranet_hrnetv2_w48-smoke"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return prepare_synthetic(tmp_path_factory.mktemp("syn") / "raw", n_train=12, n_val=4,
                             size=(64, 128), seed=0, workers=1, progress=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", RECIPES)
def test_smoke_recipe_learns(name, synthetic, most_frequent_class_miou, tmp_path):
    torch.set_num_threads(1)
    iterations = 60
    recipe = load_recipe(name, [
        f"train.iterations={iterations}", "train.batch_size=4", "data.crop_size=[64,128]",
        "data.scale_range=[0.75,1.5]", "train.log_every=10", f"train.val_every={iterations}",
        "train.checkpoint_every=1000"])
    result = train(recipe, tmp_path / "run", data_root=synthetic.root, quiet=True)
    losses = [row["loss"] for row in result.log]
    assert result.finished and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.75 * losses[0], losses
    trivial = most_frequent_class_miou(synthetic)
    assert result.metrics["miou"] > 2 * trivial, (result.metrics["miou"], trivial)
