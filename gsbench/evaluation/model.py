"""Scoring a trained model: ``gsbench eval RUN_DIR|CHECKPOINT``.

:func:`load_model_for_eval` builds the recipe's model with the trained weights of a run folder
(:mod:`gsbench.engine.run_dir`) or a checkpoint file; :func:`evaluate_model` runs it over a split
of a prepared dataset with the test-time inference of :mod:`gsbench.engine.inference` (whole or
sliding window, scales, flip, the scored output) and feeds the predictions to the same metrics
accumulator as ``gsbench eval --pred-dir`` (:mod:`.metrics_config`), optionally saving the
trainId maps and writing the Cityscapes test-server export. :func:`evaluate_target` is the whole
command: the run's recorded test protocol changed by the given options
(:class:`~gsbench.evaluation.setting.EvalSetting`), and where its metrics go in the run folder
(where ``gsbench report`` and ``gsbench ablate`` look for them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from gsbench.data.dataset import SegmentationDataset
from gsbench.data.manifest import Manifest, Sample
from gsbench.engine.checkpoint import load_checkpoint
from gsbench.engine.export import EXPORT_FORMATS, write_cityscapes_result
from gsbench.engine.inference import InferenceOptions, predict
from gsbench.engine.memory import keep_freed_memory
from gsbench.engine.outputs import MAIN_OUTPUT, check_output
from gsbench.engine.run_dir import find_checkpoint, load_run_recipe
from gsbench.errors import GsbenchError
from gsbench.evaluation.metrics_config import MetricsConfig, new_metrics
from gsbench.evaluation.setting import EvalSetting
from gsbench.io import read_label, write_png
from gsbench.protocol import apply_changes
from gsbench.recipes import Recipe, build_model_from_recipe, recipe_from_dict


@dataclass
class LoadedModel:
    """A model with its trained weights, in eval mode, and where they came from."""

    model: nn.Module
    recipe: Recipe
    checkpoint: Path
    run_dir: Path | None  # the run folder the checkpoint belongs to, if any
    iteration: int | None


def load_model_for_eval(target: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the recipe's model and load the trained weights of a run folder or checkpoint.

    The recipe is the run folder's ``recipe.yaml``, else the one stored in the checkpoint. The
    checkpoint is read with ``torch.load(weights_only=True)``; weights that do not fit the
    recipe's model (missing, unexpected or differently shaped tensors) raise a GsbenchError.
    """
    checkpoint, run_dir = find_checkpoint(target)
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("model"), dict):
        raise GsbenchError(f"{checkpoint}: checkpoint has no 'model' weights")
    if run_dir is not None:
        recipe = load_run_recipe(run_dir)
    elif isinstance(state.get("recipe"), dict):
        recipe = recipe_from_dict(state["recipe"], source=f"{checkpoint} (stored recipe)")
    else:
        raise GsbenchError(f"{checkpoint}: no recipe.yaml beside it and none stored in it")
    # The trained weights replace every parameter, so no backbone weights need loading.
    model = build_model_from_recipe(recipe, pretrained=None)
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
        raise GsbenchError(
            f"{checkpoint}: weights do not fit recipe {recipe.name!r} ({detail or 'shape mismatch'})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} missing, e.g. {result.missing_keys[0]}")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[0]}")
        raise GsbenchError(
            f"{checkpoint}: weights do not fit recipe {recipe.name!r} ({'; '.join(parts)})"
        )
    model = model.to(device).eval()
    iteration = state.get("iteration")
    return LoadedModel(model, recipe, checkpoint, run_dir, int(iteration) if iteration is not None else None)


def _single_item(items: list[dict]) -> dict:
    # Images of a split may differ in size, so they are inferred one at a time, unbatched.
    return items[0]


def predict_split(
    model: nn.Module,
    manifest: Manifest,
    split: str,
    options: InferenceOptions = InferenceOptions(),
    *,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> Iterator[tuple[Sample, np.ndarray]]:
    """Yield ``(sample, predicted trainIds as HxW uint8)`` for every image of ``split``, in
    manifest order. Images are read (and normalised) by ``num_workers`` loader processes."""
    dataset = SegmentationDataset(manifest, split, with_edges=False)
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=num_workers,
        collate_fn=_single_item,
    )
    model.eval()
    for sample, item in zip(dataset.samples, loader):
        images = item["image"][None].to(device)
        labels = predict(model, images, options)[0]
        yield sample, labels.cpu().numpy()


def evaluate_model(
    loaded: LoadedModel,
    data: str | os.PathLike,
    *,
    split: str = "val",
    options: InferenceOptions = InferenceOptions(),
    device: str | torch.device = "cpu",
    save_pred_dir: str | os.PathLike | None = None,
    export: str | None = None,
    export_dir: str | os.PathLike | None = None,
    radii: Sequence[int] | None = None,
    crop_factors: Sequence[int] | None = None,
    fscore_convention: str = "gscnn",
    num_workers: int = 0,
    verify: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    on_prediction: Callable[[Manifest, Sample, np.ndarray], None] | None = None,
) -> dict | None:
    """Run ``loaded`` over ``split`` of the prepared dataset ``data``; return the metrics.json
    dict (as :func:`gsbench.evaluation.pred_dir.evaluate_prediction_dir` does, plus the inference
    settings), or None for a split without ground truth (e.g. the Cityscapes test split, which
    needs ``export``).

    ``save_pred_dir`` receives ``{stem}.png`` trainId maps; ``export="cityscapes"`` writes
    labelId PNGs with the test server's names into ``export_dir``. ``radii`` and
    ``crop_factors`` default to those of ``gsbench eval --pred-dir`` (``()`` switches one off)
    and must fit the split's images; ``verify`` checks the images and ground truth against the
    manifest's sha256 sums before any inference. ``on_prediction(manifest, sample, trainIds)``
    sees every prediction (``gsbench eval --show`` draws panels from them:
    :class:`gsbench.predict.PanelCollector`).
    """
    keep_freed_memory()
    if export is not None and export not in EXPORT_FORMATS:
        raise GsbenchError(f"--export {export!r}: supported formats are {', '.join(EXPORT_FORMATS)}")
    if export is not None and export_dir is None:
        raise GsbenchError(f"--export {export} needs --out-dir DIR for the result files")
    recipe = loaded.recipe
    check_output(loaded.model, options.output, f"the {recipe.model.name} model of {loaded.checkpoint}")
    manifest = Manifest.load(data)
    if manifest.num_classes != recipe.data.num_classes:
        raise GsbenchError(
            f"{manifest.root}: dataset has {manifest.num_classes} classes but the model of "
            f"{loaded.checkpoint} predicts {recipe.data.num_classes}"
        )
    samples = manifest.split(split)
    if not samples:
        raise GsbenchError(f"{manifest.root / 'manifest.json'}: split {split!r} is empty")
    has_gt = all(s.label is not None for s in samples)
    if not has_gt and save_pred_dir is None and export is None:
        raise GsbenchError(
            f"{manifest.root / 'manifest.json'}: split {split!r} has no ground truth; "
            "use --export cityscapes --out-dir DIR or --save-pred DIR"
        )
    metrics = None
    if has_gt:
        config = MetricsConfig.for_dataset(
            manifest, radii=radii, crop_factors=crop_factors, fscore_convention=fscore_convention,
            with_instances=all(s.instance is not None for s in samples),
        )
        config.check_image_sizes((s.height, s.width) for s in samples if s.height and s.width)
        metrics = new_metrics(config)
    if verify:  # every file the evaluation reads (a sample's missing ones are skipped)
        manifest.verify(samples, ("image", "label", "instance"))
    for done, (sample, pred) in enumerate(
        predict_split(loaded.model, manifest, split, options, device=device, num_workers=num_workers),
        start=1,
    ):
        if save_pred_dir is not None:
            write_png(Path(save_pred_dir) / f"{sample.stem}.png", pred)
        if export is not None:
            write_cityscapes_result(export_dir, sample.stem, pred)
        if on_prediction is not None:
            on_prediction(manifest, sample, pred)
        if metrics is not None:
            gt = read_label(manifest.path(sample.label))
            instance = read_label(manifest.path(sample.instance)) if metrics.with_instances else None
            metrics.update(pred, gt, instance)
        if on_progress is not None:
            on_progress(done, len(samples))
    if metrics is None:
        return None
    return {
        "dataset": manifest.dataset,
        "split": split,
        "checkpoint": str(loaded.checkpoint),
        "iteration": loaded.iteration,
        "inference": inference_settings(options),
        **metrics.compute(),
    }


def inference_settings(options: InferenceOptions) -> dict:
    """The test protocol as plain JSON values, recorded in metrics.json: its parameters (the
    window crop and stride resolved), the procedure's semantics, and ``output`` when another
    output than the prediction was scored."""
    protocol = options.protocol
    settings = {
        **protocol.to_dict(),
        "crop_size": list(protocol.crop_size) if protocol.slide else None,
        "stride": list(protocol.window_stride) if protocol.slide else None,
        "semantics": protocol.info.describe(),
    }
    if options.output != MAIN_OUTPUT:
        settings["output"] = options.output
    return settings


@dataclass(frozen=True)
class TargetEvaluation:
    """What :func:`evaluate_target` did: the setting evaluated, the metrics and the report's
    title (None for a split without ground truth) and the metrics files to write (None: not
    asked for)."""

    setting: EvalSetting
    metrics: dict | None
    title: str | None
    json_path: Path | None
    csv_path: Path | None
    markdown_path: Path | None


def evaluate_target(
    target: str | os.PathLike,
    data: str | os.PathLike | None,
    *,
    split: str = "val",
    output: str = MAIN_OUTPUT,
    protocol: Mapping[str, Any] | None = None,
    batch: int | None = None,
    device: str | torch.device = "cpu",
    save_pred_dir: str | os.PathLike | None = None,
    export: str | None = None,
    export_dir: str | os.PathLike | None = None,
    radii: Sequence[int] | None = None,
    crop_factors: Sequence[int] | None = None,
    fscore_convention: str = "gscnn",
    json_path: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    markdown_path: str | os.PathLike | None = None,
    verify: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    on_prediction: Callable[[Manifest, Sample, np.ndarray], None] | None = None,
) -> TargetEvaluation:
    """Evaluate a run folder or checkpoint on ``split`` of the prepared dataset ``data``
    (default: the one its recipe names) under the recipe's test protocol (its ``test:``
    section) changed by ``protocol`` (the given ``gsbench eval`` options by
    :data:`~gsbench.protocol.TestProtocol` field, :func:`~gsbench.protocol.apply_changes`).

    Without any of ``json_path``, ``csv_path`` and ``markdown_path``, a run's metrics go to
    ``RUN/eval/<split>_<tag>/metrics.{json,csv,md}`` (:meth:`EvalSetting.folder`). The files
    are not written here: the caller writes them
    (:func:`~gsbench.evaluation.report.write_and_print_metrics`) once it has reported the saved
    predictions and exports.
    """
    loaded = load_model_for_eval(target, device)
    data = data if data is not None else loaded.recipe.data.root
    if data is None:
        raise GsbenchError("give --data (a prepared dataset); the run's recipe names none")
    setting = EvalSetting(split, output=output,
                          protocol=apply_changes(loaded.recipe.test, protocol or {}))
    options = InferenceOptions(setting.protocol.with_crop(loaded.recipe.data.crop_size),
                               output, batch)
    if json_path is None and csv_path is None and markdown_path is None and loaded.run_dir is not None:
        folder = setting.folder(loaded.run_dir)  # where report and ablate look
        json_path, csv_path, markdown_path = (folder / f"metrics.{ext}" for ext in ("json", "csv", "md"))
    metrics = evaluate_model(
        loaded, data, split=split, options=options, device=device,
        save_pred_dir=save_pred_dir, export=export, export_dir=export_dir, radii=radii,
        crop_factors=crop_factors, fscore_convention=fscore_convention, verify=verify,
        on_progress=on_progress, on_prediction=on_prediction,
    )
    title = None if metrics is None else \
        f"{target} on {metrics['dataset']} {metrics['split']} ({setting.tag()})"
    return TargetEvaluation(
        setting, metrics, title,
        *(None if p is None else Path(p) for p in (json_path, csv_path, markdown_path)),
    )
