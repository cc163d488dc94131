"""The compiled per-pixel work of test-time inference against the PyTorch operators it stands
in for (gsbench.engine.inference_native): same values up to rounding, every layout the engine
hands it, NaN and infinite logits as PyTorch treats them, maps at the end of their storage."""

from __future__ import annotations

import ctypes
import mmap

import pytest
import torch
import torch.nn.functional as F

from gsbench.engine import inference_native
from gsbench.engine.inference_native import accumulate_scores, resize_planes


@pytest.fixture(autouse=True)
def compiled():
    assert inference_native.LIBRARY.get() is not None  # a C compiler is part of the test setup


def reference(plain, mirrored, size, corners, softmax):
    """The PyTorch form: the mean of the map and the mirror image of the other, resized, and
    its softmax over the classes."""
    if plain is not None and mirrored is not None:
        merged = (plain + mirrored.flip(-1)) * 0.5
    else:
        merged = plain if plain is not None else mirrored.flip(-1)
    if tuple(merged.shape[-2:]) != tuple(size):
        merged = F.interpolate(merged, size=size, mode="bilinear", align_corners=corners)
    return merged.softmax(1) if softmax else merged


def logits(n, classes, h, w, seed=0, scale=6.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, classes, h, w, generator=generator) * scale).contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("classes", [1, 4, 8, 19, 150])
@pytest.mark.parametrize("source, size", [((23, 37), (23, 37)), ((16, 30), (33, 61)),
                                          ((50, 90), (32, 64)), ((7, 5), (40, 3))])
@pytest.mark.parametrize("form", ["plain", "mirrored", "both"])
@pytest.mark.parametrize("corners", [False, True])
@pytest.mark.parametrize("softmax", [False, True])
def test_scores_are_pytorchs_up_to_rounding(classes, source, size, form, corners, softmax):
    z = logits(2, classes, *source)
    plain = z[:1] if form != "mirrored" else None
    mirrored = z[1:] if form != "plain" else None
    got = accumulate_scores(None, plain, mirrored, size, corners, softmax)
    expected = reference(plain, mirrored, size, corners, softmax)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-6)
    # summed onto a total in place
    total = torch.rand_like(got)
    start = total.clone()
    assert accumulate_scores(total, plain, mirrored, size, corners, softmax) is total
    torch.testing.assert_close(total, start + expected, rtol=1e-5, atol=4e-6)


def test_every_layout_the_engine_hands_over():
    """Planar maps, a batch, two maps with different strides, and a window canvas cut to the
    image (pixel stride above the class count)."""
    planar = torch.randn(3, 19, 20, 30) * 5
    mirror = logits(3, 19, 20, 30, seed=1)
    got = accumulate_scores(None, planar, mirror, (41, 17), False, True)
    torch.testing.assert_close(got, reference(planar, mirror, (41, 17), False, True),
                               rtol=1e-5, atol=2e-6)
    canvas = logits(2, 19, 24, 40)[:, :, 2:22, 3:33]  # s_y = 40 x 19, s_x = 19
    got = accumulate_scores(None, canvas, None, (20, 30), False, False)
    torch.testing.assert_close(got, canvas)
    canvas = torch.randn(1, 24, 40, 19).permute(0, 3, 1, 2)[:, :, 2:22, 3:33]
    got = accumulate_scores(None, canvas, canvas, (31, 45), True, True)
    torch.testing.assert_close(got, reference(canvas, canvas, (31, 45), True, True),
                               rtol=1e-5, atol=2e-6)


def map_before_a_guard_page(classes: int, h: int, w: int) -> torch.Tensor:
    """A 1 x classes x h x w channels-last map whose storage ends where an unreadable page
    begins: a read past its storage is a segmentation fault, not a silent wrong value."""
    page = mmap.PAGESIZE
    count = classes * h * w
    pages = -(-count * 4 // page)
    memory = mmap.mmap(-1, (pages + 1) * page)
    start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(start + pages * page, page, 0) == 0  # PROT_NONE
    flat = torch.frombuffer(memory, dtype=torch.float32, count=count,
                            offset=pages * page - count * 4)
    flat.copy_(torch.randn(count) * 4)
    return flat.view(1, h, w, classes).permute(0, 3, 1, 2)


@pytest.mark.skipif(not hasattr(mmap, "PROT_READ"), reason="needs POSIX mmap and mprotect")
def test_a_map_at_the_end_of_its_storage():
    """The last pixels of a map whose storage ends with them are read through a padded copy
    (a whole-vector read there would go past the storage) and come out the same."""
    for classes in (3, 19):
        z = map_before_a_guard_page(classes, 9, 11)
        assert z.untyped_storage().nbytes() == z.numel() * 4
        for size in ((9, 11), (17, 25), (5, 6)):
            for form in ((z, None), (None, z), (z, z)):
                got = accumulate_scores(None, *form, size, False, True)
                torch.testing.assert_close(got, reference(*form, size, False, True),
                                           rtol=1e-5, atol=2e-6)


def test_threads_split_the_rows_and_change_no_value():
    z = logits(2, 19, 48, 80)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = accumulate_scores(None, z[:1], z[1:], (96, 160), False, True)
        torch.set_num_threads(3)
        three = accumulate_scores(None, z[:1], z[1:], (96, 160), False, True)
        image = torch.randn(2, 3, 40, 64)
        torch.testing.assert_close(resize_planes(image, (70, 90), False),
                                   F.interpolate(image, size=(70, 90), mode="bilinear"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


def test_nan_and_infinite_logits_as_in_pytorch():
    """A pixel with a NaN or +inf logit gets NaN probabilities; -inf is a probability of 0."""
    z = logits(1, 19, 8, 8)
    z[0, 3, 2, 2] = float("nan")
    z[0, 5, 4, 4] = float("inf")
    z[0, 5, 6, 6] = -float("inf")
    got = accumulate_scores(None, z, None, (8, 8), False, True)
    expected = z.softmax(1)
    assert torch.equal(got.isnan(), expected.isnan())
    assert got.isnan().sum() == 2 * 19
    torch.testing.assert_close(got[0, :, 6, 6], expected[0, :, 6, 6])


def test_extreme_logits_keep_their_probabilities():
    """Logits 100 apart: the exponential's clamp far below the maximum leaves the sum alone."""
    z = logits(1, 19, 6, 6, scale=60.0)
    torch.testing.assert_close(accumulate_scores(None, z, None, (6, 6), False, True),
                               z.softmax(1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size", [(74, 106), (20, 30), (37, 53), (50, 81), (1, 1)])
@pytest.mark.parametrize("corners", [False, True])
def test_image_resize_is_interpolates(size, corners):
    image = torch.randn(2, 3, 37, 53)
    torch.testing.assert_close(resize_planes(image, size, corners),
                               F.interpolate(image, size=size, mode="bilinear",
                                             align_corners=corners), rtol=1e-5, atol=1e-6)


def test_what_the_compiled_form_leaves_to_pytorch(monkeypatch):
    z = logits(2, 19, 8, 8)
    assert accumulate_scores(None, z.double(), None, (8, 8), False, True) is None
    assert accumulate_scores(torch.zeros(1, 19, 8, 8, dtype=torch.float64), z[:1], None,
                             (8, 8), False, True) is None
    assert resize_planes(torch.randn(1, 3, 4, 4).double(), (8, 8), False) is None
    assert resize_planes(torch.randn(1, 4, 4, 3).permute(0, 3, 1, 2), (8, 8), False) is None
    monkeypatch.setattr(inference_native.LIBRARY, "get", lambda: None)
    assert accumulate_scores(None, z[:1], None, (8, 8), False, True) is None
    assert resize_planes(torch.randn(1, 3, 4, 4), (8, 8), False) is None
