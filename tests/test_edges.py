"""Edge targets: the fast morphology version against a slow per-class distance-transform rule."""

import numpy as np
import pytest
from scipy import ndimage

from gsbench.data.edges import disk_kernel, edge_map
from gsbench.errors import GsbenchError


def slow_edges(labels: np.ndarray, radius: float) -> np.ndarray:
    """Per label: Euclidean distance from each of its pixels to the nearest pixel of another
    label inside the image (no padding, so the border is no edge); edge where <= radius."""
    edges = np.zeros(labels.shape, dtype=bool)
    for value in np.unique(labels):
        mask = labels == value
        if mask.all():
            continue
        distance = ndimage.distance_transform_edt(mask)
        edges |= mask & (distance <= radius)
    return edges.astype(np.uint8)


def random_regions(rng, height=40, width=56, values=(0, 1, 5, 13, 255)):
    """Blocky label maps (so that regions are wider than the edge band) plus isolated pixels."""
    coarse = rng.choice(values, size=(height // 8 + 1, width // 8 + 1))
    labels = np.kron(coarse, np.ones((8, 8), dtype=np.int64))[:height, :width].astype(np.uint8)
    speckles = rng.random((height, width)) < 0.01
    labels[speckles] = rng.choice(values, size=int(speckles.sum()))
    return labels


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.0, 2.5, 3.0])
def test_matches_slow_distance_transform_rule(radius):
    rng = np.random.default_rng(int(radius * 10))
    for _ in range(5):
        labels = random_regions(rng)
        np.testing.assert_array_equal(edge_map(labels, radius), slow_edges(labels, radius))


def test_band_width_road_channel_and_no_border_edges():
    labels = np.zeros((20, 30), dtype=np.uint8)  # road (trainId 0) left, sidewalk (1) right
    labels[:, 15:] = 1
    edges = edge_map(labels, 2)
    assert edges.dtype == np.uint8 and set(np.unique(edges)) == {0, 1}
    # columns 13, 14 (road) and 15, 16 (sidewalk) are within 2 px of the other class
    np.testing.assert_array_equal(np.flatnonzero(edges.any(axis=0)), [13, 14, 15, 16])
    assert edges[:, [13, 14, 15, 16]].all()
    # the image border is not an edge: a single-label image has none at all
    assert not edge_map(np.full((9, 9), 7, np.uint8), 2).any()


def test_ignore_counts_as_its_own_region_and_diagonal_uses_euclidean_distance():
    labels = np.full((15, 15), 3, dtype=np.uint8)
    labels[7, 7] = 255
    edges = edge_map(labels, 2)
    yy, xx = np.mgrid[:15, :15]
    expected = ((yy - 7) ** 2 + (xx - 7) ** 2 <= 4).astype(np.uint8)  # (2,1) offset is not edge
    np.testing.assert_array_equal(edges, expected)


def test_disk_kernel_and_bad_input():
    np.testing.assert_array_equal(disk_kernel(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert disk_kernel(2).sum() == 13 and disk_kernel(2.9).sum() == 25
    assert not edge_map(np.arange(12, dtype=np.uint8).reshape(3, 4), 0.5).any()
    with pytest.raises(GsbenchError, match="radius"):
        disk_kernel(-1)
    with pytest.raises(GsbenchError, match="uint8"):
        edge_map(np.zeros((4, 4), dtype=np.int32))
