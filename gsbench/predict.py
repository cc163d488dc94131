"""Pictures of what a model predicts: ``gsbench predict`` on any image, and the panels of
``gsbench eval --show N`` / ``--show-dir DIR``.

:func:`predict_images` runs a run folder's model (trained, or imported with its recipe) on JPEG
and PNG files of any size with the test-time inference of :mod:`gsbench.engine.inference` under
the run's test protocol (its recipe's ``test:`` section, :mod:`gsbench.protocol`) changed by the
options ``gsbench eval`` takes (procedure, sliding windows, scales, flip ...), and writes, per
image ``{stem}``::

    OUT/trainIds/{stem}.png   uint8 trainIds (what ``gsbench eval --pred-dir OUT/trainIds`` scores)
    OUT/color/{stem}.png      the trainIds in the dataset's colours (:mod:`gsbench.visualize`)
    OUT/overlay/{stem}.png    the colours blended over the image (half and half)
    OUT/boundary/{stem}.png   the boundary probability (white = 1), for models with a boundary
                              output (Gated-SCNN's shape stream ``edge``, RANet's ``boundary``)
    OUT/labelIds/{stem}.png   Cityscapes labelIds (with ``labelids=True``; Cityscapes models only)

The boundary map is the sigmoid of the model's boundary logits from one forward pass of the
whole image at scale 1 (the boundary output is not averaged over scales or flips).

An image is recognised by its content (the PNG or JPEG signature), not its suffix; every input
is checked before the model is loaded, so bad input writes nothing.

:class:`PanelCollector` is the hook of :func:`gsbench.evaluation.model.evaluate_model` that
keeps the first N panels of an evaluation (:func:`gsbench.visualize.prediction_panel`), and
:func:`prediction_dir_panels` makes the same panels for a folder of saved predictions.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gsbench.data.manifest import Manifest, Sample
from gsbench.data.registry import DATASETS
from gsbench.errors import GsbenchError
from gsbench.io import image_kind, read_label, read_rgb, write_png
from gsbench.visualize import (
    boundary_probability_map, colorize, overlay, palette_for, prediction_panel,
)

#: Suffixes of the files taken from a folder of images (any case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The model outputs read as boundary logits, in order.
BOUNDARY_OUTPUTS = ("edge", "boundary")
#: The subfolders of ``gsbench predict --out``.
OUTPUT_FOLDERS = ("trainIds", "color", "overlay", "boundary", "labelIds")


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``inputs`` (files, or folders whose ``*.jpg`` / ``*.jpeg`` /
    ``*.png`` files are taken, sorted, not recursing), each a PNG or JPEG by its signature, with
    distinct stems (they name the outputs). A GsbenchError names the first input that breaks
    a rule."""
    if not inputs:
        raise GsbenchError("no IMAGES given: name image files or folders of them")
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise GsbenchError(f"{item}: no {', '.join(IMAGE_SUFFIXES)} files in this folder")
            images += found
        elif item.is_file():
            images.append(item)
        else:
            raise GsbenchError(f"{item}: no such image file or folder")
    stems: dict[str, Path] = {}
    for path in images:
        try:
            kind = image_kind(path)
        except OSError as exc:
            raise GsbenchError(f"{path}: cannot be read ({exc.strerror})") from None
        if kind not in ("PNG", "JPEG"):
            raise GsbenchError(f"{path}: not a PNG or JPEG image (by its first bytes)")
        if path.stem in stems:
            raise GsbenchError(f"{path}: same name as {stems[path.stem]}; the outputs are named "
                               "after the image, so give images with distinct names")
        stems[path.stem] = path
    return images


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_images` wrote for one image (None: not written)."""

    image: Path
    train_ids: Path
    color: Path
    overlay: Path
    boundary: Path | None
    label_ids: Path | None


def boundary_probability(model, images) -> np.ndarray | None:
    """The first image's boundary probability (HxW, float32) from one forward pass, or None
    when the model has no boundary output (:data:`BOUNDARY_OUTPUTS`)."""
    import torch

    wants = "outputs" in inspect.signature(model.forward).parameters
    with torch.no_grad():
        result = model(images, outputs=("boundary",)) if wants else model(images)
    for key in BOUNDARY_OUTPUTS:
        logits = result.get(key)
        if logits is not None and logits.shape[-2:] == images.shape[-2:]:
            return torch.sigmoid(logits[0, 0].float()).cpu().numpy()
    return None


def predict_images(
    target: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    protocol: Mapping[str, Any] | None = None,
    output: str = "out",
    batch: int | None = None,
    device: str = "cpu",
    labelids: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Prediction]:
    """Run the model of ``target`` (a run folder or checkpoint) on the images of ``inputs``
    (:func:`find_images`) as ``gsbench eval`` runs it: the recipe's test protocol changed by
    ``protocol`` (:func:`~gsbench.protocol.apply_changes`), the model output ``output``,
    ``batch`` images per forward pass; write the files of the module docstring into
    ``out_dir`` and return them per image."""
    from gsbench.data.transforms import Normalize, Pair
    from gsbench.engine.export import train_ids_to_label_ids
    from gsbench.engine.inference import InferenceOptions, predict
    from gsbench.engine.outputs import check_output
    from gsbench.evaluation.model import load_model_for_eval
    from gsbench.protocol import apply_changes

    images = find_images(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise GsbenchError(f"{out_dir}: --out must be a folder, this is a file")
    loaded = load_model_for_eval(target, device)
    dataset = DATASETS.get(loaded.recipe.data.dataset)
    if labelids and loaded.recipe.data.dataset != "cityscapes":
        raise GsbenchError(f"--labelids: Cityscapes labelIds need a Cityscapes model; "
                           f"{loaded.checkpoint} predicts {loaded.recipe.data.dataset}")
    palette = palette_for(dataset, loaded.recipe.data.num_classes)
    test = apply_changes(loaded.recipe.test, protocol or {})
    options = InferenceOptions(test.with_crop(loaded.recipe.data.crop_size), output, batch)
    check_output(loaded.model, options.output, f"the {loaded.recipe.model.name} model of "
                 f"{loaded.checkpoint}")
    normalize = Normalize()
    has_boundary = True  # until the first image shows otherwise
    written = []
    for done, path in enumerate(images, start=1):
        image = read_rgb(path)
        tensor = normalize(Pair(image)).image[None].to(device)
        train_ids = predict(loaded.model, tensor, options)[0].cpu().numpy()
        colours = colorize(train_ids, palette)
        files = {name: out_dir / name / f"{path.stem}.png" for name in OUTPUT_FOLDERS}
        write_png(files["trainIds"], train_ids)
        write_png(files["color"], colours)
        write_png(files["overlay"], overlay(image, colours))
        probability = boundary_probability(loaded.model, tensor) if has_boundary else None
        has_boundary = probability is not None
        if probability is not None:
            write_png(files["boundary"], boundary_probability_map(probability))
        if labelids:
            write_png(files["labelIds"], train_ids_to_label_ids(train_ids))
        written.append(Prediction(path, files["trainIds"], files["color"], files["overlay"],
                                  files["boundary"] if probability is not None else None,
                                  files["labelIds"] if labelids else None))
        if on_progress is not None:
            on_progress(done, len(images))
    return written


# --- panels of an evaluation ----------------------------------------------------------------------


class PanelCollector:
    """The first ``count`` panels of an evaluation, as ``on_prediction(manifest, sample, pred)``
    of :func:`gsbench.evaluation.model.evaluate_model` sees them: each sample with ground
    truth gets :func:`~gsbench.visualize.prediction_panel` at boundary radius ``radius``."""

    def __init__(self, count: int, radius: int):
        if count < 0:
            raise GsbenchError(f"--show must be at least 0, got {count}")
        self.count, self.radius = count, radius
        self.panels: list[tuple[str, np.ndarray]] = []

    def __call__(self, manifest: Manifest, sample: Sample, pred: np.ndarray) -> None:
        if len(self.panels) >= self.count or sample.label is None:
            return
        image = read_rgb(manifest.path(sample.image))
        gt = read_label(manifest.path(sample.label))
        palette = palette_for(DATASETS.get(manifest.dataset), manifest.num_classes)
        self.panels.append((sample.stem, prediction_panel(image, pred, gt, palette, self.radius)))

    def write(self, folder: str | os.PathLike) -> list[Path]:
        """Write the panels as ``folder/{stem}.png``; returns the files."""
        paths = []
        for stem, picture in self.panels:
            path = Path(folder) / f"{stem}.png"
            write_png(path, picture)
            paths.append(path)
        return paths


def prediction_dir_panels(pred_dir: str | os.PathLike, data: str | os.PathLike, split: str,
                          pred_format: str, count: int, radius: int) -> PanelCollector:
    """The panels of the first ``count`` samples of ``split`` for the saved predictions in
    ``pred_dir`` (read as ``gsbench eval --pred-dir`` reads them)."""
    from gsbench.evaluation.pred_dir import load_pair, plan_prediction_dir, prediction_lut

    manifest = Manifest.load(data)
    collector = PanelCollector(count, radius)
    lut = prediction_lut(pred_format, manifest.dataset, manifest.num_classes)
    samples = {sample.stem: sample for sample in manifest.split(split)}
    for pair in plan_prediction_dir(pred_dir, manifest, split)[:count]:
        pred, _, _ = load_pair(pair, lut)
        collector(manifest, samples[pair.stem], pred)
    return collector


__all__ = ["BOUNDARY_OUTPUTS", "IMAGE_SUFFIXES", "OUTPUT_FOLDERS", "PanelCollector", "Prediction",
           "boundary_probability", "find_images", "predict_images", "prediction_dir_panels"]
