"""The attention-module registry and `gsbench profile --module` (RANet Table 3)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from gsbench.analysis import attention
from gsbench.analysis.attention import (
    build_attention_module,
    list_attention_modules,
    load_ranet_table3,
    profile_attention_module,
    register_attention_module,
)
from gsbench.analysis.complexity import count_parameters
from gsbench.cli import app
from gsbench.errors import GsbenchError
from gsbench.models.ccnet import RecurrentCrissCrossAttention
from gsbench.models.psanet import PointwiseSpatialAttention

OURS = ("annet", "ccnet", "danet", "nonlocal", "psanet")


def test_registry_lists_and_builds_every_module_at_both_scopes():
    assert set(OURS) <= set(list_attention_modules())
    x = torch.randn(1, 32, 6, 7)
    for name in OURS:
        out = build_attention_module(name, 32, "module").eval()(x)
        # PSA returns concat(X, context), the others keep the channels
        assert out.shape == (1, 64 if name == "psanet" else 32, 6, 7), name
        logits = build_attention_module(name, 32, "head").eval()(x)
        assert logits.shape == (1, 19, 6, 7), name


def test_registry_errors_and_registration(monkeypatch):
    with pytest.raises(GsbenchError, match="unknown attention module 'ccnett'; did you mean ccnet"):
        build_attention_module("ccnett")
    with pytest.raises(GsbenchError, match="scope must be one of module, head"):
        build_attention_module("ccnet", 32, "block")
    with pytest.raises(GsbenchError, match="multiple of 8"):
        build_attention_module("ccnet", 12)
    monkeypatch.setattr(attention, "_ATTENTION", dict(attention._ATTENTION))

    @register_attention_module("identity_for_test", description="does nothing")
    def build_identity(in_channels):
        return torch.nn.Identity()

    assert "identity_for_test" in list_attention_modules()
    with pytest.raises(GsbenchError, match="has no head scope"):
        build_attention_module("identity_for_test", 32, "head")
    with pytest.raises(ValueError, match="registered twice"):
        register_attention_module("identity_for_test")(lambda c: torch.nn.Identity())


def rcca_macs(channels, height, width, recurrence=2):
    """Multiply-adds of RCCA written out: Q, K (C -> C/8) and V (C -> C) 1x1 convs, then per
    position H + W affinities of C/8 and H + W weighted sums of C (the self entry is computed
    in both the column and the row before it is masked)."""
    hw, reduced = height * width, channels // 8
    per_step = hw * (2 * channels * reduced + channels * channels
                     + (height + width) * (reduced + channels))
    return recurrence * per_step


def test_ccnet_figures_match_the_written_out_count_and_the_paper_row():
    figures = profile_attention_module("ccnet", (1, 64, 9, 11))
    assert figures["gmacs"] * 1e9 == pytest.approx(rcca_macs(64, 9, 11))
    assert figures["gflops"] == pytest.approx(2 * figures["gmacs"])
    assert figures["params"] == count_parameters(RecurrentCrissCrossAttention(64))
    assert figures["peak_memory_train_mib"] > figures["peak_memory_forward_mib"] > 0
    assert figures["paper"] == {"label": "CCNet", "gflops": 198, "params_m": 18,
                                "memory_mb": 730, "miou": 81.1}
    assert figures["scope"] == "module" and "alone" in figures["counts"]
    # On the 512-channel 97 x 97 map of Table 3, RCCA saves "about 85 %" of the non-local
    # block's FLOPs (CCNet abstract): the figures of both modules measured here.
    nonlocal_block = profile_attention_module("nonlocal", (1, 512, 97, 97))
    ratio = rcca_macs(512, 97, 97) / (nonlocal_block["gmacs"] * 1e9)
    assert 0.13 < ratio < 0.19


def test_lazy_psa_mask_is_fixed_from_the_profiled_map():
    figures = profile_attention_module("psanet", (1, 32, 9, 9))
    # shrink 2 -> 5 x 5 map -> full over-complete mask 9 x 9
    explicit = PointwiseSpatialAttention(32, 8, "bi", False, (9, 9), 2)
    assert figures["params"] == count_parameters(explicit)


def test_table3_data_file_holds_the_papers_rows():
    table = load_ranet_table3()
    assert table["input_shape"] == [1, 512, 97, 97]
    rows = {name: (r["gflops"], r["params_m"], r["memory_mb"]) for name, r in table["rows"].items()}
    assert rows == {"annet": (163, 13, 634), "ccnet": (198, 18, 730), "danet": (264, 23, 2611),
                    "psanet": (372, 50, 3124), "ranet": (212, 21, 1893)}
    assert set(OURS) - {"nonlocal"} <= set(rows)


def test_cli_profile_module_json_and_table():
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "--module", "danet", "--input", "1x32x6x6",
                                 "--no-latency", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["module"] == "danet" and figures["input_shape"] == [1, 32, 6, 6]
    assert figures["paper"]["memory_mb"] == 2611
    result = runner.invoke(app, ["profile", "--module", "annet", "--scope", "head", "--input",
                                 "1x64x8x8", "--no-latency"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "row Asymmetric NL" in result.output
    assert "163 G" in result.output and "13 M" in result.output and "634 MB" in result.output
    assert "whole decode head" in result.output


@pytest.mark.parametrize("args,message", [
    (["--module", "nope"], "unknown attention module 'nope'"),
    (["--module", "ccnet", "--model", "fcn"],
     "exactly one of --recipe NAME, --model NAME or --module"),
    (["--module", "ccnet", "--scope", "all"], "scope must be one of module, head"),
    (["--model", "fcn", "--scope", "head"], "--scope needs --module"),
    (["--module", "ccnet", "--input", "1x32x6"], "input shape must look like"),
])
def test_cli_profile_module_errors(args, message):
    result = CliRunner().invoke(app, ["profile", *args, "--no-latency"], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert message in result.output


def test_ranet_entry_is_the_released_attention_with_table3s_parameter_count():
    with torch.device("meta"):
        module = build_attention_module("ranet", 2048, "module")
    # feats_conv 3x3 2048 -> 512 and five 3x3 512 -> 512 (each with BN): Table 3's +21 M
    assert count_parameters(module) == (2048 * 9 * 512 + 1024) + 5 * (512 * 9 * 512 + 1024)
    assert abs(count_parameters(module) / 1e6 - 21) / 21 < 0.05
    with pytest.raises(GsbenchError, match="no input case 'many'"):
        build_attention_module("ranet", 64, "module", "many")


def test_ranet_layouts_form_tens_hundreds_and_one_region():
    counts = {case: build_attention_module("ranet", 16, "module", case).regions(97, 97)
              for case in ("tens", "hundreds", "single")}
    assert 10 <= counts["tens"] < 100 and 100 <= counts["hundreds"] < 1000
    assert counts["single"] == 1


def test_ranet_profile_reports_every_input_case():
    figures = profile_attention_module("ranet", (1, 16, 24, 24), latency=False)
    assert [case["case"] for case in figures["cases"]] == ["tens", "hundreds", "single"]
    first = figures["cases"][0]
    assert first["gflops"] == figures["gflops"] and first["regions"] > 1
    assert figures["cases"][2]["regions"] == 1
    assert all(case["peak_memory_train_mib"] > 0 for case in figures["cases"])
    assert "feats_conv" in figures["counts"]
    result = CliRunner().invoke(app, ["profile", "--module", "ranet", "--input", "1x16x24x24",
                                      "--no-latency"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hundreds" in result.output and "single" in result.output
