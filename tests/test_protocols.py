"""Each named test procedure against a direct, slow restatement of what its official script
computes: the window loop, the padding, the averaging and the resizes written out as the
official code writes them (cv2 where semseg and mmseg use cv2, ``scipy.ndimage.zoom`` where the
RANet/CCNet toolbox uses it, MATLAB's ``imresize`` restated pixel by pixel), on small random
logits from a stub model whose output depends on where a window starts.

The images here are already normalised: the official scripts subtract the mean (and divide by
the std) after resizing and padding with the mean colour, which is the same as resizing the
normalised image and padding it with zeros (the resizes are linear with weights summing to 1).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from gsbench.engine.inference import InferenceOptions, infer, predict, resize
from gsbench.errors import GsbenchError
from gsbench.protocol import PROCEDURES, TestProtocol, apply_changes, default_stride

# every test on both forms of inference's per-pixel work (compiled, PyTorch)
pytestmark = pytest.mark.usefixtures("inference_form")

CLASSES = 4


class StubModel(nn.Module):
    """Random logits at the input size; zero padding makes a window's logits depend on where
    the window lies, and a stride-2 path on the input's parity."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.down = nn.Conv2d(6, CLASSES, 3, stride=2, padding=1)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))

    def forward(self, images):
        y = self.down(torch.relu(self.conv(images)))
        return {"out": F.interpolate(y, size=images.shape[-2:], mode="bilinear",
                                     align_corners=False)}


@pytest.fixture(scope="module")
def model():
    return StubModel().eval()


def _image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _logits(model, chw: np.ndarray) -> np.ndarray:
    """Model logits of one C x H x W numpy image, as C x H x W float64."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None])[
            "out"][0].double().numpy()


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _ours(model, image, protocol, batch=None) -> np.ndarray:
    """gsbench's probabilities as H x W x C float64."""
    return infer(model, image, InferenceOptions(protocol, batch=batch))[0].permute(1, 2, 0).double().numpy()


def _same(ours: np.ndarray, reference: np.ndarray, atol: float = 2e-5) -> None:
    """The same probabilities, and the same prediction wherever it is not a tie."""
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=atol, rtol=0)
    top2 = np.sort(reference, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 2 * atol
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(ours.argmax(-1)[clear], reference.argmax(-1)[clear])


# --- semseg tool/test.py -------------------------------------------------------------------------
def semseg_reference(model, image, crop, base_size, scales, flip, stride_rate=2 / 3):
    """hszhao/semseg tool/test.py: test() -> scale_process() -> net_process(), written out."""

    def net_process(window):
        batch = torch.from_numpy(window.transpose(2, 0, 1)).float()[None]
        if flip:
            batch = torch.cat([batch, batch.flip(3)], 0)
        with torch.no_grad():
            output = model(batch)["out"].softmax(dim=1)
        output = (output[0] + output[1].flip(2)) / 2 if flip else output[0]
        return output.numpy().transpose(1, 2, 0)

    def scale_process(img, h, w):
        ori_h, ori_w, _ = img.shape
        pad_h, pad_w = max(crop - ori_h, 0), max(crop - ori_w, 0)
        pad_h_half, pad_w_half = int(pad_h / 2), int(pad_w / 2)
        if pad_h > 0 or pad_w > 0:
            img = cv2.copyMakeBorder(img, pad_h_half, pad_h - pad_h_half, pad_w_half,
                                     pad_w - pad_w_half, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        new_h, new_w, _ = img.shape
        stride = int(np.ceil(crop * stride_rate))
        grid_h = int(np.ceil(float(new_h - crop) / stride) + 1)
        grid_w = int(np.ceil(float(new_w - crop) / stride) + 1)
        prediction_crop = np.zeros((new_h, new_w, CLASSES), dtype=float)
        count_crop = np.zeros((new_h, new_w), dtype=float)
        for index_h in range(grid_h):
            for index_w in range(grid_w):
                s_h = index_h * stride
                e_h = min(s_h + crop, new_h)
                s_h = e_h - crop
                s_w = index_w * stride
                e_w = min(s_w + crop, new_w)
                s_w = e_w - crop
                count_crop[s_h:e_h, s_w:e_w] += 1
                prediction_crop[s_h:e_h, s_w:e_w, :] += net_process(img[s_h:e_h, s_w:e_w].copy())
        prediction_crop /= np.expand_dims(count_crop, 2)
        prediction_crop = prediction_crop[pad_h_half:pad_h_half + ori_h, pad_w_half:pad_w_half + ori_w]
        return cv2.resize(prediction_crop, (w, h), interpolation=cv2.INTER_LINEAR)

    img = image[0].permute(1, 2, 0).numpy()
    h, w, _ = img.shape
    prediction = np.zeros((h, w, CLASSES), dtype=float)
    for scale in scales:
        long_size = round(scale * base_size)
        new_h = new_w = long_size
        if h > w:
            new_w = round(long_size / float(h) * w)
        else:
            new_h = round(long_size / float(w) * h)
        image_scale = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        prediction += scale_process(image_scale, h, w)
    return prediction / len(scales)


@pytest.mark.parametrize("size, crop, base, scales, flip", [
    ((30, 44), 24, 44, (1.0,), True),  # 2 x 3 windows
    ((30, 44), 24, 44, (0.5, 1.0, 1.75), True),  # 0.5: smaller than the crop, centred padding
    ((44, 30), 24, 40, (0.75, 1.25), False),  # portrait, base smaller than the image
    ((21, 23), 32, 23, (1.0,), True),  # one padded window
])
def test_semseg_procedure_is_tool_test_py(model, size, crop, base, scales, flip):
    image = _image(*size)
    protocol = TestProtocol("semseg", crop_size=(crop, crop), base_size=[base], scales=scales,
                            flip=flip)
    _same(_ours(model, image, protocol), semseg_reference(model, image, crop, base, scales, flip))


# --- PSANet's Caffe evaluation (MATLAB) ----------------------------------------------------------
def matlab_imresize(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """MATLAB imresize(a, [rows cols], 'bilinear') for an H x W x C array, pixel by pixel:
    imresize.m's contributions() (triangle kernel, widened by 1/scale when shrinking, indices
    outside mirrored, weights normalised), the dimension with the smaller scale first."""
    scales = (rows / a.shape[0], cols / a.shape[1])
    out = a.astype(np.float64)
    for dim in sorted((0, 1), key=lambda d: scales[d]):
        n_in, n_out = out.shape[dim], (rows, cols)[dim]
        s = n_out / n_in
        width = 2 / s if s < 1 else 2.0
        moved = np.moveaxis(out, dim, 0)
        result = np.zeros((n_out, *moved.shape[1:]))
        for i in range(1, n_out + 1):
            u = i / s + 0.5 * (1 - 1 / s)
            left = math.floor(u - width / 2)
            taps = []
            for j in range(left, left + math.ceil(width) + 2):
                d = u - j
                weight = s * max(0.0, 1 - abs(s * d)) if s < 1 else max(0.0, 1 - abs(d))
                jj = 1 - j if j < 1 else 2 * n_in + 1 - j if j > n_in else j  # mirrored
                taps.append((weight, jj))
            total = sum(weight for weight, _ in taps)
            for weight, jj in taps:
                result[i - 1] += weight / total * moved[jj - 1]
        out = np.moveaxis(result, 0, dim)
    return out


def test_matlab_imresize_restatement_and_ours_match_a_known_matlab_result():
    row = np.array([[1.0, 2.0, 3.0, 4.0]])[:, :, None]
    # MATLAB R2019b: imresize([1 2 3 4], [1 2], 'bilinear') -> [1.6250 3.3750]
    np.testing.assert_allclose(matlab_imresize(row, 1, 2)[0, :, 0], [1.625, 3.375])
    ours = resize(torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]]), (1, 2), "matlab")
    torch.testing.assert_close(ours[0, 0, 0], torch.tensor([1.625, 3.375]))
    a = np.random.default_rng(0).normal(size=(13, 17, 3))
    for rows, cols in ((7, 30), (26, 9), (13, 17), (14, 16)):
        ours = resize(torch.from_numpy(a).permute(2, 0, 1)[None], (rows, cols), "matlab")
        np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), matlab_imresize(a, rows, cols),
                                   atol=1e-10)


def caffe_reference(model, image, crop, base_size, scales, flip):
    """hszhao/PSANet evaluation/eval_sub.m -> scale_process.m -> pre_img.m, caffe_process.m."""

    def caffe_process(window):
        score = _logits(model, window.transpose(2, 0, 1))
        if flip:
            score = score + _logits(model, window[:, ::-1].transpose(2, 0, 1))[:, :, ::-1]
        return _softmax(score, axis=0).transpose(1, 2, 0)  # exp(z) ./ sum(exp(z), 3)

    def pre_img(im):  # pad 'post' with the mean colour (zero here) up to the crop
        rows, cols, _ = im.shape
        return np.pad(im, ((0, max(crop - rows, 0)), (0, max(crop - cols, 0)), (0, 0)))

    def scale_process(img_scale, ori_rows, ori_cols):
        new_rows, new_cols, _ = img_scale.shape
        long_size, short_size = max(new_rows, new_cols), min(new_rows, new_cols)
        if long_size <= crop:
            score = caffe_process(pre_img(img_scale))[:new_rows, :new_cols]
        else:
            stride = math.ceil(crop * 2 / 3)
            img_pad = pre_img(img_scale) if short_size < crop else img_scale
            pad_rows, pad_cols, _ = img_pad.shape
            h_grid = math.ceil((pad_rows - crop) / stride) + 1
            w_grid = math.ceil((pad_cols - crop) / stride) + 1
            data_scale = np.zeros((pad_rows, pad_cols, CLASSES))
            count_scale = np.zeros((pad_rows, pad_cols, CLASSES))
            for grid_yidx in range(1, h_grid + 1):
                for grid_xidx in range(1, w_grid + 1):
                    s_x = (grid_xidx - 1) * stride + 1
                    s_y = (grid_yidx - 1) * stride + 1
                    e_x = min(s_x + crop - 1, pad_cols)
                    e_y = min(s_y + crop - 1, pad_rows)
                    s_x, s_y = e_x - crop + 1, e_y - crop + 1
                    count_scale[s_y - 1:e_y, s_x - 1:e_x] += 1
                    data_scale[s_y - 1:e_y, s_x - 1:e_x] += caffe_process(
                        pre_img(img_pad[s_y - 1:e_y, s_x - 1:e_x]))
            score = (data_scale / count_scale)[:new_rows, :new_cols]
        data_output = matlab_imresize(score, ori_rows, ori_cols)
        return data_output / data_output.sum(axis=2, keepdims=True)

    img = image[0].permute(1, 2, 0).numpy().astype(np.float64)
    ori_rows, ori_cols, _ = img.shape
    data_all = np.zeros((ori_rows, ori_cols, CLASSES))
    for scale in scales:
        long_size = base_size * scale + 1
        new_rows = new_cols = long_size
        if ori_rows > ori_cols:  # MATLAB round of a single-precision quotient
            new_cols = math.floor(np.float32(np.float32(long_size) / np.float32(ori_rows))
                                  * np.float32(ori_cols) + 0.5)
        else:
            new_rows = math.floor(np.float32(np.float32(long_size) / np.float32(ori_cols))
                                  * np.float32(ori_rows) + 0.5)
        img_scale = matlab_imresize(img, int(new_rows), int(new_cols))
        data_all += scale_process(img_scale, ori_rows, ori_cols)
    return data_all / len(scales)


@pytest.mark.parametrize("size, crop, base, scales, flip", [
    ((30, 44), 24, 44, (1.0,), True),  # long side 45: 2 x 3 windows
    ((30, 44), 24, 40, (0.5, 1.0, 1.75), True),  # 0.5: long side 21 <= crop, one padded window
    ((44, 30), 24, 44, (0.75,), False),  # portrait, short side padded
])
def test_psanet_caffe_procedure_is_its_matlab_evaluation(model, size, crop, base, scales, flip):
    image = _image(*size)
    protocol = TestProtocol("psanet-caffe", crop_size=(crop, crop), base_size=[base],
                            scales=scales, flip=flip)
    _same(_ours(model, image, protocol), caffe_reference(model, image, crop, base, scales, flip))


# --- the RANet / CCNet toolbox evaluate.py -------------------------------------------------------
def toolbox_reference(model, image, tile, scales, flip, whole=False):
    """dingguo1996/RANet evaluate.py: predict_multiscale() -> predict_sliding() / pad_image()
    (predict_whole() for ``whole``). The released flip branch un-flips the N x H x W x C
    scores along axis 1 (the height); the mirror image was flipped along the width, so it is
    un-flipped along the width here (the released call runs without flip)."""

    def predict_sliding(img4):
        n, _, rows, cols = img4.shape
        stride = math.ceil(tile * (1 - 1 / 3))
        tile_rows = max(int(math.ceil((rows - tile) / stride) + 1), 1)
        tile_cols = max(int(math.ceil((cols - tile) / stride) + 1), 1)
        full_probs = np.zeros((n, rows, cols, CLASSES))
        count_predictions = np.zeros((1, rows, cols, CLASSES))
        for row in range(tile_rows):
            for col in range(tile_cols):
                x1, y1 = int(col * stride), int(row * stride)
                x2, y2 = min(x1 + tile, cols), min(y1 + tile, rows)
                x1, y1 = max(int(x2 - tile), 0), max(int(y2 - tile), 0)
                img = img4[:, :, y1:y2, x1:x2]
                padded = np.pad(img, ((0, 0), (0, 0), (0, tile - img.shape[2]),
                                      (0, tile - img.shape[3])), "constant")
                prediction = _logits(model, padded[0]).transpose(1, 2, 0)[None]
                count_predictions[0, y1:y2, x1:x2] += 1
                full_probs[:, y1:y2, x1:x2] += prediction[:, :img.shape[2], :img.shape[3]]
        return full_probs / count_predictions

    def predict_whole(img4):
        return _logits(model, img4[0]).transpose(1, 2, 0)[None]

    predict = predict_whole if whole else predict_sliding
    image = image.numpy().astype(np.float64)
    n, _, rows, cols = image.shape
    full_probs = np.zeros((n, rows, cols, CLASSES))
    for scale in scales:
        scale_image = ndimage.zoom(image, (1.0, 1.0, scale, scale), order=1, prefilter=False)
        scaled_probs = predict(scale_image)
        if flip:
            flipped = predict(scale_image[:, :, :, ::-1].copy())
            scaled_probs = 0.5 * (scaled_probs + flipped[:, :, ::-1, :])
        scaled_probs = ndimage.zoom(scaled_probs, (1.0, 1.0 / scale, 1.0 / scale, 1.0), order=1,
                                    prefilter=False)
        full_probs += scaled_probs
    return full_probs[0] / len(scales)


@pytest.mark.parametrize("size, tile, scales, flip, whole", [
    ((24, 40), 16, (1.0,), False, False),  # 2 x 4 windows
    ((24, 40), 16, (0.5, 1.0, 1.5), True, False),  # 0.5: 12 rows, padded window
    ((24, 40), 16, (0.5, 1.5), True, True),
])
def test_toolbox_procedure_is_ranet_ccnet_evaluate_py(model, size, tile, scales, flip, whole):
    image = _image(*size)
    protocol = TestProtocol("toolbox", mode="whole" if whole else "slide",
                            crop_size=None if whole else (tile, tile), scales=scales, flip=flip)
    reference = toolbox_reference(model, image, tile, scales, flip, whole)
    _same(_ours(model, image, protocol), _softmax(reference, axis=2))


# --- mmsegmentation ----------------------------------------------------------------------------------
def mmseg_reference(model, image, mode, crop, stride, base, scales, flip, align_corners):
    """mmseg: 0.x MultiScaleFlipAug sizes + mmcv.rescale_size + cv2 resize, then per view
    EncoderDecoder.whole_inference / slide_inference, postprocess_result (un-flip, resize the
    logits back), and for several views the softmax average of SegTTAModel.merge_preds."""

    def slide_inference(inputs):
        h_stride, w_stride = stride
        h_crop, w_crop = crop
        batch_size, _, h_img, w_img = inputs.size()
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds = inputs.new_zeros((batch_size, CLASSES, h_img, w_img))
        count_mat = inputs.new_zeros((batch_size, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y1, x1 = h_idx * h_stride, w_idx * w_stride
                y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                crop_seg_logit = model(inputs[:, :, y1:y2, x1:x2])["out"]
                preds += F.pad(crop_seg_logit, (int(x1), int(preds.shape[3] - x2), int(y1),
                                                int(preds.shape[2] - y2)))
                count_mat[:, :, y1:y2, x1:x2] += 1
        assert (count_mat == 0).sum() == 0
        return preds / count_mat

    img = image[0].permute(1, 2, 0).numpy()
    h, w, _ = img.shape
    views = []
    with torch.no_grad():
        for ratio in scales:
            if base:
                target = (int(base[0] * ratio), int(base[-1] * ratio))
            else:
                target = (int(w * ratio + 0.5), int(h * ratio + 0.5))
            factor = min(max(target) / max(h, w), min(target) / min(h, w))
            new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
            resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            for mirrored in ((False, True) if flip else (False,)):
                x = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))[None]
                x = x.flip(3) if mirrored else x
                logits = slide_inference(x) if mode == "slide" else model(x)["out"]
                logits = logits.flip(dims=(3,)) if mirrored else logits
                logits = F.interpolate(logits, size=(h, w), mode="bilinear",
                                       align_corners=align_corners)
                views.append(logits[0].double().numpy().transpose(1, 2, 0))
    if len(views) == 1:
        return _softmax(views[0], axis=2)  # argmax of the logits; the softmax to compare
    return np.mean([_softmax(v, axis=2) for v in views], axis=0)


@pytest.mark.parametrize("mode, size, crop, stride, base, scales, flip, align_corners", [
    ("whole", (30, 44), None, None, None, (1.0,), False, False),
    ("whole", (30, 44), None, None, (50, 36), (0.5, 1.0, 1.75), True, True),
    ("slide", (30, 44), (16, 20), None, None, (1.0,), False, False),
    # the 0.5 view (15 x 22 fitted in 25 x 18) is smaller than the crop: an unpadded patch
    ("slide", (30, 44), (24, 24), (10, 12), (50, 36), (0.5, 1.0, 1.25), True, False),
    ("slide", (33, 21), (16, 16), None, (40,), (1.0, 1.5), True, True),
])
def test_mmseg_procedure_is_mmsegmentation(model, mode, size, crop, stride, base, scales, flip,
                                           align_corners):
    image = _image(*size)
    protocol = TestProtocol("mmseg", mode=mode, crop_size=crop, stride=stride, base_size=base,
                            scales=scales, flip=flip, align_corners=align_corners)
    reference = mmseg_reference(model, image, mode, crop, protocol.window_stride, base, scales,
                                flip, align_corners)
    _same(_ours(model, image, protocol), reference)


# --- gsbench's own ------------------------------------------------------------------------------------
def gsbench_reference(model, image, crop, stride, scales, flip):
    """gsbench's procedure written out: round(s x H) x round(s x W) (half-pixel bilinear),
    windows zero-padded at the bottom/right, logits averaged over windows and over the mirror,
    resized back once per scale, softmax averaged over scales."""
    _, _, h, w = image.shape
    total = torch.zeros(1, CLASSES, h, w)
    with torch.no_grad():
        for scale in scales:
            size = (round(h * scale), round(w * scale))
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            views = []
            for mirrored in ((False, True) if flip else (False,)):
                x = scaled.flip(-1) if mirrored else scaled
                if crop is None:
                    logits = model(x)["out"]
                else:
                    ph, pw = max(crop[0] - size[0], 0), max(crop[1] - size[1], 0)
                    padded = F.pad(x, (0, pw, 0, ph))
                    rows, cols = padded.shape[-2:]
                    acc = torch.zeros(1, CLASSES, rows, cols)
                    count = torch.zeros(rows, cols)
                    for i in range(math.ceil(max(rows - crop[0], 0) / stride[0]) + 1):
                        for j in range(math.ceil(max(cols - crop[1], 0) / stride[1]) + 1):
                            y0 = min(i * stride[0], rows - crop[0])
                            x0 = min(j * stride[1], cols - crop[1])
                            window = padded[:, :, y0:y0 + crop[0], x0:x0 + crop[1]]
                            acc[:, :, y0:y0 + crop[0], x0:x0 + crop[1]] += model(window)["out"]
                            count[y0:y0 + crop[0], x0:x0 + crop[1]] += 1
                    logits = (acc / count)[:, :, :size[0], :size[1]]
                views.append(logits.flip(-1) if mirrored else logits)
            merged = sum(views) / len(views)
            merged = F.interpolate(merged, size=(h, w), mode="bilinear", align_corners=False)
            total += merged.softmax(1)
    return (total / len(scales))[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("size, crop, stride, scales, flip", [
    ((30, 44), None, None, (1.0,), False),
    ((30, 44), None, None, (0.5, 1.0, 1.75), True),
    ((30, 44), (16, 24), None, (0.5, 1.25), True),
    ((19, 50), (24, 24), (7, 9), (1.0,), True),
])
def test_gsbench_procedure_is_its_restatement(model, size, crop, stride, scales, flip):
    image = _image(*size)
    protocol = TestProtocol(mode="whole" if crop is None else "slide", crop_size=crop,
                            stride=stride, scales=scales, flip=flip)
    reference = gsbench_reference(model, image, crop, protocol.window_stride, scales, flip)
    _same(_ours(model, image, protocol), reference)


# --- what no procedure changes ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [
    TestProtocol(mode="slide", crop_size=(16, 16), scales=(0.75, 1.0), flip=True),
    TestProtocol("semseg", crop_size=(16, 16), scales=(1.0, 1.5)),
    TestProtocol("psanet-caffe", crop_size=(16, 16)),
    TestProtocol("toolbox", crop_size=(16, 16), flip=True),
    TestProtocol("mmseg", mode="slide", crop_size=(16, 16), scales=(0.5, 1.0), flip=True),
])
def test_the_batch_size_changes_nothing_but_the_speed(model, protocol):
    images = torch.cat([_image(30, 44, seed=3), _image(30, 44, seed=4)])
    reference = infer(model, images, InferenceOptions(protocol, batch=1))
    for batch in (2, 5, None):
        torch.testing.assert_close(infer(model, images, InferenceOptions(protocol, batch=batch)),
                                   reference, atol=1e-5, rtol=0)
    # two images at once = each on its own
    alone = infer(model, images[1:], InferenceOptions(protocol))
    torch.testing.assert_close(reference[1:], alone, atol=1e-5, rtol=0)
    labels = predict(model, images, InferenceOptions(protocol))
    assert labels.dtype == torch.uint8 and labels.shape == (2, 30, 44)


def test_window_counts_forward_passes(model):
    """72 windows of 64 x 64 on a 256 x 512 image: one forward per --batch windows."""
    calls = []

    class Counting(nn.Module):
        def forward(self, images):
            calls.append(images.shape[0])
            return {"out": images[:, :1].repeat(1, 2, 1, 1)}

    protocol = TestProtocol(mode="slide", crop_size=(64, 64), flip=True)
    infer(Counting(), torch.zeros(1, 3, 256, 512), InferenceOptions(protocol, batch=16))
    assert sum(calls) == 2 * 72 and max(calls) == 16
    calls.clear()
    infer(Counting(), torch.zeros(1, 3, 256, 512), InferenceOptions(protocol))  # 1 Mpx a pass
    assert calls == [144]


# --- sizes at each scale --------------------------------------------------------------------------------
@pytest.mark.parametrize("procedure, base, image, scale, size", [
    ("gsbench", None, (1024, 2048), 0.75, (768, 1536)),
    ("toolbox", None, (25, 39), 0.5, (12, 20)),  # ndimage.zoom: round(), halves to even
    ("semseg", [2048], (1024, 2048), 1.75, (1792, 3584)),
    ("semseg", [512], (375, 500), 1.0, (384, 512)),  # ADE20K: long side 512
    ("psanet-caffe", [2048], (1024, 2048), 1.0, (1025, 2049)),  # base x s + 1
    ("psanet-caffe", [2048], (1024, 2048), 0.5, (513, 1025)),  # MATLAB round(512.5) = 513
    ("mmseg", [2048, 1024], (1024, 2048), 1.0, (1024, 2048)),
    ("mmseg", [2049, 1025], (1024, 2048), 1.0, (1025, 2049)),  # the 769x769 family
    ("mmseg", [2049, 1025], (1024, 2048), 0.5, (512, 1024)),
    ("mmseg", [2048, 512], (375, 500), 1.0, (512, 683)),  # 0.x ADE20K: short side 512
    ("mmseg", None, (375, 500), 1.0, (375, 500)),  # 1.x TTA: the image itself
])
def test_scaled_sizes_follow_each_procedures_rule(procedure, base, image, scale, size):
    protocol = TestProtocol(procedure, base_size=base, crop_size=(8, 8)
                            if "slide" in PROCEDURES[procedure].modes[:1] else None)
    assert protocol.scaled_size(*image, scale) == size


# --- the description itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"procedure": "semseg", "mode": "whole"}, "runs slide"),
    ({"procedure": "semsge"}, "closest: semseg"),
    ({"mode": "tiles"}, "test.mode 'tiles'"),
    ({"scales": ()}, "test.scales"),
    ({"scales": (float("nan"),)}, "test.scales"),
    ({"mode": "slide", "crop_size": (0, 5)}, "test.crop_size"),
    ({"mode": "slide", "crop_size": (16, 16), "stride": (20, 8)}, "leave gaps"),
    ({"crop_size": (16, 16)}, "mode is whole"),
    ({"base_size": (512,)}, "test.base_size applies to"),
    ({"procedure": "semseg", "base_size": (512, 256)}, r"\[long\]"),
    ({"procedure": "mmseg", "base_size": (512, 0)}, "test.base_size"),
    ({"align_corners": True}, "mmseg's"),
])
def test_bad_protocols_are_one_line_errors_naming_the_key(values, message):
    with pytest.raises(GsbenchError, match=message) as info:
        TestProtocol(**values)
    assert "\n" not in str(info.value)


def test_defaults_come_from_the_procedure_and_default_values_have_one_form():
    assert TestProtocol("semseg").mode == "slide" and TestProtocol("semseg").flip is True
    assert TestProtocol("psanet-caffe").flip is True and TestProtocol("toolbox").mode == "slide"
    assert TestProtocol("mmseg").mode == "whole" and TestProtocol().flip is False
    spelled = TestProtocol("mmseg", mode="slide", crop_size=(769, 769), stride=(513, 513))
    assert spelled.stride is None and spelled.window_stride == (513, 513) == default_stride((769, 769))
    assert TestProtocol(mode="slide").with_crop([64, 96]).crop_size == (64, 96)
    with pytest.raises(GsbenchError, match="crop size"):
        TestProtocol(mode="slide").with_crop(None)
    with pytest.raises(GsbenchError, match="crop size"):
        InferenceOptions(TestProtocol(mode="slide"))
    with pytest.raises(GsbenchError, match="--batch"):
        InferenceOptions(batch=0)


def test_changes_apply_to_a_run_protocol_and_a_named_procedure_starts_afresh():
    recorded = TestProtocol("semseg", crop_size=(705, 705), base_size=[2048])
    assert apply_changes(recorded, {"scales": (0.5, 1.0), "flip": None}) == TestProtocol(
        "semseg", crop_size=(705, 705), base_size=[2048], scales=(0.5, 1.0))
    assert apply_changes(recorded, {"procedure": "semseg"}) == TestProtocol("semseg")
    slid = TestProtocol(mode="slide", crop_size=(64, 64))
    assert apply_changes(slid, {"mode": "whole"}) == TestProtocol()
    with pytest.raises(GsbenchError, match="no key"):
        apply_changes(recorded, {"crop": 3})


def test_a_recipes_test_section_is_validated_and_written_back():
    from gsbench.recipes import load_recipe, recipe_from_dict

    recipe = load_recipe("pspnet101-smoke", ["test.procedure=mmseg", "test.mode=slide",
                                             "test.base_size=[2049,1025]", "test.flip=true"])
    assert recipe.test == TestProtocol("mmseg", mode="slide", base_size=[2049, 1025], flip=True)
    assert recipe_from_dict(recipe.to_dict()).test == recipe.test  # recipe.yaml round trip
    assert load_recipe("pspnet101-smoke").test == TestProtocol()
    for override, message in (("test.procedure=semsge", "--set test.procedure: .*closest: semseg"),
                              ("test.crop=[5,5]", "closest valid key: 'test.crop_size'"),
                              ("test.flip=3", "--set test.flip: test.flip must be true or false"),
                              ("test.base_size=[512]", "--set test.base_size: test.base_size "
                                                       "applies to")):
        with pytest.raises(GsbenchError, match=message) as info:
            load_recipe("pspnet101-smoke", [override])
        assert "\n" not in str(info.value)
