"""RF / SR (GPSNet App. A) against a brute-force walk of every path, Table 4 and `gsbench rfsr`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.analysis.rfsr import (
    aspp_positions,
    denseaspp_positions,
    parse_dilations,
    receptive_field,
    stats_for_dilations,
    supernet_positions,
    table4,
)
from gsbench.cli import app
from gsbench.errors import GsbenchError

# --- brute force: enumerate the paths of atrous layers and every offset choice along them ------


def path_offsets(dilations: list[int]) -> set[tuple[int, int]]:
    """Every position one path of 3x3 atrous layers samples: all 9^n offset choices summed."""
    kernels = [[(dy * r, dx * r) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] for r in dilations]
    return {(sum(o[0] for o in choice), sum(o[1] for o in choice))
            for choice in itertools.product(*kernels)}


def union_of_paths(paths: list[list[int]]) -> set[tuple[int, int]]:
    out = {(0, 0)}
    for path in paths:
        out |= path_offsets(path)
    return out


def grid_paths(grid: list[list[int]]) -> list[list[int]]:
    """Every path from the squeeze to any layer of the SuperNet: node (b, l) is reached from
    (b, l - 1) (the squeeze when l = 0) and from (b - 1, l)."""
    def into(b: int, layer: int) -> list[list[int]]:
        r = grid[b][layer]
        sources = [[]] if layer == 0 else into(b, layer - 1)
        if b > 0:
            sources = sources + into(b - 1, layer)
        return [p + [r] for p in sources]

    return [p for b in range(len(grid)) for layer in range(len(grid[b])) for p in into(b, layer)]


def dense_paths(rates: list[int]) -> list[list[int]]:
    """DenseASPP: any increasing subsequence of the layers is a path."""
    return [list(c) for n in range(1, len(rates) + 1) for c in itertools.combinations(rates, n)]


def as_set(canvas: np.ndarray) -> set[tuple[int, int]]:
    centre = canvas.shape[0] // 2
    ys, xs = np.nonzero(canvas)
    return {(int(y) - centre, int(x) - centre) for y, x in zip(ys, xs)}


def rf_sr_of(points: set[tuple[int, int]]) -> tuple[int, float]:
    side = max(max(p[i] for p in points) - min(p[i] for p in points) + 1 for i in (0, 1))
    return side, len(points) / side ** 2


@pytest.mark.parametrize("dilations", [[1], [2], [1, 1], [1, 2, 3], [2, 2, 5]])
def test_serial_matches_enumeration_and_eq4_eq7(dilations):
    canvas = supernet_positions([dilations])  # one branch: the serial chain of Eq. 7
    assert as_set(canvas) == path_offsets(dilations)
    rf, count, sr = receptive_field(canvas)
    assert rf == sum(2 * r for r in dilations) + 1  # Eq. 7, k = 3
    if len(dilations) == 1:  # Eq. 4: RF = r k - r + 1, SR = k^2 / RF^2
        assert rf == 3 * dilations[0] - dilations[0] + 1 and sr == pytest.approx(9 / rf ** 2)


@pytest.mark.parametrize("rates", [[1, 2], [1, 3, 5], [2, 4], [1, 1, 2]])
def test_aspp_matches_enumeration_and_eq5(rates):
    canvas = aspp_positions(rates)
    assert as_set(canvas) == union_of_paths([[r] for r in rates])
    rf, count, _ = receptive_field(canvas)
    assert rf == 2 * max(rates) + 1
    if len(set(rates)) == len(rates):  # Eq. 5 counts B k^2 - B + 1 for distinct rates
        assert count == len(rates) * 9 - len(rates) + 1


@pytest.mark.parametrize("rates", [[1, 2], [1, 3, 4], [2, 3, 7]])
def test_denseaspp_matches_enumeration_and_eq8(rates):
    canvas = denseaspp_positions(rates)
    assert as_set(canvas) == union_of_paths(dense_paths(rates))
    assert receptive_field(canvas)[0] == 2 * sum(rates) + 1


@pytest.mark.parametrize("grid", [[[1, 2]], [[1, 1], [2, 2]], [[1, 2], [3, 5], [2, 7]],
                                  [[1], [2], [4]], [[2, 1, 3], [1, 4, 1]]])
def test_supernet_matches_enumeration_of_every_path(grid):
    canvas = supernet_positions(grid)
    expected = union_of_paths(grid_paths(grid))
    assert as_set(canvas) == expected
    rf, _, sr = receptive_field(canvas)
    assert (rf, sr) == pytest.approx(rf_sr_of(expected))


def test_table4_rows_that_reproduce_and_the_ones_that_are_explained():
    rows = {r["method"]: r for r in table4()}
    assert list(rows) == ["ASPP", "DenseASPP", "SuperNet", "Untuned GPS", "Tuned GPS"]
    aspp, dense, supernet, untuned, tuned = rows.values()
    assert (aspp["rf"], round(aspp["sr"], 3), aspp["positions"]) == (73, 0.006, 33)
    assert aspp["conv_weights"] == 4 * 2048 * 256 * 9 and round(aspp["params"] / 1e6, 1) == 18.9
    assert (dense["rf"], round(dense["sr"], 3)) == (147, 0.070)
    assert "not reproduced" in dense["note"]  # its 25.6 M parameters
    assert supernet["rf"] == untuned["rf"] == 219 and supernet["positions"] == untuned["positions"]
    assert abs(supernet["sr"] - 0.125) < 0.001
    # squeeze 2048->256, eight 3x3 256->256, excitation 1024->1024: Table 4's 6.29 M exactly
    assert supernet["conv_weights"] == 2048 * 256 + 8 * 9 * 256 * 256 + 1024 * 1024 == 6_291_456
    assert round(untuned["params"] / 1e6, 1) == 6.3 and untuned["params"] > supernet["params"]
    assert tuned["rf"] == 211 and tuned["paper_rf"] == 199 and "not reproduced" in tuned["note"]
    assert tuned["sr"] > 6 * supernet["sr"]  # tuning still multiplies the sample rate


def test_parse_dilations():
    assert parse_dilations("1,12,24,36") == ("rates", (1, 12, 24, 36))
    assert parse_dilations("1,3; 11,13") == ("grid", ((1, 3), (11, 13)))
    for bad in ("", "1,x", "0,3", "1,3;5", "1,,2"):
        with pytest.raises(GsbenchError, match="--dilations"):
            parse_dilations(bad)
    methods = [s.method for s in stats_for_dilations("1,2;3,4", in_channels=64)]
    assert methods == ["SuperNet", "GPS"]


def test_rfsr_command_table_json_and_bad_input():
    runner = CliRunner()
    result = runner.invoke(app, ["rfsr", "--dilations", "1,2,3", "--dilations", "1,2;3,4",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["table4"]) == 5 and [r["method"] for r in data["custom"]] == [
        "ASPP", "DenseASPP", "SuperNet", "GPS"]
    assert data["custom"][0]["rf"] == 7 and data["custom"][2]["rf"] == 2 * (1 + 3 + 4) + 1
    result = runner.invoke(app, ["rfsr"], terminal_width=200)
    assert result.exit_code == 0
    assert "Tuned GPS" in result.output and "not reproduced" in result.output
    result = runner.invoke(app, ["rfsr", "--dilations", "1;x"])
    assert result.exit_code == 2 and "--dilations '1;x'" in result.output
