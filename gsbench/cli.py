"""The ``gsbench`` command line: a thin shell over the library.

Every command parses its options, calls one library function and prints the result with rich;
a :class:`~gsbench.errors.GsbenchError` becomes ``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from gsbench import __version__
from gsbench.errors import GsbenchError

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

console = Console()
err_console = Console(stderr=True)


def user_errors(func):
    """Turn GsbenchError into a one-line message and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GsbenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def not_yet(what: str, roadmap: str) -> None:
    """Refuse a command that a later roadmap item brings, with a clear message and exit 2."""
    err_console.print(f"[bold red]error:[/] `gsbench {what}` is not available yet: {roadmap}")
    raise typer.Exit(2)


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
                          quiet: bool) -> None:
    from gsbench.data.prepare import prepare_raw

    show_progress = not quiet and sys.stdout.isatty()
    result = prepare_raw(dataset, root, out, workers=workers, progress=show_progress)
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
_OUT_HELP = "Prepared folder to write [default: ROOT/gsbench]."
_WORKERS_HELP = "Worker processes (one per CPU core is a good choice)."
_QUIET_HELP = "No progress bar and no summary."


@prepare_app.command("cityscapes")
@user_errors
def prepare_data_cityscapes(
    root: Path = typer.Option(..., "--root", help=_ROOT_HELP + " leftImg8bit/ + gtFine/."),
    out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
    workers: int = typer.Option(2, "--workers", min=1, help=_WORKERS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help=_QUIET_HELP),
) -> None:
    """Cityscapes fine annotations: trainId labels, edge targets, manifest.json with checksums."""
    _prepare_real_dataset("cityscapes", root, out, workers, quiet)


@prepare_app.command("ade20k")
@user_errors
def prepare_data_ade20k(
    root: Path = typer.Option(..., "--root", help=_ROOT_HELP + " ADEChallengeData2016/."),
    out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
    workers: int = typer.Option(2, "--workers", min=1, help=_WORKERS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help=_QUIET_HELP),
) -> None:
    """ADE20K (SceneParsing 150): trainId labels (value - 1, 0 -> 255), edges, manifest.json."""
    _prepare_real_dataset("ade20k", root, out, workers, quiet)


# --- train --------------------------------------------------------------------------------------
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train() -> None:
    """Train a model from a recipe (single CPU/GPU, or DDP under torchrun)."""
    not_yet("train", "the training engine arrives with the engine and model-zoo roadmap item")


# --- eval ---------------------------------------------------------------------------------------
# (defined below)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ablate() -> None:
    """Train and evaluate the missing cells of a paper's ablation table."""
    not_yet("ablate", "it arrives with the paper-tables roadmap item")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def report() -> None:
    """Print the papers' tables with the paper's numbers beside ours."""
    not_yet("report", "it arrives with the paper-tables roadmap item")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
