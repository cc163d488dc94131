"""Joint training transforms for an image and its label (and edge) maps, on NumPy with OpenCV.

Each transform takes a :class:`Pair` and a ``numpy.random.Generator`` and returns a new Pair. The
generator is the only source of randomness, so a sample's augmentation is fixed by the generator
the dataset seeds for it (from seed, epoch and index): results do not depend on worker count or
order. Images stay uint8 RGB until :class:`Normalize`; labels are uint8 trainIds with 255 =
ignore; edges are uint8 0/1. Geometry uses bilinear interpolation for images and nearest for
labels and edges, as in hszhao/semseg's ``transform.py`` (the PSANet authors' pipeline).
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


def _resize_targets(pair: Pair, size_wh: tuple[int, int]) -> dict:
    out = {}
    for name in ("label", "edge"):
        array = getattr(pair, name)
        if array is not None:
            out[name] = cv2.resize(array, size_wh, interpolation=cv2.INTER_NEAREST)
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
        return replace(pair, image=image, **_resize_targets(pair, size))


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
        return Pair(image, label, edge)


class RandomGaussianBlur:
    """With probability ``prob``, blur the image with a 5x5 Gaussian (sigma from the size)."""

    def __init__(self, prob: float = 0.5, kernel: int = 5):
        self.prob, self.kernel = float(prob), int(kernel)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.prob:
            return pair
        return replace(pair, image=cv2.GaussianBlur(pair.image, (self.kernel, self.kernel), 0))


class ColorJitter:
    """Random brightness, contrast and saturation, each a factor uniform in [1-s, 1+s]."""

    def __init__(self, strength: float):
        self.strength = float(strength)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        s = self.strength
        brightness, contrast, saturation = rng.uniform(1 - s, 1 + s, size=3)
        image = pair.image.astype(np.float32) * brightness
        grey = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        image = (image - grey.mean()) * contrast + grey.mean()
        grey = (image @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        image = (image - grey) * saturation + grey
        return replace(pair, image=np.clip(image + 0.5, 0, 255).astype(np.uint8))


class HorizontalFlip:
    def __init__(self, prob: float = 0.5):
        self.prob = float(prob)

    def __call__(self, pair: Pair, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.prob:
            return pair

        def flip(array):
            return None if array is None else np.ascontiguousarray(array[:, ::-1])

        return Pair(flip(pair.image), flip(pair.label), flip(pair.edge))


class RandomCrop:
    """A ``height x width`` window at a uniform random position; a smaller input is first padded
    at the bottom and right (image with the mean colour, label with ignore, edge with 0)."""

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

            pair = Pair(pad(pair.image, MEAN_RGB_UINT8), pad(pair.label, IGNORE_INDEX), pad(pair.edge, 0))
            h, w = pair.image.shape[:2]
        top = int(rng.integers(0, h - self.height + 1))
        left = int(rng.integers(0, w - self.width + 1))
        window = (slice(top, top + self.height), slice(left, left + self.width))

        def crop(array):
            return None if array is None else np.ascontiguousarray(array[window])

        return Pair(crop(pair.image), crop(pair.label), crop(pair.edge))


class Normalize:
    """uint8 RGB HxWx3 -> float32 3xHxW tensor ``(x/255 - mean) / std`` (ImageNet statistics)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, pair: Pair, rng: np.random.Generator | None = None) -> Pair:
        image = torch.from_numpy(np.ascontiguousarray(pair.image)).permute(2, 0, 1).float()
        return replace(pair, image=(image / 255.0 - self.mean) / self.std)


def train_transform(data_config) -> Compose:
    """The training pipeline of a recipe's ``data`` section, in hszhao/semseg's order:
    scale, rotate, blur, flip, crop (then colour jitter and normalisation)."""
    steps: list = [RandomScale(*data_config.scale_range)]
    if data_config.rotate_degrees > 0:
        steps.append(RandomRotate(data_config.rotate_degrees))
    if data_config.blur_prob > 0:
        steps.append(RandomGaussianBlur(data_config.blur_prob))
    if data_config.flip:
        steps.append(HorizontalFlip())
    steps.append(RandomCrop(*data_config.crop_size))
    if data_config.color_jitter > 0:
        steps.append(ColorJitter(data_config.color_jitter))
    steps.append(Normalize())
    return Compose(steps)


def eval_transform() -> Compose:
    """Evaluation: the full image, normalised."""
    return Compose([Normalize()])
