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
