"""The ``gsbench`` command line: a thin shell over the library.

Every command parses its options, calls one library function and prints the result with rich;
a :class:`~gsbench.errors.GsbenchError` becomes ``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from gsbench import __version__
from gsbench.commands import EVAL_FLAGS, TRAIN_FLAGS, Flag
from gsbench.errors import GsbenchError
from gsbench.weights import EXPORT_TARGETS, SOURCES

app = typer.Typer(
    name="gsbench",
    help="Reproduce the benchmark tables of PSANet, Gated-SCNN, GFF, GPSNet and RANet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
prepare_app = typer.Typer(
    help="Turn a raw dataset (or the built-in synthetic one) into gsbench training data.",
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare-data")

#: Columns of output that goes to a pipe or a file: lines are not wrapped there (rich would cut
#: tables and paths at 80 columns), unless COLUMNS says otherwise.
UNWRAPPED_WIDTH = 10_000


class _Console(Console):
    """A rich console as wide as the terminal in a terminal, and unwrapped off one."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and "COLUMNS" not in self._environ:
            return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


console = _Console()
err_console = _Console(stderr=True)


def _plain_help_types() -> None:
    """Help without typer's ``<bool>`` beside a flag and ``<list[str]>`` beside a repeatable
    option or argument: a flag takes no value, a repeatable one takes an item at a time."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        show = cls.__dict__.get("display_type_rich") or getattr(cls, "display_type_rich", None)
        if show is None:  # typer versions without a type column
            continue

        def display_type_rich(self, ctx, show=show):
            if getattr(self, "is_flag", False):
                return None
            text = show(self, ctx)
            return re.sub(r"^<list\[(.*)\]>", lambda m: f"<{m.group(1).lower()}>", text) \
                if text else text

        cls.display_type_rich = display_type_rich


_plain_help_types()


def user_errors(func):
    """Turn GsbenchError into a one-line message and exit status 2 (no traceback). The message
    is printed as written: brackets in it (``[height, width]``, a path) are not rich markup."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GsbenchError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _option(flag: Flag):
    """The Typer option of one of :mod:`gsbench.commands`' flags (the options gsbench writes into
    command lines itself, so that the two cannot drift apart)."""
    names = (f"{flag.names[0]}/{flag.names[1]}",) if flag.form == "toggle" else flag.names
    return typer.Option(flag.default, *names, help=flag.help)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"gsbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Reproduce the benchmark tables of PSANet, Gated-SCNN, GFF, GPSNet and RANet."""


# --- prepare-data -------------------------------------------------------------------------------
# (commands are defined in the sections below)


# --- prepare-data cityscapes / ade20k ---
def _prepare_real_dataset(dataset: str, root: Path, out: Optional[Path], workers: int,
                          quiet: bool, **options) -> None:
    from gsbench.data.prepare import prepare_raw

    show_progress = not quiet and sys.stdout.isatty()
    result = prepare_raw(dataset, root, out, workers=workers, progress=show_progress,
                         options=options)
    if quiet:
        return
    where = result.out / "manifest.json"
    if result.up_to_date:
        console.print(f"{dataset}: up to date ({where})", highlight=False, soft_wrap=True)
        return
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in result.manifest.splits.items())
    console.print(
        f"{dataset}: {counts} images; prepared {result.prepared}, reused {result.reused}; "
        f"wrote {where}",
        highlight=False,
        soft_wrap=True,
    )


_ROOT_HELP = "Raw dataset folder (extracted folders, or the official zip archives)."
_OUT_HELP = "Prepared folder to write (default: ROOT/gsbench)."
_WORKERS_HELP = "Worker processes (one per CPU core is a good choice)."
_QUIET_HELP = "No progress bar and no summary."


def _add_real_dataset_command(command: str, dataset: str, root_help: str, summary: str) -> None:
    """Register `gsbench prepare-data COMMAND`: the same options and output for every raw dataset."""

    @prepare_app.command(command, help=summary)
    @user_errors
    def prepare_data(
        root: Path = typer.Option(..., "--root", help=root_help),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        workers: int = typer.Option(2, "--workers", min=1, help=_WORKERS_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q", help=_QUIET_HELP),
    ) -> None:
        _prepare_real_dataset(dataset, root, out, workers, quiet)


@prepare_app.command(
    "cityscapes",
    help="Cityscapes: train, val (fine) and test (no labels), plus train_extra (the 19,998 "
    "coarse images) when ROOT holds gtCoarse/ and leftImg8bit/train_extra/ (or gtCoarse.zip and "
    "leftImg8bit_trainextra.zip); trainId labels, edge targets, manifest.json with checksums.")
@user_errors
def prepare_data_cityscapes(
    root: Path = typer.Option(
        ..., "--root", help=_ROOT_HELP + " leftImg8bit/ + gtFine/ (+ gtCoarse/)."),
    out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
    workers: int = typer.Option(2, "--workers", min=1, help=_WORKERS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=_QUIET_HELP),
    no_coarse: bool = typer.Option(
        False, "--no-coarse", help="Skip the coarse annotations even if ROOT holds them."),
) -> None:
    _prepare_real_dataset("cityscapes", root, out, workers, quiet, coarse=not no_coarse)


_add_real_dataset_command(
    "ade20k", "ade20k", _ROOT_HELP + " ADEChallengeData2016/.",
    "ADE20K (SceneParsing 150): trainId labels (value - 1, 0 -> 255), edges, manifest.json.")


# --- prepare-data voc / context / cocostuff ---
_TAR_ROOT_HELP = "Raw dataset folder (extracted folders, or the official archives)."

_add_real_dataset_command(
    "voc", "voc2012", _TAR_ROOT_HELP + " VOCdevkit/VOC2012/ (+ benchmark_RELEASE/ for SBD), "
    "or VOCtrainval_11-May-2012.tar (+ benchmark.tgz).",
    "PASCAL VOC 2012 (21 classes): train, val and, with SBD, trainaug (10,582 images).")
_add_real_dataset_command(
    "context", "pascal_context", _TAR_ROOT_HELP + " VOCdevkit/VOC2010/ with "
    "SegmentationClassContext/ and ImageSets/SegmentationContext/.",
    "PASCAL Context 59: trainId labels (value - 1, background 0 -> 255), edges, manifest.json.")
_add_real_dataset_command(
    "cocostuff", "coco_stuff", _TAR_ROOT_HELP + " images/ + annotations/ (stuffthingmaps), or "
    "train2017.zip, val2017.zip and stuffthingmaps_trainval2017.zip.",
    "COCO-Stuff 164k (171 classes): the used ids in order -> trainIds 0..170, edges, manifest.")
_add_real_dataset_command(
    "cocostuff10k", "coco_stuff10k", _TAR_ROOT_HELP + " images/ + annotations/ (.mat) + "
    "imageLists/, or cocostuff-10k-v1.1.zip.",
    "COCO-Stuff 10k (GFF Table 9, RANet Tables 4 and 6; 171 classes): train = train.txt (9,000), "
    "val = test.txt (1,000, public labels: the papers' testing/validation set).")


# --- prepare-data synthetic ---
@prepare_app.command("synthetic")
@user_errors
def prepare_data_synthetic(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write: new, empty, or an earlier synthetic output."
    ),
    n_train: int = typer.Option(32, "--n-train", help="Training images."),
    n_val: int = typer.Option(8, "--n-val", help="Validation images (all 19 classes occur)."),
    size: str = typer.Option("256x512", "--size", help="Image size HEIGHTxWIDTH."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same bytes."),
    layout: str = typer.Option("cityscapes", "--layout", help="cityscapes or ade20k."),
    workers: int = typer.Option(2, "--workers", help=_WORKERS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=_QUIET_HELP),
) -> None:
    """Generate synthetic street scenes in the raw Cityscapes (or ADE20K) layout and prepare them."""
    import time

    from gsbench.data.synthetic import parse_size, prepare_synthetic

    start = time.perf_counter()
    height, width = parse_size(size)
    manifest = prepare_synthetic(
        out, n_train=n_train, n_val=n_val, size=(height, width), seed=seed, layout=layout,
        workers=workers, progress=not quiet and sys.stdout.isatty(),
    )
    if quiet:
        return
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in manifest.splits.items())
    console.print(
        f"synthetic {layout}: {counts} images of {height}x{width} (seed {seed}) in {out}; "
        f"prepared data: {manifest.root / 'manifest.json'} ({time.perf_counter() - start:.1f} s)",
        highlight=False,
    )


# --- train --------------------------------------------------------------------------------------
@app.command()
@user_errors
def train(
    recipe: Optional[str] = _option(TRAIN_FLAGS["recipe"]),
    data: Optional[Path] = _option(TRAIN_FLAGS["data"]),
    overrides: list[str] = _option(TRAIN_FLAGS["overrides"]),
    pretrained: Optional[Path] = typer.Option(
        None, "--pretrained", help="Local ImageNet backbone weights (torchvision or mmseg layout); "
        "sets the recipe's `pretrained`."),
    out: Optional[Path] = _option(TRAIN_FLAGS["out"]),
    resume: bool = _option(TRAIN_FLAGS["resume"]),
    device: str = _option(TRAIN_FLAGS["device"]),
    stop_after: Optional[int] = typer.Option(
        None, "--stop-after", help="Stop after this iteration with a checkpoint (resume later)."),
    quiet: bool = _option(TRAIN_FLAGS["quiet"]),
) -> None:
    """Train a model from a recipe (one CPU/GPU, or DDP under torchrun).

    Multi-GPU: torchrun --nproc_per_node 8 -m gsbench.cli train --recipe psanet101 --data DIR
    --device cuda (multi-node: add torchrun's --nnodes/--rdzv_endpoint flags).
    """
    from gsbench.engine.run_dir import load_resumed_recipe
    from gsbench.engine.train import train as run_training
    from gsbench.recipes import load_recipe

    if pretrained is not None and not pretrained.is_file():
        raise GsbenchError(f"{pretrained}: --pretrained weights file not found")
    if resume:
        if out is None:
            raise GsbenchError("--resume needs --out RUN_DIR (the run folder to continue)")
        if pretrained is not None:
            raise GsbenchError("--pretrained cannot change a resumed run (its weights come from the checkpoint)")
        resolved = load_resumed_recipe(out, recipe, overrides)
    elif recipe is None:
        raise GsbenchError("--recipe is required (a name from `gsbench zoo` or a YAML file)")
    else:
        resolved = load_recipe(recipe, overrides)
        if pretrained is not None:
            resolved = dataclasses.replace(resolved, pretrained=str(pretrained.resolve()))
    run_dir = out if out is not None else Path("runs") / resolved.name
    result = run_training(resolved, run_dir, data_root=data, resume=resume, device=device,
                          quiet=quiet, command=["gsbench", *sys.argv[1:]], stop_after=stop_after)
    if not quiet and result.is_main:
        state = "finished" if result.finished else "stopped"
        miou = f", val mIoU {100 * result.metrics['miou']:.2f}" if result.metrics else ""
        console.print(f"{state} at iteration {result.iteration}{miou}: {result.run_dir}", highlight=False)


# --- import-weights -----------------------------------------------------------------------------
def _sources_help() -> str:
    return "Which code saved FILE: " + "; ".join(f"{name} ({what})" for name, what in SOURCES.items())


@app.command("import-weights")
@user_errors
def import_weights_command(
    file: Path = typer.Argument(..., metavar="FILE", help="A released checkpoint (.pth / .pt)."),
    source: str = typer.Option(..., "--from", metavar="|".join(SOURCES), help=_sources_help()),
    recipe: str = typer.Option(
        ..., "--recipe", help="The recipe whose model receives the weights (a name from "
        "`gsbench zoo` or a YAML file)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Run folder to write, absent or empty (default: runs/RECIPE-SOURCE)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Import a released checkpoint of a paper's official code as a finished run folder.

    Every tensor of the file is mapped onto the recipe's model in the source's official forms
    (or the import stops naming the tensors that do not fit); the run records the source's
    preprocessing and test procedure and a provenance record (file, sha256, mapping).
    Then: gsbench eval RUN_DIR --data ROOT.
    """
    from gsbench.weights.importer import import_weights

    result = import_weights(file, source, recipe, out, command=["gsbench", *sys.argv[1:]])
    if quiet:
        return
    p = result.provenance
    dropped = list(p["checkpoint"]["dropped_entries"]) + list(p["mapping"]["dropped"])
    options = ", ".join(f"{k}={v}" for k, v in p["model_options"].items())
    console.print(
        f"imported {p['mapping']['tensors_mapped']} tensors of {p['file']} ({p['repository']}, "
        f"sha256 {p['sha256'][:12]}) into {result.run_dir}\n"
        f"dropped: {', '.join(dropped) or 'nothing'}\n"
        f"official forms: {options or 'none beyond the recipe'}\n"
        f"evaluate: gsbench eval {result.run_dir} --data ROOT",
        highlight=False, soft_wrap=True)


# --- export-weights -----------------------------------------------------------------------------
@app.command("export-weights")
@user_errors
def export_weights_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run folder (trained or "
                                   "imported): its final weights, else its last checkpoint."),
    to: str = typer.Option(..., "--to", metavar="|".join(EXPORT_TARGETS),
                           help="mmseg: an mmsegmentation 1.x checkpoint and a config that "
                           "inherits mmseg's own."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder to write, absent or empty (default: RUN_DIR/mmseg)."),
) -> None:
    """Export a run's model to mmsegmentation: RUN.pth (with the meta data mmseg's loader reads)
    and RUN.py (_base_ = mmseg's config for the architecture and dataset, plus what the model
    differs in). Forms mmseg cannot express are refused, naming the form.
    Then: mmseg.apis.init_model('RUN.py', 'RUN.pth') or mmseg's tools/test.py.
    """
    from gsbench.weights.export import export_mmseg

    if to not in EXPORT_TARGETS:
        raise GsbenchError(f"--to {to!r}: the export targets are {', '.join(EXPORT_TARGETS)}")
    result = export_mmseg(run_dir, out)
    console.print(f"wrote {result.checkpoint} ({result.tensors} tensors) and {result.config} "
                  f"(_base_ {result.base_config})", highlight=False, soft_wrap=True)


# --- zoo ----------------------------------------------------------------------------------------
@app.command()
@user_errors
def zoo() -> None:
    """List the registered models and the built-in recipes."""
    from rich.table import Table

    from gsbench.models.registry import list_models
    from gsbench.recipes import list_recipes, load_recipe

    models = Table(title="Models", title_justify="left")
    models.add_column("model")
    for name in list_models():
        models.add_row(name)
    console.print(models)
    recipes = Table(title="Recipes", title_justify="left")
    for column in ("recipe", "model", "backbone", "dataset", "crop", "batch", "iterations"):
        recipes.add_column(column, no_wrap=column == "recipe",
                           justify="right" if column in ("batch", "iterations") else "left")
    for name in list_recipes():
        r = load_recipe(name)
        variant = f" ({r.model.psa_type})" if "psa_type" in r.model.options else ""
        recipes.add_row(name, r.model.name + variant, r.model.backbone, r.data.dataset,
                        "x".join(map(str, r.data.crop_size)), str(r.train.batch_size),
                        str(r.train.iterations))
    console.print(recipes)


# --- eval ---------------------------------------------------------------------------------------
#: ``gsbench eval --show``: panels of this many images by default.
SHOW_DEFAULT = 4


def _panel_radius(radii: list[int] | tuple[int, ...]) -> int:
    """The boundary radius of the panels: the first of ``--radii`` (3 when they are off)."""
    from gsbench.metrics.boundary import DEFAULT_RADII

    return radii[0] if radii else DEFAULT_RADII[0]


def _write_panels(panels, folder: Path, quiet: bool) -> None:
    written = panels.write(folder)
    if written and not quiet:
        console.print(f"wrote {len(written)} prediction panel(s) to {folder}", highlight=False,
                      soft_wrap=True)


@app.command("eval")
@user_errors
def eval_command(
    target: Optional[Path] = typer.Argument(
        None, metavar="TARGET",
        help="A run folder or checkpoint to evaluate (infers the split; instead of --pred-dir).",
    ),
    pred_dir: Optional[Path] = typer.Option(
        None, "--pred-dir",
        help="Folder of predicted label maps; each file name contains its sample's stem.",
    ),
    data: Optional[Path] = _option(EVAL_FLAGS["data"]),
    split: str = _option(EVAL_FLAGS["split"]),
    pred_format: str = typer.Option(
        "trainid", "--pred-format",
        help="trainid, or labelid (Cityscapes labelIds, as the official tools write them).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write metrics.json here, in a folder that exists (default: print "
        "only; a TARGET run folder: TARGET/eval/...)."
    ),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the per-class table as CSV."),
    markdown_path: Optional[Path] = typer.Option(
        None, "--markdown", help="Write a Markdown report."
    ),
    radii: str = typer.Option(
        "3,5,9,12", "--radii", help="Boundary F-score radii in pixels; 'none' skips boundary F."
    ),
    fscore_convention: str = typer.Option(
        "gscnn", "--fscore-convention",
        help="gscnn: a class absent from GT and prediction scores F=1 (official code); "
        "strict: skip such images.",
    ),
    crop_factors: Optional[str] = typer.Option(
        None, "--crop-factors", show_default=False,
        help="Distance-based crop factors, px at 1024 rows (Gated-SCNN Fig. 3); 'none' skips "
        "them. [default: 0,50,...,400 for Cityscapes, none for ADE20K]",
    ),
    workers: int = typer.Option(2, "--workers", help="Worker processes (results do not depend on it)."),
    verify: bool = typer.Option(
        False, "--verify", help="First check the images and ground truth against the sha256 "
        "sums prepare-data recorded in the manifest."
    ),
    quiet: bool = _option(EVAL_FLAGS["quiet"]),
    procedure: Optional[str] = _option(EVAL_FLAGS["procedure"]),
    slide: Optional[bool] = _option(EVAL_FLAGS["slide"]),
    crop: Optional[str] = _option(EVAL_FLAGS["crop"]),
    stride: Optional[str] = _option(EVAL_FLAGS["stride"]),
    base_size: Optional[str] = _option(EVAL_FLAGS["base_size"]),
    ms: bool = _option(EVAL_FLAGS["ms"]),
    scales: Optional[str] = _option(EVAL_FLAGS["scales"]),
    flip: Optional[bool] = _option(EVAL_FLAGS["flip"]),
    align_corners: Optional[bool] = _option(EVAL_FLAGS["align_corners"]),
    output: str = _option(EVAL_FLAGS["output"]),
    batch: Optional[int] = typer.Option(
        None, "--batch", help="TARGET: images (views, windows) per forward pass, by default as "
        "many as hold a megapixel; changes speed and memory, not the result."
    ),
    save_pred: Optional[Path] = typer.Option(
        None, "--save-pred", help="TARGET: write the predicted trainIds as DIR/{stem}.png."
    ),
    export: Optional[str] = typer.Option(
        None, "--export", help="TARGET: 'cityscapes' writes test-server labelId PNGs to --out-dir."
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for --export files."),
    device: str = _option(EVAL_FLAGS["device"]),
    show_dir: Optional[Path] = typer.Option(
        None, "--show-dir", help="Write prediction panels here: image, ground truth, "
        "prediction, error map, boundary matches at the first --radii radius."),
    show: int = typer.Option(
        SHOW_DEFAULT, "--show", help="Panels of the first N images: into --show-dir, or "
        "for a run folder beside its metrics (RUN/eval/<setting>/panels/, shown by `gsbench "
        "report --html`); 0: none."),
) -> None:
    """Score predictions: mIoU, accuracies, iIoU, boundary F at each radius, crop mIoU.

    Either a folder of saved predictions (--pred-dir P --data ROOT) or a trained model
    (TARGET = run folder or checkpoint, --data ROOT) under its recipe's test protocol (the
    test: section; the TARGET options change it), whose metrics default to
    TARGET/eval/{split}_{ss|ms|ms-<scales>}[_flip][_slide[-<crop>]][_<procedure>][_<output>]/
    metrics.{json,csv,md}.
    """
    from gsbench.engine.run_dir import run_dir_locks
    from gsbench.evaluation.metrics_config import parse_int_list
    from gsbench.evaluation.pred_dir import evaluate_prediction_dir
    from gsbench.evaluation.report import check_output_paths, write_and_print_metrics
    from gsbench.evaluation.setting import protocol_options

    check_output_paths({"--out": out, "--csv": csv_path, "--markdown": markdown_path},
                       {"--save-pred": save_pred, "--out-dir": out_dir})

    protocol = protocol_options(
        procedure=procedure, slide=slide, crop=crop, stride=stride, base_size=base_size, ms=ms,
        scales=scales, flip=flip, align_corners=align_corners,
    )
    if target is not None:
        if pred_dir is not None:
            raise GsbenchError("give a TARGET (run folder or checkpoint) or --pred-dir, not both")
        if pred_format != "trainid":
            raise GsbenchError("--pred-format: only for scoring --pred-dir, not for evaluating a "
                               "TARGET (run folder or checkpoint)")
        radii_px = parse_int_list(radii, "--radii", minimum=1)
        factors = None if crop_factors is None else parse_int_list(crop_factors, "--crop-factors")
        _evaluate_target(
            target, data, split=split, output=output, protocol=protocol, batch=batch,
            save_pred=save_pred, export=export, out_dir=out_dir, device=device, radii=radii_px,
            crop_factors=factors, fscore_convention=fscore_convention, out=out,
            csv_path=csv_path, markdown_path=markdown_path, verify=verify, quiet=quiet,
            show=show, show_dir=show_dir,
        )
        return
    if pred_dir is None or data is None:
        raise GsbenchError("give --pred-dir (predicted label maps) and --data (a prepared dataset)")
    model_options = [name for name, value in (("--output", output != "out"), ("--batch", batch))
                     if value] + [f"--{key.replace('_', '-')}" for key, value in protocol.items()
                                  if value is not None]
    if model_options:
        raise GsbenchError(f"{', '.join(model_options)}: only for evaluating a TARGET (run "
                           "folder or checkpoint), not for scoring --pred-dir")
    radii_px = parse_int_list(radii, "--radii", minimum=1)
    factors = None if crop_factors is None else parse_int_list(crop_factors, "--crop-factors")

    with run_dir_locks(out, csv_path, markdown_path, show_dir):  # outputs inside a run folder
        with _progress("scoring", quiet) as on_progress:
            metrics = evaluate_prediction_dir(
                pred_dir, data, split=split, pred_format=pred_format, radii=radii_px,
                crop_factors=factors, fscore_convention=fscore_convention, workers=workers,
                verify=verify, on_progress=on_progress,
            )
        title = f"{pred_dir} on {metrics['dataset']} {metrics['split']}"
        write_and_print_metrics(metrics, title, out, csv_path, markdown_path, console=console)
        if show_dir is not None and show > 0:
            from gsbench.predict import prediction_dir_panels

            panels = prediction_dir_panels(pred_dir, data, split, pred_format, show,
                                           _panel_radius(radii_px))
            _write_panels(panels, show_dir, quiet)


#: Seconds between two progress lines when stderr is not a terminal.
PROGRESS_EVERY = 10.0


@contextlib.contextmanager
def _progress(label: str, quiet: bool):
    """Progress of a job on stderr: a transient bar with the time left in a terminal, else a
    line at most every :data:`PROGRESS_EVERY` seconds (none with --quiet); yields the
    ``on_progress(done, total)`` callback that drives it."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        yield lambda done, total: None
        return
    if not err_console.is_terminal:
        from gsbench.tables.ablate import clock

        start = time.monotonic()
        last = [start]

        def line(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY or done <= 0 or done >= total:
                return
            last[0] = now
            left = (now - start) / done * (total - done)
            err_console.print(f"{label}: {done}/{total}, {clock(now - start)} elapsed, about "
                              f"{clock(left)} left", highlight=False, soft_wrap=True)

        yield line
        return
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _evaluate_target(
    target: Path, data: Optional[Path], *, split: str = "val", output: str = "out",
    protocol=None, batch: Optional[int] = None,
    save_pred: Optional[Path] = None, export: Optional[str] = None, out_dir: Optional[Path] = None,
    device: str = "cpu", radii=None, crop_factors=None, fscore_convention: str = "gscnn",
    out: Optional[Path] = None, csv_path: Optional[Path] = None,
    markdown_path: Optional[Path] = None, verify: bool = False, quiet: bool = False,
    show: int = SHOW_DEFAULT, show_dir: Optional[Path] = None,
) -> None:
    """`gsbench eval RUN_DIR|CHECKPOINT` (and quickstart's last step): the progress bar, the
    panels and the printing around :func:`gsbench.evaluation.model.evaluate_target`."""
    from gsbench.engine.run_dir import find_checkpoint, run_dir_locks
    from gsbench.evaluation.model import evaluate_target
    from gsbench.evaluation.report import write_and_print_metrics
    from gsbench.predict import PanelCollector
    from gsbench.visualize import PANELS_DIR

    panels = PanelCollector(show, _panel_radius(radii or ()))
    # the run folder the metrics go to by default, and any that an output lies in, is ours
    default_folder = find_checkpoint(target)[1] if (out, csv_path, markdown_path) == (None,) * 3 else None
    with run_dir_locks(default_folder, out, csv_path, markdown_path, save_pred,
                       out_dir if export else None, show_dir):
        with _progress(f"inferring {split}", quiet) as on_progress:
            result = evaluate_target(
                target, data, split=split, output=output, protocol=protocol, batch=batch,
                device=device, save_pred_dir=save_pred,
                export=export, export_dir=out_dir, radii=radii, crop_factors=crop_factors,
                fscore_convention=fscore_convention, json_path=out, csv_path=csv_path,
                markdown_path=markdown_path, verify=verify, on_progress=on_progress,
                on_prediction=panels if show > 0 else None,
            )
        for folder, what in ((save_pred, "predictions"), (out_dir if export else None, f"{export} export")):
            if folder is not None and not quiet:
                console.print(f"wrote {what} to {folder}", highlight=False)
        if result.metrics is None:
            return
        write_and_print_metrics(result.metrics, result.title, result.json_path, result.csv_path,
                                result.markdown_path, console=console, quiet=quiet)
        in_run = out is None and csv_path is None and markdown_path is None and \
            result.json_path is not None  # the metrics went to the run's eval folder
        if show_dir is None and in_run:
            show_dir = result.json_path.parent / PANELS_DIR
        if show_dir is not None:
            _write_panels(panels, show_dir, quiet)


# --- predict ------------------------------------------------------------------------------------
@app.command()
@user_errors
def predict(
    target: Path = typer.Argument(
        ..., metavar="TARGET", help="A run folder (trained, or imported with its recipe) or a "
        "checkpoint."),
    images: list[Path] = typer.Argument(
        ..., metavar="IMAGES", help="JPEG or PNG files, or folders of them; any size."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for trainIds/, color/, overlay/ "
                             "(and boundary/, labelIds/) PNGs, one per image."),
    labelids: bool = typer.Option(
        False, "--labelids", help="Also write Cityscapes labelIds (OUT/labelIds/)."),
    procedure: Optional[str] = _option(EVAL_FLAGS["procedure"]),
    slide: Optional[bool] = _option(EVAL_FLAGS["slide"]),
    crop: Optional[str] = _option(EVAL_FLAGS["crop"]),
    stride: Optional[str] = _option(EVAL_FLAGS["stride"]),
    base_size: Optional[str] = _option(EVAL_FLAGS["base_size"]),
    ms: bool = _option(EVAL_FLAGS["ms"]),
    scales: Optional[str] = _option(EVAL_FLAGS["scales"]),
    flip: Optional[bool] = _option(EVAL_FLAGS["flip"]),
    align_corners: Optional[bool] = _option(EVAL_FLAGS["align_corners"]),
    output: str = _option(EVAL_FLAGS["output"]),
    batch: Optional[int] = typer.Option(
        None, "--batch", help="Images (views, windows) per forward pass; changes speed and "
        "memory, not the result."),
    device: str = _option(EVAL_FLAGS["device"]),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary."),
) -> None:
    """Run a trained model on your own images: class maps, colour maps in the dataset's palette,
    overlays, and boundary maps of models with a boundary output (Gated-SCNN, RANet).

    The model is run as `gsbench eval` runs it: the run's test protocol (its recipe's test:
    section), changed by the same options. OUT/trainIds/ can be scored with
    `gsbench eval --pred-dir OUT/trainIds --data ROOT`.
    """
    from gsbench.evaluation.setting import protocol_options
    from gsbench.predict import predict_images

    protocol = protocol_options(
        procedure=procedure, slide=slide, crop=crop, stride=stride, base_size=base_size, ms=ms,
        scales=scales, flip=flip, align_corners=align_corners,
    )
    with _progress("predicting", quiet) as on_progress:
        written = predict_images(
            target, images, out, protocol=protocol, output=output, batch=batch, device=device,
            labelids=labelids, on_progress=on_progress,
        )
    if not quiet:
        boundaries = sum(p.boundary is not None for p in written)
        console.print(f"predicted {len(written)} image(s): {out}/trainIds, color, overlay"
                      + (f", boundary ({boundaries})" if boundaries else "")
                      + (", labelIds" if labelids else ""), highlight=False, soft_wrap=True)


@app.command()
@user_errors
def ablate(
    table: str = typer.Argument(..., metavar="TABLE", help="A table (gff.table1) or table file."),
    data: Optional[list[str]] = typer.Option(
        None, "--data", metavar="[DATASET=]PATH",
        help="Prepared dataset folder the runs train on: PATH for every dataset of the table, or "
        "DATASET=PATH (repeatable) for one, e.g. --data cityscapes=cs --data pascal_context=pc."),
    scale: str = typer.Option(
        "full", "--scale", help="full: the papers' recipes; smoke: their toy -smoke variants."),
    seeds: int = typer.Option(1, "--seeds", help="Runs per cell (seeds s..s+N-1); report: mean +- std."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder of the run folders."),
    devices: str = typer.Option(
        "cpu", "--devices", help="cpu (one run at a time) or cuda:0,cuda:1,... (one run per GPU)."),
    rows: Optional[list[str]] = typer.Option(
        None, "--row", help="Only this row of the table (row id, repeatable)."),
    nproc: int = typer.Option(
        8, "--nproc-per-node", help="--dry-run at full scale: GPUs per run in the torchrun lines."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands instead of running them."),
) -> None:
    """Train and evaluate the missing cells of a paper table (finished runs are skipped,
    interrupted ones resumed, unevaluated ones evaluated).

    --dry-run prints the commands instead (torchrun lines at full scale), for a scheduler;
    a dataset without --data shows as <DATASET data> there.

    `gsbench report TABLE --scale S` then shows the table.
    """
    from gsbench.tables import (
        DataRoots, parse_devices, placeholder_root, plan_ablation, plan_commands, run_plan,
        select_tables,
    )

    chosen = select_tables([table])
    if len(chosen) != 1:
        raise GsbenchError(f"ablate takes one table, {table!r} names {len(chosen)} (e.g. gff.table1)")
    device_list = parse_devices(devices)
    if not data and not dry_run:
        raise GsbenchError("--data is required to train (a prepared dataset folder, or "
                           "DATASET=PATH per dataset)")
    roots = DataRoots.parse(data or [])
    plan = plan_ablation(chosen[0], runs, scale=scale, seeds=seeds, rows=rows)
    if not dry_run:
        roots.check(plan.pending)  # every dataset has its data before anything runs
    for warning in plan.warnings:
        err_console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    for cell, why in plan.skipped:
        err_console.print(f"skipped {cell}: {why}", highlight=False, soft_wrap=True)
    pending = plan.pending
    console.print(f"{plan.table.id} at {scale} scale: {len(plan.done)} cell(s) done, "
                  f"{len(pending)} run(s) to train or evaluate, {len(plan.skipped)} cell(s) "
                  "skipped", highlight=False, soft_wrap=True)
    if dry_run:
        for dataset in roots.missing(pending):
            err_console.print(f"note: no --data for {dataset}: its commands say "
                              f"{placeholder_root(dataset)}", highlight=False, soft_wrap=True)
        gpu = scale == "full" or device_list != ["cpu"]
        for line in plan_commands(plan, roots, device="cuda" if gpu else "cpu",
                                  nproc=nproc if scale == "full" else 1, placeholders=True):
            sys.stdout.write(line + "\n")
        return
    results = run_plan(plan, roots, device_list,
                       on_event=lambda message: console.print(message, highlight=False,
                                                              soft_wrap=True))
    failed = [r for r in results if r.returncode not in (0, None)]
    skipped = [r for r in results if r.returncode is None]
    if failed or skipped:
        also = f", {len(skipped)} skipped (the run they start from failed)" if skipped else ""
        raise GsbenchError(f"{len(failed)} of {len(results)} run(s) failed{also}; logs: "
                           + ", ".join(str(r.log) for r in failed))


# --- report -------------------------------------------------------------------------------------
@app.command()
@user_errors
def report(
    tables: Optional[list[str]] = typer.Argument(
        None, metavar="TABLE",
        help="Tables (gff.table1), papers (gscnn: all its tables) or table files; default all."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder searched for run folders."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="md, csv or latex: written to --out (default md), or printed "
        "instead of the terminal tables without --out."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write report.{md,csv,tex} and the plots (PNG) into this folder: "
        "the table's runs only, and a per-class IoU chart per table."),
    data: Optional[list[str]] = typer.Option(
        None, "--data", help="Prepared data to put in the commands of missing cells: PATH, or "
        "DATASET=PATH per dataset (repeatable); a dataset without one shows as <DATASET data>."),
    scale: str = typer.Option(
        "full", "--scale", help="full: runs of the papers' recipes; smoke: runs of their -smoke "
        "variants (as `gsbench ablate --scale smoke` trains them)."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Write DIR/report.html: one self-contained page with the plots, "
        "per-class charts and the prediction panels of the table's runs inlined."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No terminal tables."),
) -> None:
    """Print the papers' tables with the paper's numbers beside ours.

    Our value is the mean +- std over the run folders under --runs whose recipe is the cell's;
    a missing cell shows the gsbench train / eval command that fills it. Tables of parameters,
    FLOPs, memory and receptive fields are computed on the spot.
    """
    from gsbench.tables import DataRoots, RunIndex, build_report, select_tables
    from gsbench.tables.render import (
        FORMATS, matplotlib_available, render, rich_table, scale_line, summary_line, write_plots,
        write_report,
    )

    if fmt is not None and fmt not in FORMATS:
        raise GsbenchError(f"unknown --format {fmt!r} (use {', '.join(FORMATS)})")
    for folder, flag in ((out, "--out"), (html, "--html")):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise GsbenchError(f"{folder}: {flag} names a file; it must be a folder (new or "
                               "existing) for the report's files")
    roots = DataRoots.parse(data or [])
    chosen = select_tables(tables or [])
    index = RunIndex(runs)
    reports = [build_report(table, index, roots, scale) for table in chosen]
    for warning in index.warnings:
        err_console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    if html is not None:
        from gsbench.tables.html import write_html_report

        page = write_html_report(reports, html)
        err_console.print(f"wrote {page}", highlight=False, soft_wrap=True)
    if out is None and fmt is not None:
        # plain text on stdout, for redirecting into a file
        sys.stdout.write(render(reports, fmt))
        return
    if not quiet:
        console.print(scale_line(reports), highlight=False)
        for item in reports:
            console.print(rich_table(item))
            console.print(summary_line(item), highlight=False)
            for number, command in enumerate(item.commands, 1):
                console.print(f"  #{number}: {command}", highlight=False, soft_wrap=True)
    if out is None:
        return
    path = write_report(reports, out, fmt or "md")
    if not quiet:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    if not matplotlib_available():
        err_console.print("matplotlib is not installed: plots skipped (pip install matplotlib)")
        return
    for plot in write_plots(reports, out / "plots"):
        if not quiet:
            console.print(f"wrote {plot}", highlight=False, soft_wrap=True)


# --- profile ------------------------------------------------------------------------------------
@app.command()
@user_errors
def profile(
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Built-in recipe name or YAML path."),
    overrides: list[str] = typer.Option([], "--set", help="Recipe override key=value (repeatable)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name, instead of --recipe."),
    backbone: str = typer.Option("resnet101", help="Backbone (with --model)."),
    num_classes: int = typer.Option(19, "--num-classes", help="Classes (with --model)."),
    output_stride: int = typer.Option(8, "--output-stride", help="8 or 16 (with --model)."),
    module: Optional[str] = typer.Option(
        None, "--module", help="Attention module name (RANet Table 3), instead of --recipe."),
    scope: str = typer.Option("module", "--scope",
                              help="With --module: 'module' (attention alone) or 'head' (whole head)."),
    input_shape: Optional[str] = typer.Option(
        None, "--input", help="N x C x H x W (default 1x3x512x512; 1x512x97x97 with --module)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    no_aux: bool = typer.Option(False, "--no-aux", help="Drop the aux head (the papers' counts)."),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Time forward and backward."),
    warmup: int = typer.Option(2, help="Untimed calls before timing."),
    repeat: int = typer.Option(5, help="Timed calls; the median is reported."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameters, GFLOPs / GMACs, peak memory and latency of a model or attention module."""
    import json
    import warnings

    import torch
    from rich.table import Table

    from gsbench.analysis.complexity import parse_input_shape, profile_model
    from gsbench.models.backbones import RandomInitWarning
    from gsbench.models.registry import build_model

    if sum(x is not None for x in (recipe, model, module)) != 1:
        raise GsbenchError("give exactly one of --recipe NAME, --model NAME or --module NAME")
    if module is None and scope != "module":
        raise GsbenchError("--scope needs --module NAME")
    default_shape = "1x512x97x97" if module is not None else "1x3x512x512"
    shape = parse_input_shape(input_shape or default_shape)
    if device not in ("cpu", "cuda"):
        raise GsbenchError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise GsbenchError("--device cuda: no CUDA device is available")
    if module is not None:
        _profile_attention(module, scope, shape, device, latency, warmup, repeat, as_json)
        return
    if recipe is not None:
        from gsbench.recipes import load_recipe

        loaded = load_recipe(recipe, overrides)
        name, num_classes = loaded.model.name, loaded.data.num_classes
        kwargs = loaded.model.builder_kwargs()
    else:
        if overrides:
            raise GsbenchError("--set needs --recipe; with --model use --backbone etc.")
        name, kwargs = model, {"backbone": backbone, "output_stride": output_stride}
    if no_aux:
        kwargs["aux"] = False
    # Weights do not change the figures: build without a checkpoint.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        with torch.device(device):
            net = build_model(name, num_classes=num_classes, pretrained=None, **kwargs)
    with _progress(f"profiling {recipe or name}", quiet=False) as on_progress:
        figures = profile_model(net, shape, latency=latency, warmup=warmup, repeat=repeat,
                                on_progress=on_progress)
    figures = {"model": name, "recipe": recipe, "aux": bool(kwargs.get("aux", True)),
               **figures, "device": device}
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    table = Table(title=f"{recipe or name} @ {'x'.join(map(str, shape))} on {device}",
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{figures['params_m']:.2f} M")
    table.add_row("GFLOPs (multiply-add = 2)", f"{figures['gflops']:.4g}")
    table.add_row("GMACs (multiply-adds)", f"{figures['gmacs']:.4g}")
    table.add_row("peak memory, forward", f"{figures['peak_memory_forward_mib']:.4g} MiB")
    table.add_row("peak memory, forward+backward", f"{figures['peak_memory_train_mib']:.4g} MiB")
    if latency:
        table.add_row("latency, forward (median)", f"{figures['latency_forward_ms']:.1f} ms")
        table.add_row("latency, forward+backward (median)",
                      f"{figures['latency_forward_backward_ms']:.1f} ms")
    console.print(table)
    console.print(f"memory: {figures['memory_method']}; aux head "
                  f"{'included' if figures['aux'] else 'excluded'}", highlight=False)


def _profile_attention(name: str, scope: str, shape: tuple[int, ...], device: str, latency: bool,
                       warmup: int, repeat: int, as_json: bool) -> None:
    """`profile --module`: one attention module's figures beside its RANet Table 3 row."""
    import json

    from rich.table import Table

    from gsbench.analysis.attention import profile_attention_module

    with _progress(f"profiling {name}", quiet=False) as on_progress:
        figures = profile_attention_module(name, shape, scope, device, latency, warmup, repeat,
                                           on_progress=on_progress)
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    paper = figures["paper"] or {}
    beside = bool(paper) and scope == "head"  # the paper's figures are the whole head's
    paper_shape = "x".join(map(str, figures["paper_input_shape"]))
    table = Table(title=f"attention module {name} ({scope}) @ {'x'.join(map(str, shape))} on "
                        f"{device}", title_justify="left")
    table.add_column("figure (increase)")
    table.add_column("gsbench", justify="right")
    if beside:
        table.add_column(f"{figures['paper_source']} @ {paper_shape}, row {paper['label']}",
                         justify="right")

    def row(label: str, ours: str, key: str = "", unit: str = "") -> None:
        theirs = f"{paper[key]:g} {unit}" if key in paper else "-" if key else ""
        table.add_row(label, ours, *([theirs] if beside else []))

    row("GFLOPs (multiply-add = 2)", f"{figures['gflops']:.4g}")
    row("GMACs (multiply-adds)", f"{figures['gmacs']:.4g}", "gflops", "G")
    row("parameters", f"{figures['params_m']:.3g} M", "params_m", "M")
    row("peak memory, forward", f"{figures['peak_memory_forward_mib']:.4g} MiB")
    row("peak memory, forward+backward", f"{figures['peak_memory_train_mib']:.4g} MiB",
        "memory_mb", "MB")
    if latency:
        row("latency, forward (median)", f"{figures['latency_forward_ms']:.1f} ms")
        row("latency, forward+backward (median)",
            f"{figures['latency_forward_backward_ms']:.1f} ms")
    console.print(table)
    if paper and not beside:
        console.print(f"{figures['paper_source']} (row {paper['label']}, @ {paper_shape}) gives "
                      f"the whole head: {paper['gflops']:g} GFLOPs, {paper['params_m']:g} M "
                      f"parameters, {paper['memory_mb']:g} MB; `--scope head` sets gsbench's "
                      "figures of the whole head beside them.", highlight=False)
    if figures.get("cases"):  # a module whose cost depends on the input's values
        cases = Table(title="input cases (the first one is timed above)", title_justify="left")
        for column in ("case", "regions", "GFLOPs", "GMACs", "peak fwd", "peak fwd+bwd"):
            cases.add_column(column, justify="left" if column == "case" else "right")
        for case in figures["cases"]:
            cases.add_row(case["case"], str(case["regions"]), f"{case['gflops']:.4g}",
                          f"{case['gmacs']:.4g}", f"{case['peak_memory_forward_mib']:.4g} MiB",
                          f"{case['peak_memory_train_mib']:.4g} MiB")
        console.print(cases)
    console.print(f"counts: {figures['counts']}. The paper defines neither its FLOPS nor its "
                  f"memory column; they stand beside the figures they come closest to at "
                  f"scope head on a 2048-channel map. memory: {figures['memory_method']}.",
                  highlight=False)


# --- quickstart ---------------------------------------------------------------------------------
#: The quickstart's data and recipe, tuned for a short CPU schedule on small synthetic street
#: scenes: many training images (cheap to generate, and 48 images overfit within 1000
#: iterations), the pspnet smoke recipe on whole 128x256 images with flip and a mild scale
#: jitter instead of the full augmentation (rotation, blur and colour jitter slow early
#: learning; scales 0.5-2.0 cost 7 points), a higher backbone lr (from scratch). lr 0.1 and
#: class-uniform sampling of half the images (the rare classes are seen more often) score higher
#: than lr 0.05 at the same cost. OHEM on the main loss (threshold 0.7, as GPSNet and OCNet
#: train; 20,000 of the batch's 131,072 pixels at least) adds 3-5 points at the same
#: iterations, mostly on persons, riders, trains and motorcycles. The 200 images are decoded
#: once and kept (the dataset keeps a split this small), so loading is cheap enough for the
#: training process itself: a loader worker would only take a core from the training step's
#: threads. 100 validation images, scored once at the end (no validation during training: it
#: only costs time), make the figure steady across thread counts, where 20 moved it by 2
#: points; benchmarks/RESULTS.md, "quickstart", has the measurements.
QUICKSTART_SIZE = "128x256"
QUICKSTART_N_TRAIN = 200
QUICKSTART_N_VAL = 100
QUICKSTART_RECIPE = "pspnet101-smoke"
QUICKSTART_OVERRIDES = (
    "train.iterations=2000", "train.batch_size=4", "train.lr=0.1", "train.head_lr_mult=2",
    "data.crop_size=[128,256]", "data.scale_range=[0.75,1.25]", "data.rotate_degrees=0",
    "data.blur_prob=0", "data.color_jitter=0", "data.class_uniform=0.5", "train.ohem_thresh=0.7",
    "train.ohem_min_kept=20000", "train.num_workers=0", "train.log_every=100",
    "train.checkpoint_every=500", "train.val_every=0",
)


@app.command()
@user_errors
def quickstart(
    out: Path = typer.Option(Path("gsbench-quickstart"), "--out", "-o",
                             help="Folder for the synthetic data (data/) and the run (run/)."),
    iterations: Optional[int] = typer.Option(
        None, "--iterations", min=1, help="Training iterations (default: the tuned recipe's)."),
    size: str = typer.Option(QUICKSTART_SIZE, "--size", help="Synthetic image size HEIGHTxWIDTH."),
    n_train: int = typer.Option(QUICKSTART_N_TRAIN, "--n-train", min=1, help="Training images."),
    n_val: int = typer.Option(QUICKSTART_N_VAL, "--n-val", min=1, help="Validation images."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output and no table."),
) -> None:
    """Synthetic data -> train a small PSPNet -> evaluate -> print the table (minutes on a CPU).

    The same library calls as `gsbench prepare-data synthetic`, `gsbench train` and
    `gsbench eval RUN_DIR`; the run folder OUT/run can be evaluated again with other options.
    Run it again with the same options after an interruption: it goes on where it stopped
    (the data is kept, training resumes from its last checkpoint, a trained run is evaluated).
    """
    from gsbench.data.synthetic import parse_size, prepare_synthetic
    from gsbench.engine.run_dir import is_finished, load_resumed_recipe
    from gsbench.engine.train import train as run_training
    from gsbench.recipes import load_recipe

    run_dir = out / "run"
    overrides = list(QUICKSTART_OVERRIDES)
    if iterations is not None:
        overrides.append(f"train.iterations={iterations}")
    resume = run_dir.is_dir() and any(run_dir.iterdir())
    # fail on a bad recipe, or on options that differ from an earlier run's, before any work
    recipe = load_resumed_recipe(run_dir, QUICKSTART_RECIPE, overrides) if resume and \
        (run_dir / "recipe.yaml").is_file() else load_recipe(QUICKSTART_RECIPE, overrides)
    show = not quiet
    if show:
        console.print(f"[bold]1/3[/] synthetic data: {n_train} train + {n_val} val images of {size}",
                      highlight=False)
    manifest = prepare_synthetic(
        out / "data", n_train=n_train, n_val=n_val, size=parse_size(size), workers=2,
        progress=show and sys.stdout.isatty(),
    )
    if show:
        what = ("already trained" if is_finished(run_dir) else "resume") if resume else "train"
        console.print(f"[bold]2/3[/] {what} {recipe.name} ({recipe.model.name}, "
                      f"{recipe.model.backbone}) for {recipe.train.iterations} iterations",
                      highlight=False)
    if not is_finished(run_dir):
        run_training(recipe, run_dir, data_root=manifest.root, quiet=quiet, resume=resume,
                     command=["gsbench", *sys.argv[1:]])
    if show:
        console.print(f"[bold]3/3[/] evaluate {run_dir} on {manifest.root} (val)", highlight=False)
    _evaluate_target(run_dir, manifest.root, split="val", quiet=quiet)


# --- rfsr ---------------------------------------------------------------------------------------
@app.command()
@user_errors
def rfsr(
    dilations: list[str] = typer.Option(
        [], "--dilations",
        help="Extra setting (repeatable): rates 1,12,24,36 (ASPP, DenseASPP) or a grid of "
             "branches 1,3;11,13;23,29;33,37 (SuperNet, GPS)."),
    in_channels: int = typer.Option(2048, "--in-channels", min=1,
                                    help="Input channels for the parameter counts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Receptive field and sample rate of ASPP, DenseASPP, SuperNet and GPS (GPSNet Table 4)."""
    import json

    from rich.table import Table

    from gsbench.analysis.rfsr import stats_for_dilations, table4

    rows = table4(in_channels)
    extra = [s.to_dict() for text in dilations for s in stats_for_dilations(text, in_channels)]
    if as_json:
        print(json.dumps({"table4": rows, "custom": extra}, indent=2))
        return
    table = Table(title=f"GPSNet Table 4: RF / SR / parameters ({in_channels} input channels)",
                  title_justify="left")
    for column in ("method", "dilations", "RF", "paper", "SR", "paper", "params", "paper"):
        table.add_column(column, justify="left" if column in ("method", "dilations") else "right")
    for row in rows:
        table.add_row(row["method"], row["dilations"], str(row["rf"]), str(row["paper_rf"]),
                      f"{row['sr']:.3f}", f"{row['paper_sr']:.3f}", f"{row['params'] / 1e6:.2f} M",
                      f"{row['paper_params_m']} M")
    for row in extra:
        table.add_row(row["method"], row["dilations"], str(row["rf"]), "", f"{row['sr']:.3f}",
                      "", f"{row['params'] / 1e6:.2f} M", "")
    console.print(table)
    for row in rows:
        if row["note"]:
            console.print(f"- {row['method']}: {row['note']}", highlight=False)
    console.print("RF: side of the square the sampled positions span; SR: positions / RF^2 "
                  "(GPSNet App. A). Parameters: the modules' convolutions + BN.", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
