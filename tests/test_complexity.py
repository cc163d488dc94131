"""Parameter, FLOP, memory and latency measurement, and the `gsbench profile` command."""

import json
import warnings

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gsbench.analysis.complexity import (
    count_flops,
    count_parameters,
    measure_latency,
    measure_peak_memory,
    parse_input_shape,
    profile_model,
)
from gsbench.cli import app
from gsbench.errors import GsbenchError
from gsbench.models import build_model
from gsbench.models.backbones import RandomInitWarning


def conv_macs_by_hooks(model: nn.Module, shape) -> int:
    """Independent reference: multiply-adds of every Conv2d from its output size and kernel."""
    total = 0

    def hook(conv, inputs, output):
        nonlocal total
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += output.numel() * (conv.in_channels // conv.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    model.eval()
    with torch.no_grad():
        model(torch.empty(shape, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return total


def test_count_parameters():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    net[2].weight.requires_grad_(False)
    assert count_parameters(net) == 3 * 4 * 9 + 4 + 4 + 4 + 10 + 2
    assert count_parameters(net, trainable_only=True) == 3 * 4 * 9 + 4 + 4 + 4 + 2


def test_count_flops_of_a_conv_is_two_per_multiply_add():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    counted = count_flops(conv, (2, 3, 10, 12))
    macs = 2 * 8 * 10 * 12 * 3 * 9
    assert counted.macs == macs and counted.flops == 2 * macs
    assert counted.gmacs == pytest.approx(macs / 1e9)


def test_count_flops_of_tiny_pspnet_matches_conv_hooks():
    model = build_model("pspnet", num_classes=5, backbone="resnet_tiny", aux=False)
    counted = count_flops(model, (1, 3, 64, 96))
    assert model.training  # mode restored
    assert counted.macs == conv_macs_by_hooks(model, (1, 3, 64, 96))


def test_pspnet_r101_paper_anchor():
    """GFF Table 3: PSPNet-R101 (no aux) 65.6 M params, "580.1 GFLOPs" at 512x512.

    Counted on the meta device (no compute). Our count is 523.5 GFLOPs = 261.7 GMACs: the
    paper's figure is on the multiply-add = 2 FLOPs scale (within 10 %), not MACs (2.2x off).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device("meta"):
            model = build_model("pspnet", num_classes=19, backbone="resnet101", aux=False)
    assert abs(count_parameters(model) / 1e6 - 65.6) / 65.6 < 0.01
    counted = count_flops(model, (1, 3, 512, 512))
    assert counted.macs == conv_macs_by_hooks(model, (1, 3, 512, 512))
    assert abs(counted.gflops - 580.1) / 580.1 < 0.12
    assert abs(counted.gmacs - 580.1) / 580.1 > 0.5


class _CloneThenDouble(nn.Module):
    def forward(self, x):
        y = x.clone()
        return y * 2


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_peak_memory_counts_live_tensors(device):
    module = _CloneThenDouble().to(device)
    module.register_buffer("anchor", torch.zeros(1, device=device))  # puts the input on `device`
    peak = measure_peak_memory(module, (1, 1, 128, 256))
    # input, its clone and the doubled copy are alive together: 3 x 128 KiB of float32
    assert peak.bytes == 3 * 128 * 256 * 4
    assert "parameters excluded" in peak.method


def test_peak_memory_of_training_exceeds_inference_and_is_device_independent():
    model = build_model("fcn", num_classes=5, backbone="resnet_tiny")
    shape = (2, 3, 32, 32)
    forward = measure_peak_memory(model, shape)
    train = measure_peak_memory(model, shape, backward=True)
    assert train.bytes > 2 * forward.bytes
    with torch.device("meta"):
        meta_model = build_model("fcn", num_classes=5, backbone="resnet_tiny")
    assert measure_peak_memory(meta_model, shape, backward=True).bytes == train.bytes
    assert all(p.grad is None for p in model.parameters())


def test_latency_modes_and_batch_of_one():
    model = build_model("pspnet", num_classes=3, backbone="resnet_tiny")
    model.eval()
    fwd = measure_latency(model, (1, 3, 16, 16), warmup=1, repeat=2)
    # batch 1 with training BN would fail on PSPNet's 1x1 pooled bin; BN keeps running stats
    train = measure_latency(model, (1, 3, 16, 16), backward=True, warmup=0, repeat=1)
    assert len(fwd.times_ms) == 2 and len(train.times_ms) == 1
    assert fwd.median_ms > 0 and train.median_ms > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(GsbenchError, match="repeat"):
        measure_latency(model, (1, 3, 32, 32), repeat=0)


def test_profile_model_report():
    model = build_model("fcn", num_classes=3, backbone="resnet_tiny", aux=False)
    report = profile_model(model, (1, 3, 32, 32), warmup=0, repeat=1)
    assert report["params"] == count_parameters(model)
    assert report["gflops"] == pytest.approx(2 * report["gmacs"])
    assert report["peak_memory_train_mib"] > report["peak_memory_forward_mib"] > 0
    assert report["latency_forward_ms"] > 0 and report["latency_forward_backward_ms"] > 0
    json.dumps(report)


def test_parse_input_shape():
    assert parse_input_shape("1x3x512x1024") == (1, 3, 512, 1024)
    for bad in ("512x512", "1x3x0x4", "ax3x4x4"):
        with pytest.raises(GsbenchError, match="N x C x H x W"):
            parse_input_shape(bad)


runner = CliRunner()


def test_cli_profile_model_json():
    result = runner.invoke(app, ["profile", "--model", "pspnet", "--backbone", "resnet_tiny",
                                 "--num-classes", "4", "--input", "1x3x32x32", "--json",
                                 "--warmup", "0", "--repeat", "1", "--no-aux"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "pspnet" and report["aux"] is False
    reference = build_model("pspnet", num_classes=4, backbone="resnet_tiny", aux=False)
    assert report["params"] == count_parameters(reference)
    assert report["latency_forward_ms"] > 0


def test_cli_profile_recipe_table():
    result = runner.invoke(app, ["profile", "--recipe", "pspnet101", "--set",
                                 "model.backbone=resnet_tiny", "--input", "1x3x64x64",
                                 "--no-latency"])
    assert result.exit_code == 0, result.output
    assert "GMACs" in result.output and "parameters" in result.output


@pytest.mark.parametrize("args,message", [
    (["--model", "pspnet", "--input", "3x512x512"], "N x C x H x W"),
    ([], "exactly one of"),
    (["--model", "psp"], "did you mean pspnet"),
    (["--model", "fcn", "--set", "a=1"], "--set needs --recipe"),
])
def test_cli_profile_errors(args, message):
    result = runner.invoke(app, ["profile", "--no-latency", *args])
    assert result.exit_code == 2
    assert message in result.output


class _ReadsABuffer(nn.Module):
    """Reads tensor data in forward, which the meta device cannot do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.register_buffer("scale", torch.tensor(2))

    def forward(self, x):
        return {"out": self.conv(x) * int(self.scale.item())}


def test_profile_model_falls_back_to_the_real_device():
    report = profile_model(_ReadsABuffer(), (1, 3, 8, 8), latency=False)
    assert report["gmacs"] * 1e9 == pytest.approx(8 * 8 * 3 * 4)
