"""benchmarks/bench_gpu.py on a CPU: the small-size path (the -smoke recipes) that a GPU machine
runs at full scale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_gpu  # noqa: E402


def test_variants_cover_amp_and_channels_last_on_cuda_only():
    assert len(bench_gpu.variants(cuda=True)) == 8
    assert bench_gpu.variants(cuda=False) == [
        {"source": "synthetic", "amp": False, "channels_last": False},
        {"source": "loader", "amp": False, "channels_last": False}]
    assert bench_gpu.mmseg_reference("psanet101") == "10.5 GB at 512x1024, 11.9 GB at 769x769"
    assert bench_gpu.mmseg_reference("psanet101-smoke") == "-"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cpu_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "out"
    assert bench_gpu.main(["--recipes", "pspnet101,gscnn101", "--device", "cpu", "--iters", "2",
                           "--warmup", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "bench_gpu.json").read_text())
    assert result["device"] == "cpu"
    rows = result["rows"]
    assert [(r["recipe"], r["source"]) for r in rows] == [
        ("pspnet101-smoke", "synthetic"), ("pspnet101-smoke", "loader"),
        ("gscnn101-smoke", "synthetic"), ("gscnn101-smoke", "loader")]
    for row in rows:
        assert row["s_per_it"] > 0 and row["images_per_s"] == pytest.approx(2 / row["s_per_it"])
        assert row["peak_mem_gib"] >= 0 and row["batch"] == 2
    table = (out / "bench_gpu.md").read_text()
    assert "small size" in table and table.count("| pspnet101-smoke |") == 2
