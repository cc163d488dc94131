"""The Gated-SCNN release's photometric augmentation (nv-tlabs/GSCNN ``transforms/transforms.py``:
``ColorJitter`` through PIL's ``ImageEnhance`` and HSV hue, ``RandomGaussianBlur`` through
``skimage.filters.gaussian``), each step against a restatement with the libraries it calls."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from scipy import ndimage

from gsbench.data.transforms import ColorJitter, Pair, RandomGaussianBlur, train_transform
from gsbench.errors import GsbenchError
from gsbench.recipes import load_recipe


@pytest.fixture
def image() -> np.ndarray:
    """A photo-like image: smooth colour fields with some texture."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 3)


@pytest.mark.parametrize("name, enhancer", [("brightness", ImageEnhance.Brightness),
                                            ("contrast", ImageEnhance.Contrast),
                                            ("saturation", ImageEnhance.Color)])
@pytest.mark.parametrize("factor", [0.75, 1.2])
def test_jitter_steps_equal_pils_image_enhance(image, name, enhancer, factor):
    ours = ColorJitter.enhance(image, name, factor).astype(int)
    theirs = np.array(enhancer(Image.fromarray(image)).enhance(factor)).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def release_adjust_hue(image: np.ndarray, hue_factor: float) -> np.ndarray:
    """``adjust_hue``: PIL HSV, ``np_h += np.uint8(hue_factor * 255)`` with uint8 wrap-around
    (a negative factor converts as C does, by truncation then modulo 256)."""
    h, s, v = Image.fromarray(image).convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.uint8(int(hue_factor * 255) % 256)
    return np.array(Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB"))


@pytest.mark.parametrize("factor", [0.1, -0.2, 0.25])
def test_hue_shift_equals_pils_within_its_8_bit_hsv_rounding(image, factor):
    difference = np.abs(ColorJitter.hue_shift(image, factor).astype(int)
                        - release_adjust_hue(image, factor).astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.5
    assert np.abs(ColorJitter.hue_shift(image, factor).astype(int) - image).mean() > 2


def test_random_order_applies_the_drawn_permutation(image):
    jitter = ColorJitter(0.25, hue=0.25, random_order=True)
    orders = set()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        b, c, s = rng.uniform(0.75, 1.25, size=3)
        steps = [("brightness", b), ("contrast", c), ("saturation", s),
                 ("hue", rng.uniform(-0.25, 0.25))]
        order = rng.permutation(4)
        orders.add(tuple(order))
        expected = image
        for i in order:
            name, factor = steps[i]
            expected = ColorJitter.hue_shift(expected, factor) if name == "hue" else \
                ColorJitter.enhance(expected, name, factor)
        got = jitter(Pair(image), np.random.default_rng(seed)).image
        np.testing.assert_array_equal(got, expected)
    assert len(orders) > 1


def release_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``RandomGaussianBlur``: ``skimage.filters.gaussian(img, sigma, multichannel=True)`` - an
    ndimage Gaussian per channel of the image as floats in [0, 1] (mode "nearest", truncate 4)
    - then ``*= 255`` and ``astype(np.uint8)``."""
    as_float = image.astype(np.float64) / 255.0
    blurred = ndimage.gaussian_filter(as_float, sigma=(sigma, sigma, 0), mode="nearest",
                                      truncate=4.0)
    return (blurred * 255).astype(np.uint8)


def test_sigma_range_blur_equals_the_release():
    image = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    blur = RandomGaussianBlur(prob=1.0, sigma_range=(0.15, 1.3))
    for seed in range(4):
        rng = np.random.default_rng(seed)
        rng.random()
        sigma = rng.uniform(0.15, 1.3)
        got = blur(Pair(image), np.random.default_rng(seed)).image.astype(int)
        assert np.abs(got - release_gaussian_blur(image, sigma).astype(int)).max() <= 1


def test_gscnn_recipes_use_the_release_augmentation(image):
    for name in ("gscnn_wrn38", "gscnn101", "gscnn50_baseline", "gscnn_wrn38_test"):
        data = load_recipe(name).data
        assert (data.color_jitter, data.hue_jitter, data.jitter_order) == (0.25, 0.25, "random")
        assert (data.blur_prob, data.blur_sigma) == (1.0, [0.15, 1.3])
    steps = train_transform(load_recipe("gscnn_wrn38").data).transforms
    assert any(isinstance(t, ColorJitter) and t.hue == 0.25 and t.random_order for t in steps)
    assert any(isinstance(t, RandomGaussianBlur) and t.sigma_range == (0.15, 1.3) for t in steps)


@pytest.mark.parametrize("override, message", [
    ("data.hue_jitter=0.6", "data.hue_jitter must be in"),
    ("data.jitter_order=shuffled", "data.jitter_order must be fixed or random"),
    ("data.blur_sigma=[1.3, 0.15]", "data.blur_sigma must be"),
    ("data.blur_sigma=[0.5]", "data.blur_sigma must be"),
])
def test_bad_augmentation_settings_name_the_key(override, message):
    with pytest.raises(GsbenchError, match=message):
        load_recipe("gscnn_wrn38", [override])
