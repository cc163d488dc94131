"""Binary edge targets for the Gated-SCNN shape stream and the RANet boundary loss.

Gated-SCNN (Takikawa et al., ICCV 2019, Sec. 3.3, Eq. 3) supervises its shape stream with a
binary boundary map ``s-hat`` derived from the ground-truth segmentation (BCE term, lambda_1);
RANet reuses the same targets for its boundary branch. The official Gated-SCNN code builds that
map from one-hot trainId masks: for every class it sums the Euclidean distance transform of the
mask and of its complement (after zero-padding the image by one pixel) and keeps pixels whose
distance is <= 2 px, which gives an edge band about 4 px wide.

gsbench implements the rule that code intends, without two of its quirks:

* every label gets its own channel, including road (trainId 0 has no channel in the official
  code, so road-only borders were missing) and ignore (255 counts as a region of its own);
* the image border is not an edge (the official zero-padding turned every border pixel into one).

Rule: pixel ``p`` is an edge pixel iff some pixel ``q`` inside the image with a different label
lies within Euclidean distance ``radius`` of ``p`` (``|p - q|_2 <= radius``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from gsbench.errors import GsbenchError

#: Edge half-width in pixels used by the official Gated-SCNN code.
DEFAULT_EDGE_RADIUS = 2.0


def disk_kernel(radius: float) -> np.ndarray:
    """The exact digital disk ``{(dy, dx): dy^2 + dx^2 <= radius^2}`` as a uint8 0/1 kernel."""
    if not math.isfinite(radius) or radius < 0:
        raise GsbenchError(f"edge radius must be a finite number >= 0, got {radius}")
    half = int(math.floor(radius))
    offsets = np.arange(-half, half + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    return (dy * dy + dx * dx <= radius * radius).astype(np.uint8)


def edge_map(labels: np.ndarray, radius: float = DEFAULT_EDGE_RADIUS) -> np.ndarray:
    """Binary edge target (uint8 0/1, same shape) of a uint8 trainId map; see the module docstring.

    A different label lies within the disk around ``p`` exactly when the maximum and the minimum
    label over that disk differ (``p`` itself is in the disk), so two grey-level morphology passes
    with the disk kernel give the per-class distance-transform rule of Gated-SCNN in O(HW).
    OpenCV's default border value for dilate/erode ignores pixels outside the image, which is
    what keeps the image border from counting as an edge.
    """
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise GsbenchError(
            f"edge_map expects an HxW uint8 label map, "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    kernel = disk_kernel(radius)
    if kernel.shape[0] == 1:  # radius < 1: the disk is the pixel itself, no neighbour can differ
        return np.zeros_like(labels)
    local_max = cv2.dilate(labels, kernel)
    local_min = cv2.erode(labels, kernel)
    return (local_max != local_min).astype(np.uint8)
