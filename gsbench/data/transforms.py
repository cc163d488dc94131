"""Joint training transforms for an image and its label (and edge) maps, on NumPy with OpenCV.

Each transform takes a :class:`Pair` and a ``numpy.random.Generator`` and returns a new Pair. The
generator is the only source of randomness, so a sample's augmentation is fixed by the generator
the dataset seeds for it (from seed, epoch and index): results do not depend on worker count or
order. Images stay uint8 RGB until :class:`Normalize`; labels are uint8 trainIds with 255 =
ignore; edges are uint8 0/1. A pair may carry an ``anchor`` pixel that the crop must contain
(class-uniform sampling, :mod:`gsbench.data.uniform`): the geometric steps before the crop move
it with the image, the crop consumes it. Geometry uses bilinear interpolation for images and
nearest for labels and edges, as in hszhao/semseg's ``transform.py`` (the PSANet authors'
pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np
import torch

from gsbench.data.labels import IGNORE_INDEX

#: ImageNet statistics of RGB images in [0, 1] (the backbones' pretraining normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The mean colour in uint8 units: what crop padding and rotation borders fill the image with,
#: so padded pixels become 0 after normalisation.
MEAN_RGB_UINT8 = tuple(round(255 * m) for m in IMAGENET_MEAN)


@dataclass(frozen=True)
class Pair:
    """An image (HxWx3 uint8 RGB, or after Normalize a 3xHxW float tensor) and its targets."""

    image: np.ndarray | torch.Tensor
    label: np.ndarray | None = None  # HxW uint8 trainIds
    edge: np.ndarray | None = None  # HxW uint8 0/1
    #: (row, col) of a pixel the crop must contain, in this image's coordinates; None: any crop
    anchor: tuple[int, int] | None = None


def _map_anchor(anchor: tuple[int, int] | None, matrix: np.ndarray) -> tuple[int, int] | None:
    """The pixel (row, col) that a 2x3 affine ``matrix`` (on x = col, y = row) moves ``anchor`` to."""
    if anchor is None:
        return None
    x, y = matrix[:2] @ np.array([anchor[1], anchor[0], 1.0])
    return int(np.floor(y + 0.5)), int(np.floor(x + 0.5))


def _scale_matrix(fx: float, fy: float) -> np.ndarray:
    """Source -> resized image with cv2.resize's pixel-centre convention (3x3)."""
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])


def _window_start(rng: np.random.Generator, extent: int, size: int, anchor: int | None) -> int:
    """First row (or column) of a ``size``-pixel window in ``extent >= size`` pixels.

    Without an anchor: uniform over every position. With one: uniform in ``[anchor - size + 1,
    anchor]`` (the windows that contain the anchor), then clamped into the image, as the
    centroid crop of NVIDIA's class-uniform sampling (``RandomCrop.__call__(img, mask,
    centroid)`` in nv-tlabs/GSCNN ``transforms/joint_transforms.py``). That code draws from
    ``[anchor - size, anchor]``, whose first value leaves the anchor one pixel outside the
    window; gsbench starts one pixel later so the anchor is always inside. An anchor outside the
    image (moved there by a rotation) is first clamped to the nearest edge pixel.
    """
    if anchor is None:
        return int(rng.integers(0, extent - size + 1))
    anchor = min(max(anchor, 0), extent - 1)
    return int(np.clip(rng.integers(anchor - size + 1, anchor + 1), 0, extent - size))


def _resize_targets(pair: Pair, size_wh: tuple[int, int]) -> dict:
    out = {}
    for name in ("label", "edge"):
        array = getattr(pair, name)
        if array is not None:
            out[name] = cv2.resize(array, size_wh, interpolation=cv2.INTER_NEAREST_EXACT)
    return out


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        for transform in self.transforms:
            pair = transform(pair, rng)
        return pair

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``[low, high]`` (PSANet: 0.5 to 2)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = float(low), float(high)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        factor = rng.uniform(self.low, self.high)
        h, w = pair.image.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        image = cv2.resize(pair.image, size, interpolation=cv2.INTER_LINEAR)
        anchor = _map_anchor(pair.anchor, _scale_matrix(size[0] / w, size[1] / h))
        return replace(pair, image=image, anchor=anchor, **_resize_targets(pair, size))


class RandomRotate:
    """Rotate about the centre by an angle uniform in ``[-degrees, degrees]``; the uncovered
    corners become the mean colour in the image, ignore in the label and 0 in the edge map."""

    def __init__(self, degrees: float):
        self.degrees = float(degrees)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        angle = rng.uniform(-self.degrees, self.degrees)
        h, w = pair.image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)

        def warp(array, interpolation, fill):
            return cv2.warpAffine(
                array, matrix, (w, h), flags=interpolation,
                borderMode=cv2.BORDER_CONSTANT, borderValue=fill,
            )

        image = warp(pair.image, cv2.INTER_LINEAR, MEAN_RGB_UINT8)
        label = None if pair.label is None else warp(pair.label, cv2.INTER_NEAREST, IGNORE_INDEX)
        edge = None if pair.edge is None else warp(pair.edge, cv2.INTER_NEAREST, 0)
        return Pair(image, label, edge, _map_anchor(pair.anchor, matrix))


class RandomGaussianBlur:
    """With probability ``prob``, blur the image with a Gaussian.

    Without ``sigma_range``: a 5x5 kernel, sigma from the size (1.1), as hszhao/semseg's
    ``RandomGaussianBlur``. With ``sigma_range = (low, high)``: sigma uniform in it and the
    kernel truncated at 4 sigma with replicated borders, computed in floating point and
    truncated to uint8 - the Gated-SCNN release's ``RandomGaussianBlur``
    (``transforms/transforms.py``: ``skimage.filters.gaussian`` with sigma 0.15 + U[0, 1) x 1.15,
    then ``astype(uint8)``) with ``prob = 1`` and the range (0.15, 1.3).
    """

    def __init__(self, prob: float = 0.5, kernel: int = 5,
                 sigma_range: Sequence[float] | None = None):
        self.prob, self.kernel = float(prob), int(kernel)
        self.sigma_range = None if sigma_range is None else tuple(float(v) for v in sigma_range)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.prob:
            return pair
        if self.sigma_range is None:
            return replace(pair, image=cv2.GaussianBlur(pair.image, (self.kernel, self.kernel), 0))
        sigma = rng.uniform(*self.sigma_range)
        size = 2 * int(4.0 * sigma + 0.5) + 1
        blurred = cv2.GaussianBlur(pair.image.astype(np.float32), (size, size), sigma,
                                   borderType=cv2.BORDER_REPLICATE)
        return replace(pair, image=np.clip(blurred, 0, 255).astype(np.uint8))


class ColorJitter:
    """Random brightness ``b``, contrast ``c`` and saturation ``s``, each uniform in [1-s, 1+s]:

        x1 = b * x                          (brightness)
        x2 = c * x1 + (1 - c) * mean(grey(x1))   (contrast about the mean grey level)
        x3 = s * x2 + (1 - s) * grey(x2)         (saturation about each pixel's grey level)

    with ``grey`` the ITU-R 601 luma. The three steps compose into one affine colour map,
    applied with a single ``cv2.transform`` (rounded and saturated to uint8).

    ``hue`` > 0 adds a hue shift by ``h`` uniform in [-hue, hue] of the hue circle, and
    ``random_order`` applies the steps in a random order per image, each rounded to uint8: the
    ``ColorJitter`` of the Gated-SCNN release (``transforms/transforms.py``, PIL's
    ``ImageEnhance`` and a cyclic shift of PIL's 8-bit hue by ``int(h * 255)`` / 256 of the
    circle), which gsbench computes in floating point (results within PIL's 8-bit HSV rounding).
    """

    LUMA = np.array([0.299, 0.587, 0.114])

    def __init__(self, strength: float, hue: float = 0.0, random_order: bool = False):
        self.strength, self.hue, self.random_order = float(strength), float(hue), random_order

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        s = self.strength
        brightness, contrast, saturation = rng.uniform(1 - s, 1 + s, size=3)
        if self.hue > 0 or self.random_order:
            return replace(pair, image=self._steps(pair.image, rng, brightness, contrast,
                                                    saturation))
        mean_grey = brightness * float(np.dot(cv2.mean(pair.image)[:3], self.LUMA))
        gain = brightness * contrast
        linear = gain * (saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), self.LUMA))
        # grey(x2) = gain * grey(x) + (1 - c) * mean_grey, so the offset survives saturation as is
        offset = (1 - contrast) * mean_grey * np.ones((3, 1))
        matrix = np.hstack([linear, offset]).astype(np.float32)
        return replace(pair, image=cv2.transform(pair.image, matrix))

    def _steps(self, image: np.ndarray, rng: np.random.Generator, brightness: float,
               contrast: float, saturation: float) -> np.ndarray:
        steps = [("brightness", brightness), ("contrast", contrast), ("saturation", saturation)]
        if self.hue > 0:
            steps.append(("hue", rng.uniform(-self.hue, self.hue)))
        if self.random_order:
            steps = [steps[i] for i in rng.permutation(len(steps))]
        for name, factor in steps:
            image = self.hue_shift(image, factor) if name == "hue" else \
                self.enhance(image, name, factor)
        return image

    @classmethod
    def enhance(cls, image: np.ndarray, name: str, factor: float) -> np.ndarray:
        """One of PIL's ``ImageEnhance`` steps: a blend ``factor * x + (1 - factor) * d`` with
        d black (brightness), the mean grey level (contrast) or each pixel's grey (saturation)."""
        x = image.astype(np.float32)
        if name == "brightness":
            out = factor * x
        elif name == "contrast":
            out = factor * x + (1 - factor) * np.floor(float(np.dot(cv2.mean(image)[:3], cls.LUMA))
                                                       + 0.5)
        else:
            grey = np.rint(x @ cls.LUMA.astype(np.float32))[..., None]
            out = factor * x + (1 - factor) * grey
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    @staticmethod
    def hue_shift(image: np.ndarray, factor: float) -> np.ndarray:
        """Rotate every pixel's hue by ``int(factor * 255)`` / 256 of the circle."""
        hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * int(factor * 255) / 256.0, 360.0)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


class HorizontalFlip:
    def __init__(self, prob: float = 0.5):
        self.prob = float(prob)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.prob:
            return pair

        def flip(array):
            return None if array is None else np.ascontiguousarray(array[:, ::-1])

        anchor = None
        if pair.anchor is not None:
            anchor = (pair.anchor[0], pair.image.shape[1] - 1 - pair.anchor[1])
        return Pair(flip(pair.image), flip(pair.label), flip(pair.edge), anchor)


class RandomCrop:
    """A ``height x width`` window at a uniform random position; a smaller input is first padded
    at the bottom and right (image with the mean colour, label with ignore, edge with 0). With an
    anchor the window contains it (:func:`_window_start`)."""

    def __init__(self, height: int, width: int):
        self.height, self.width = int(height), int(width)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        h, w = pair.image.shape[:2]
        pad_h, pad_w = max(self.height - h, 0), max(self.width - w, 0)
        if pad_h or pad_w:

            def pad(array, fill):
                if array is None:
                    return None
                return cv2.copyMakeBorder(array, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=fill)

            pair = Pair(pad(pair.image, MEAN_RGB_UINT8), pad(pair.label, IGNORE_INDEX), pad(pair.edge, 0),
                        pair.anchor)
            h, w = pair.image.shape[:2]
        anchor = pair.anchor or (None, None)
        top = _window_start(rng, h, self.height, anchor[0])
        left = _window_start(rng, w, self.width, anchor[1])
        window = (slice(top, top + self.height), slice(left, left + self.width))

        def crop(array):
            return None if array is None else np.ascontiguousarray(array[window])

        return Pair(crop(pair.image), crop(pair.label), crop(pair.edge))


class Normalize:
    """uint8 RGB HxWx3 -> float32 3xHxW tensor ``(x/255 - mean) / std`` (ImageNet statistics)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.scale = [1.0 / (255.0 * sd) for sd in std]
        self.shift = [m / sd for m, sd in zip(mean, std)]

    def __call__(self, pair: Pair, rng: np.random.Generator | None = None) -> Pair:
        h, w = pair.image.shape[:2]
        out = np.empty((3, h, w), np.float32)
        for c in range(3):  # straight into channel-first layout, two passes per channel
            np.multiply(pair.image[..., c], np.float32(self.scale[c]), out=out[c], casting="unsafe")
            out[c] -= np.float32(self.shift[c])
        return replace(pair, image=torch.from_numpy(out))


class RandomScaleRotateCrop:
    """:class:`RandomScale`, :class:`RandomRotate` and :class:`RandomCrop` in one
    ``cv2.warpAffine`` straight into the crop window.

    Same random draws in the same order (factor, angle, top, left) and the same geometry as the
    three steps in sequence (an anchor is moved by the scale and rotation, then kept in the
    window as by :class:`RandomCrop`), but one resampling of only the crop's pixels instead of
    resizing (up to 2x) and rotating the whole image first: about 10x less work on 1024x2048
    Cityscapes images. Images are resampled once (bilinear) instead of twice, so values differ
    from the sequential steps by interpolation rounding only (see the tests).
    """

    def __init__(self, scale_range: Sequence[float], degrees: float, crop_size: Sequence[int]):
        self.low, self.high = float(scale_range[0]), float(scale_range[1])
        self.degrees = float(degrees)
        self.height, self.width = int(crop_size[0]), int(crop_size[1])

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        h, w = pair.image.shape[:2]
        factor = rng.uniform(self.low, self.high)
        scaled_w, scaled_h = max(1, round(w * factor)), max(1, round(h * factor))
        angle = rng.uniform(-self.degrees, self.degrees) if self.degrees > 0 else 0.0
        scale = _scale_matrix(scaled_w / w, scaled_h / h)
        rotate = np.vstack([cv2.getRotationMatrix2D((scaled_w / 2.0, scaled_h / 2.0), angle, 1.0), [0, 0, 1]])
        anchor = _map_anchor(pair.anchor, rotate @ scale) or (None, None)
        # the crop window lies in the scaled image padded at the bottom/right up to the crop
        top = _window_start(rng, max(scaled_h, self.height), self.height, anchor[0])
        left = _window_start(rng, max(scaled_w, self.width), self.width, anchor[1])
        shift = np.array([[1, 0, -left], [0, 1, -top], [0, 0, 1]], dtype=np.float64)
        matrix = (shift @ rotate @ scale)[:2]
        size = (self.width, self.height)
        # rows/columns of the window beyond the scaled image are padding, whatever the rotation
        rows, cols = slice(max(scaled_h - top, 0), None), slice(max(scaled_w - left, 0), None)

        def warp(array, interpolation, fill):
            if array is None:
                return None
            out = cv2.warpAffine(array, matrix, size, flags=interpolation,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
            out[rows] = fill
            out[:, cols] = fill
            return out

        return Pair(
            warp(pair.image, cv2.INTER_LINEAR, MEAN_RGB_UINT8),
            warp(pair.label, cv2.INTER_NEAREST, IGNORE_INDEX),
            warp(pair.edge, cv2.INTER_NEAREST, 0),
        )


def train_transform(data_config) -> Compose:
    """The training pipeline of a recipe's ``data`` section: random scale, rotation and crop
    (fused, see :class:`RandomScaleRotateCrop`), then flip, Gaussian blur, colour jitter and
    normalisation. hszhao/semseg flips and blurs before cropping; doing it on the crop is the
    same augmentation (up to the blur at the crop's 2-pixel border) at a fraction of the cost.
    The Gated-SCNN release jitters before it blurs: brightness, contrast and saturation are the
    same per-pixel affine map everywhere and commute with the (normalised, linear) blur, so
    only the hue shift and uint8 rounding depend on the order."""
    steps: list = [RandomScaleRotateCrop(data_config.scale_range, data_config.rotate_degrees,
                                         data_config.crop_size)]
    if data_config.flip:
        steps.append(HorizontalFlip())
    if data_config.blur_prob > 0:
        steps.append(RandomGaussianBlur(data_config.blur_prob,
                                        sigma_range=data_config.blur_sigma))
    if data_config.color_jitter > 0 or data_config.hue_jitter > 0:
        steps.append(ColorJitter(data_config.color_jitter, data_config.hue_jitter,
                                 data_config.jitter_order == "random"))
    steps.append(Normalize())
    return Compose(steps)


def eval_transform() -> Compose:
    """Evaluation: the full image, normalised."""
    return Compose([Normalize()])
