"""torchrun with 2 CPU processes (gloo) trains to the same weights as 1 process, same global batch.

PyTorch's SyncBatchNorm runs on GPUs only, so on CPU each process would normalise with its own
half of the batch and the runs would legitimately differ; the equivalence test therefore uses a
model without BatchNorm (and without dropout, whose masks depend on the process). Augmentation
is seeded per sample and the sampler splits each global batch across ranks, so both runs see the
same pixels; with equal valid-pixel counts per image (no rescaling, crop = image size) the mean
of the per-rank losses equals the global mean and DDP's averaged gradients equal the 1-process
gradients up to float32 summation order. Tolerance: 1e-5 absolute on every weight.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gsbench.engine.checkpoint import load_model_weights
from test_train import make_prepared_dataset

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    import torch.nn.functional as F
    from gsbench.engine.train import train
    from gsbench.recipes import load_recipe

    class TinyNet(nn.Module):
        """Conv net without BatchNorm or dropout: a 'backbone' and a 'head' (base / x10 lr)."""

        def __init__(self, num_classes):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Conv2d(8, num_classes, 1)
            self.aux_head = nn.Conv2d(8, num_classes, 1)

        def forward(self, images):
            features = self.backbone(images)
            size = images.shape[-2:]
            out = {"out": F.interpolate(self.head(features), size, mode="bilinear", align_corners=False)}
            if self.training:
                out["aux"] = F.interpolate(self.aux_head(features), size, mode="bilinear", align_corners=False)
            return out

    torch.set_num_threads(1)
    data, run = sys.argv[1], sys.argv[2]
    recipe = load_recipe("fcn101-smoke", [
        "train.iterations=4", "train.batch_size=4", "train.val_every=4", "train.log_every=1",
        "data.scale_range=[1.0, 1.0]", "data.crop_size=[40, 56]", "data.rotate_degrees=0",
    ])
    train(recipe, run, data_root=data, quiet=True,
          build_model=lambda r: TinyNet(r.data.num_classes))
''')


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    data = make_prepared_dataset(tmp_path / "data", num_train=8, num_val=2)
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    _run([sys.executable, str(script), str(data), str(tmp_path / "one")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          str(script), str(data), str(tmp_path / "two")], tmp_path)

    one = load_model_weights(tmp_path / "one")
    two = load_model_weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=0, atol=1e-5), key
    losses = {}
    for name in ("one", "two"):
        with open(tmp_path / name / "log.csv", newline="") as f:
            losses[name] = [float(row["loss"]) for row in csv.DictReader(f) if row["loss"]]
    assert len(losses["one"]) == 4 and losses["one"][-1] < losses["one"][0]  # it did train
    assert losses["one"] == pytest.approx(losses["two"], abs=1e-5)
    miou = [json.loads((tmp_path / name / "metrics.json").read_text())["miou"] for name in ("one", "two")]
    assert miou[0] == pytest.approx(miou[1], abs=1e-6)
