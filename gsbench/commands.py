"""The flags of ``gsbench train`` and ``gsbench eval`` that gsbench writes into command lines of
its own, defined once, and :func:`command_line`, the one function that writes those lines.

``gsbench ablate`` runs each run folder's ``train`` and ``eval`` as subprocesses (a run in
processes of its own: its memory and a crash stay with it, and a multi-GPU run starts under
``torchrun``); ``ablate --dry-run`` prints the same lines and ``gsbench report`` suggests them for
missing cells. cli.py builds these options of its ``train`` and ``eval`` commands from the
:class:`Flag` s here, so a flag renamed here is renamed in both, and tests/test_commands.py
parses written lines with the real CLI.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsbench.engine.outputs import MAIN_OUTPUT
from gsbench.evaluation.setting import (
    DEFAULT_MS_SCALES, EvalSetting, is_default_ms, scale_text,
)
from gsbench.protocol import PROCEDURES, TestProtocol, protocol_changes

#: How a value is written: ``value`` (``--name VALUE``), ``switch`` (``--name`` when true),
#: ``toggle`` (``--name`` when true, its second name ``--no-name`` when false, nothing for None)
#: or ``repeat`` (``--name ITEM`` for each item of a list).
FORMS = ("value", "switch", "toggle", "repeat")


@dataclass(frozen=True)
class Flag:
    """One option of a ``gsbench`` command: its names (the first is the one written), the
    default and help the CLI shows, and how a value is written (one of :data:`FORMS`)."""

    names: tuple[str, ...]
    default: Any
    help: str
    form: str = "value"

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"option {self.names[0]}: form {self.form!r} is none of {FORMS}")
        if self.form == "toggle" and len(self.names) != 2:
            raise ValueError(f"option {self.names[0]}: a toggle has two names (on, off)")

    def words(self, value: Any) -> list[str]:
        """``value`` on a command line; nothing for None, False (but a toggle's off name) or an
        empty list."""
        if self.form == "switch":
            return [self.names[0]] if value else []
        if self.form == "toggle":
            return [] if value is None else [self.names[0] if value else self.names[1]]
        if value is None:
            return []
        items = value if self.form == "repeat" else [value]
        return [word for item in items for word in (self.names[0], str(item))]


#: The options of ``gsbench train`` written by gsbench, by the CLI's parameter name, in the
#: order :func:`command_line` writes them.
TRAIN_FLAGS: dict[str, Flag] = {
    "resume": Flag(("--resume",), False, "Continue the run in --out from checkpoints/last.pt.",
                     "switch"),
    "recipe": Flag(("--recipe", "-r"), None, "Recipe name (see `gsbench zoo`) or YAML file; "
                     "with --resume the run folder's recipe is used."),
    "overrides": Flag(("--set",), [], "Override a recipe key, e.g. --set train.lr=0.02 "
                        "(repeatable).", "repeat"),
    "data": Flag(("--data",), None, "Prepared dataset folder (or raw root holding "
                   "gsbench/manifest.json)."),
    "out": Flag(("--out", "-o"), None, "Run folder (default: runs/RECIPE_NAME)."),
    "device": Flag(("--device",), "cpu", "cpu or cuda (under torchrun: one GPU per process)."),
    "quiet": Flag(("--quiet", "-q"), False, "No progress output.", "switch"),
}

#: The options of ``gsbench eval TARGET`` written by gsbench, as :data:`TRAIN_FLAGS`. The test
#: protocol's options change the run's recorded protocol (its recipe's ``test:`` section);
#: ``--procedure`` starts from that procedure's defaults instead, so a line that names it means
#: the same on every run (gsbench writes it on every line).
EVAL_FLAGS: dict[str, Flag] = {
    "data": Flag(("--data",), None, "Prepared dataset (folder with manifest.json)."),
    "split": Flag(("--split",), "val", "Split of the manifest to score."),
    "procedure": Flag(("--procedure",), None, "TARGET: the test procedure: "
                      + ", ".join(PROCEDURES) + " (default: the run's recipe, test.procedure; "
                      "naming one starts from its defaults)."),
    "slide": Flag(("--slide", "--whole"), None, "TARGET: sliding windows (of --crop, default the "
                  "recipe's training crop) or the whole image.", "toggle"),
    "crop": Flag(("--crop",), None, "TARGET: sliding-window size H,W (or one number)."),
    "stride": Flag(("--stride",), None, "TARGET: sliding-window stride H,W (default: "
                   "ceil(2/3 x crop))."),
    "base_size": Flag(("--base-size",), None, "TARGET: the image's long side at scale 1 "
                      "(semseg, psanet-caffe), or mmseg's test scale LONG[,SHORT]."),
    "ms": Flag(("--ms",), False, "TARGET: multi-scale inference at "
                 + ",".join(scale_text(s) for s in DEFAULT_MS_SCALES) + ".", "switch"),
    "scales": Flag(("--scales",), None, "TARGET: inference at these scales (e.g. "
                     "0.75,1.0,1.25,1.5,1.75; 1.0 for single scale)."),
    "flip": Flag(("--flip", "--no-flip"), None, "TARGET: also infer the mirrored image (default: "
                 "the procedure's).", "toggle"),
    "align_corners": Flag(("--align-corners", "--no-align-corners"), None, "TARGET, mmseg: resize "
                          "logits back with align_corners=True (its 769x769 models).", "toggle"),
    "output": Flag(("--output",), MAIN_OUTPUT, "TARGET: the model output to score: out (the "
                     "prediction) or an auxiliary map the model exposes (coarse: RANet's semantic "
                     "score map C)."),
    "device": Flag(("--device",), "cpu", "TARGET: cpu or cuda."),
    "quiet": Flag(("--quiet", "-q"), False, "No progress bar.", "switch"),
}

COMMANDS: dict[str, dict[str, Flag]] = {"train": TRAIN_FLAGS, "eval": EVAL_FLAGS}

#: The start of a command line that people type and schedulers run: the installed entry point.
GSBENCH: tuple[str, ...] = ("gsbench",)


def torchrun(nproc: int) -> tuple[str, ...]:
    """The start of a command line that runs ``nproc`` processes (one GPU each) under torchrun."""
    return ("torchrun", f"--nproc_per_node={nproc}", "-m", "gsbench.cli")


def this_python() -> tuple[str, ...]:
    """The start of a command line that runs gsbench with this interpreter (the installed entry
    point may not be on PATH)."""
    return (sys.executable, "-m", "gsbench.cli")


def command_line(command: str, target: str | Path | None = None, *,
                 launcher: tuple[str, ...] = GSBENCH, **values: Any) -> list[str]:
    """The words of ``<launcher> COMMAND [TARGET] --option value ...``.

    ``values`` are keyed by the CLI's parameter names (``overrides`` for ``--set``) and written
    in the order of :data:`COMMANDS` ``[command]``; None, False and empty lists are left out, so
    that the CLI's default holds."""
    options = COMMANDS[command]
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise TypeError(f"gsbench {command} has no option {', '.join(unknown)} to write")
    words = [*launcher, command] + ([str(target)] if target is not None else [])
    for key, flag in options.items():
        if key in values:
            words += flag.words(values[key])
    return words


def _numbers(values: Any) -> str | None:
    return None if values is None else ",".join(str(v) for v in values)


def evaluation_values(setting: EvalSetting) -> dict[str, Any]:
    """The ``gsbench eval`` values of an evaluation setting: the split, the procedure (always,
    so the line does not depend on the protocol a run recorded) and what differs from its
    defaults (``--ms`` alone for the default multi-scale list), and the output unless it is the
    prediction."""
    protocol = setting.protocol
    changes = protocol_changes(protocol, TestProtocol(protocol.procedure))
    scales = changes.get("scales")
    return {
        "split": setting.split,
        "procedure": protocol.procedure,
        "slide": None if "mode" not in changes else changes["mode"] == "slide",
        "crop": _numbers(changes.get("crop_size")),
        "stride": _numbers(changes.get("stride")),
        "base_size": _numbers(changes.get("base_size")),
        "ms": scales is not None and is_default_ms(scales),
        "scales": None if scales is None or is_default_ms(scales) else
        ",".join(scale_text(s) for s in scales),
        "flip": changes.get("flip"),
        "align_corners": changes.get("align_corners"),
        "output": None if setting.output == MAIN_OUTPUT else setting.output,
    }


__all__ = ["COMMANDS", "EVAL_FLAGS", "FORMS", "GSBENCH", "Flag", "TRAIN_FLAGS",
           "command_line", "evaluation_values", "this_python", "torchrun"]
