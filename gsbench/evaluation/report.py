"""The metrics report: one metrics.json dict as terminal tables, CSV and Markdown, written out.

The dict is the one :meth:`gsbench.metrics.segmentation.SegmentationMetrics.compute` returns
(scores in percent), as both ways of ``gsbench eval`` produce it. Rendering never changes
values: the CSV and metrics.json keep full precision, the terminal and Markdown round to two
decimals as the papers do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_text


def _radii(metrics: Mapping[str, Any]) -> list[str]:
    return [str(r) for r in metrics.get("radii", [])] or list(metrics.get("boundary_f", {}))


def _per_class_boundary(metrics: Mapping[str, Any], radius: str, name: str) -> float | None:
    per_radius = metrics.get("boundary_f_per_class", {}).get(radius, {})
    return per_radius.get(name)


def summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """(label, score) rows of the summary: mIoU, accuracies, iIoU, boundary F, crop mIoU."""
    rows: list[tuple[str, float | None]] = [
        ("mIoU", metrics.get("miou")),
        ("pixel acc", metrics.get("pixel_acc")),
        ("mean acc", metrics.get("mean_acc")),
    ]
    if metrics.get("iiou") is not None:
        rows.append(("iIoU", metrics["iiou"]))
    boundary = metrics.get("boundary_f", {})
    rows += [(f"boundary F @ {r} px", boundary.get(r)) for r in _radii(metrics)]
    rows += [(f"crop mIoU @ {c}", value) for c, value in metrics.get("crop_miou", {}).items()]
    return rows


def per_class_header(metrics: Mapping[str, Any]) -> list[str]:
    header = ["class", "IoU"] + [f"F@{r}px" for r in _radii(metrics)]
    if "per_class_iiou" in metrics:
        header.append("iIoU")
    return header


def per_class_rows(metrics: Mapping[str, Any]) -> list[list[Any]]:
    """One row per class: name, IoU, boundary F at each radius (and iIoU when computed);
    ``None`` or nan where a score is undefined (a class absent from ground truth and prediction)."""
    radii = _radii(metrics)
    per_class_iiou = metrics.get("per_class_iiou")
    rows = []
    for name, iou in metrics.get("per_class_iou", {}).items():
        row = [name, iou] + [_per_class_boundary(metrics, r, name) for r in radii]
        if per_class_iiou is not None:
            row.append(per_class_iiou.get(name))
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _csv_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def metrics_csv(metrics: Mapping[str, Any]) -> str:
    """The per-class table as CSV, full precision, empty cells for undefined scores."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(per_class_header(metrics))
    for row in per_class_rows(metrics):
        writer.writerow([_csv_cell(v) for v in row])
    return buffer.getvalue()


def _markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    aligns = [":---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines


def metrics_markdown(metrics: Mapping[str, Any], title: str | None = None) -> str:
    """A Markdown report: the summary table, then the per-class table (two decimals)."""
    lines = []
    if title:
        lines += [f"# {title}", ""]
    context = [f"{metrics['num_images']} images"] if "num_images" in metrics else []
    if "fscore_convention" in metrics:
        context.append(f"boundary F convention: {metrics['fscore_convention']}")
    if context:
        lines += ["; ".join(context) + ". Scores in percent.", ""]
    lines += ["## Summary", ""]
    lines += _markdown_table(["metric", "score"], [[k, v] for k, v in summary_rows(metrics)])
    lines += ["", "## Per class", ""]
    lines += _markdown_table(per_class_header(metrics), per_class_rows(metrics))
    return "\n".join(lines) + "\n"


def metrics_rich_tables(
    metrics: Mapping[str, Any], title: str | None = None
) -> tuple[Table, Table]:
    """The summary and per-class tables for printing with rich."""
    summary = Table(title=title or "Summary", title_justify="left")
    summary.add_column("metric")
    summary.add_column("score", justify="right")
    for label, value in summary_rows(metrics):
        summary.add_row(label, _fmt(value))
    per_class = Table(title="Per class", title_justify="left")
    for i, name in enumerate(per_class_header(metrics)):
        per_class.add_column(name, justify="left" if i == 0 else "right")
    for row in per_class_rows(metrics):
        per_class.add_row(*(_fmt(v) for v in row))
    return summary, per_class


def check_output_paths(files: Mapping[str, str | os.PathLike | None],
                       folders: Mapping[str, str | os.PathLike | None] = {}) -> None:
    """Refuse, before any work, an output that cannot be written where it was named: the
    folder above every named file (``--out``, ``--csv``, ``--markdown``) and named folder
    (``--save-pred``, ``--out-dir``) must exist - gsbench creates the folder you name, never
    missing folders above it, which are more often a typo than a wish - a file must not name a
    folder nor a folder a file."""
    for option, path in [*files.items(), *folders.items()]:
        if path is None:
            continue
        path = Path(path)
        parent = path.parent
        if not parent.is_dir():
            raise GsbenchError(f"{option} {path}: the folder {parent} does not exist "
                               "(gsbench does not create the folders above an output)")
        if option in files and path.is_dir():
            raise GsbenchError(f"{option} {path}: is a folder; give a file name for the output")
        if option in folders and path.exists() and not path.is_dir():
            raise GsbenchError(f"{option} {path}: is a file; give a folder for the output")


def write_metrics_outputs(
    metrics: Mapping[str, Any],
    *,
    json_path: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    markdown_path: str | os.PathLike | None = None,
    title: str | None = None,
) -> None:
    """Write the requested outputs atomically; everything is rendered and every target checked
    before the first write, so a bad path leaves no partial set of outputs behind."""
    texts = []
    if json_path is not None:
        texts.append((Path(json_path), json.dumps(dict(metrics), indent=2) + "\n"))
    if csv_path is not None:
        texts.append((Path(csv_path), metrics_csv(metrics)))
    if markdown_path is not None:
        texts.append((Path(markdown_path), metrics_markdown(metrics, title)))
    for path, _ in texts:
        if path.is_dir():
            raise GsbenchError(f"{path}: is a folder; give a file name for the output")
    for path, text in texts:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise GsbenchError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_and_print_metrics(
    metrics: Mapping[str, Any],
    title: str,
    out: str | os.PathLike | None,
    csv_path: str | os.PathLike | None,
    markdown_path: str | os.PathLike | None,
    *,
    console: Console,
    quiet: bool = False,
) -> None:
    """What ``gsbench eval`` ends with: write the requested outputs, then print the tables and
    the written paths on ``console`` (nothing with ``quiet``)."""
    write_metrics_outputs(
        metrics, json_path=out, csv_path=csv_path, markdown_path=markdown_path, title=title
    )
    if quiet:
        return
    for table in metrics_rich_tables(metrics, title=title):
        console.print(table)
    for path in (out, csv_path, markdown_path):
        if path is not None:
            console.print(f"wrote {path}", highlight=False)
