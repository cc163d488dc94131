"""Render table reports (:class:`gsbench.tables.TableReport`) as rich tables, Markdown, CSV and
LaTeX, and plot runs (mIoU against crop factor, boundary F against radius, training curves).

Every format lists one line per cell - the paper's row and column, the evaluation setting with
its test protocol (the terminal view leaves it out; CSV spells out every protocol parameter and
where the paper or official code states it), the paper's value, ours (mean +- std over runs),
the difference and the runs it comes from - so that tables of any shape (per-class tables
included) read the same way; missing cells point to the numbered commands listed under each
table. Values keep full precision in CSV and two decimals elsewhere (RF and SR three, as the
papers print them). Every format states the scale of the runs, and a smoke-scale report carries
:data:`~gsbench.tables.report.SMOKE_NOTE` (CSV: the ``scale`` column, and the ``filled-smoke``
state of its cells).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from pathlib import Path
from typing import Iterable

from rich.table import Table as RichTable

from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, atomic_write_text
from gsbench.tables.report import SMOKE_NOTE, CellReport, TableReport
from gsbench.tables.runs import eval_metrics_file
from gsbench.tables.smoke import cell_evaluation

FORMATS = {"md": "report.md", "csv": "report.csv", "latex": "report.tex"}

CSV_COLUMNS = (
    "table", "scale", "row_id", "row", "column", "metric", "dataset", "split", "scales", "flip",
    "protocol", "protocol_source", "radius",
    "crop_factor", "class", "recipe", "overrides", "baseline", "paper", "ours", "std", "runs_n",
    "delta", "state", "runs", "commands", "detail",
)

#: Decimals of figures that the papers do not print with two.
_PRECISE = {"sr": 3, "rf": 0}


def _fmt(value: float | None, metric: str = "", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    digits = _PRECISE.get(metric, 2)
    if round(value, digits) == 0:
        value = 0.0  # no "-0.00"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def ours_text(cell: CellReport) -> str:
    """``80.41 +- 0.12`` (std over runs), ``80.41`` (one run) or ``-``."""
    text = _fmt(cell.ours, cell.cell.metric)
    if cell.std is not None:
        text += f" ± {_fmt(cell.std, cell.cell.metric)}"
    return text


def source_text(cell: CellReport, command_numbers: dict[str, int]) -> str:
    """Where our value comes from, or what fills the cell."""
    if cell.state in ("reproduced", "filled-smoke"):
        runs = f"{len([r for r in cell.runs if not r.startswith('-')])} run(s): " + ", ".join(cell.runs)
        return runs + (f"; {cell.detail}" if cell.detail else "")
    if cell.commands:
        numbers = ", ".join(f"#{command_numbers[c]}" for c in cell.commands)
        what = "evaluate" if cell.state == "missing-eval" else "train + evaluate"
        return f"missing: {what} with command {numbers}" + (f"; {cell.detail}" if cell.detail else "")
    label = {"computed": "computed", "not-computed": "not computed",
             "not-reproducible": "not reproducible", "missing-recipe": "missing recipe",
             "quoted": "quoted"}[cell.state]
    return f"{label}: {cell.detail}" if cell.detail else label


def _row_label(report: TableReport, cell: CellReport) -> str:
    texts = [report.table.text[k] for k in ((cell.cell.row_id, c.key) for c in report.table.columns
                                            if c.metric is None) if k in report.table.text]
    return cell.cell.row_label + (f" ({', '.join(texts)})" if texts else "")


def _numbers(report: TableReport) -> dict[str, int]:
    return {command: i for i, command in enumerate(report.commands, 1)}


def rich_table(report: TableReport) -> RichTable:
    """The terminal view of one table."""
    numbers = _numbers(report)
    table = RichTable(title=f"{report.table.id}  {report.table.title}", title_justify="left")
    for name, justify in (("row", "left"), ("column", "left"), ("paper", "right"),
                          ("ours", "right"), ("Δ", "right"), ("run / how to fill", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    previous = None
    for cell in report.cells:
        row = _row_label(report, cell)
        table.add_row(row if row != previous else "", cell.cell.column_label,
                      _fmt(cell.cell.paper_value, cell.cell.metric), ours_text(cell),
                      _fmt(cell.delta, cell.cell.metric, signed=True), source_text(cell, numbers))
        previous = row
    return table


#: How the summary line counts a state, where its name does not read as words.
_STATE_WORDS = {"filled-smoke": "filled at smoke scale"}


def summary_line(report: TableReport) -> str:
    """``12 cells: 3 reproduced, 9 missing-run`` (smoke scale: ``4 filled at smoke scale``)."""
    counts: dict[str, int] = {}
    for cell in report.cells:
        counts[cell.state] = counts.get(cell.state, 0) + 1
    return f"{len(report.cells)} cells: " + ", ".join(
        f"{n} {_STATE_WORDS.get(state, state)}" for state, n in counts.items())


def scale_line(reports: Iterable[TableReport]) -> str:
    """What scale the runs are at, in words: the smoke warning when any report is at smoke
    scale."""
    scales = sorted({report.scale for report in reports})
    if "smoke" in scales:
        return SMOKE_NOTE
    return f"Scale: {', '.join(scales) or 'full'} (the papers' recipes)."


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Iterable[TableReport]) -> str:
    reports = list(reports)
    out = ["# Paper tables: paper values beside gsbench's", "", f"> {scale_line(reports)}", ""]
    for report in reports:
        numbers = _numbers(report)
        out += [f"## {report.table.id}: {_md_escape(report.table.title)}", "", summary_line(report), ""]
        if report.static_method:
            out += [f"Computed: {report.static_method}.", ""]
        out += ["| row | column | setting | paper | ours | Δ | run / how to fill |",
                "| --- | --- | --- | ---: | ---: | ---: | --- |"]
        for cell in report.cells:
            c = cell.cell
            out.append("| " + " | ".join(_md_escape(x) for x in (
                _row_label(report, cell), c.column_label, c.setting, _fmt(c.paper_value, c.metric),
                ours_text(cell), _fmt(cell.delta, c.metric, signed=True), source_text(cell, numbers),
            )) + " |")
        if numbers:
            out += ["", "Commands that fill the missing cells:", ""]
            out += [f"{i}. `{command}`" for command, i in numbers.items()]
        out.append("")
    return "\n".join(out)


def render_csv(reports: Iterable[TableReport]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for report in reports:
        for cell in report.cells:
            c = cell.cell
            writer.writerow([
                c.table_id, report.scale, c.row_id, _row_label(report, cell), c.column_label, c.metric,
                c.dataset or "", c.split, c.scales, c.flip, c.protocol_text, c.protocol_source or "",
                c.radius if c.radius is not None else "",
                c.crop_factor if c.crop_factor is not None else "", c.class_name or "", c.recipe or "",
                " ".join(c.overrides), c.baseline or "",
                "" if c.paper_value is None else c.paper_value,
                "" if cell.ours is None else cell.ours, "" if cell.std is None else cell.std,
                len([r for r in cell.runs if not r.startswith("-")]),
                "" if cell.delta is None else cell.delta, cell.state, " ".join(cell.runs),
                " ; ".join(cell.commands), cell.detail,
            ])
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_breakable(text: str) -> str:
    """Escaped ``text`` that may break after a ``/`` or ``_`` (paths in a narrow column)."""
    return latex_escape(text).replace("/", r"/\allowbreak{}").replace(r"\_", r"\_\allowbreak{}")


def render_latex(reports: Iterable[TableReport]) -> str:
    """One ``table`` environment (booktabs) per paper table; the last column (the runs, or how
    to fill a missing cell) wraps in full, and the scale note stands under each table."""
    reports = list(reports)
    note = scale_line(reports)
    out = ["% gsbench report: paper values beside gsbench's (needs \\usepackage{booktabs,array})",
           f"% {note}", ""]
    for report in reports:
        numbers = _numbers(report)
        out += [r"\begin{table}[t]", r"\centering", r"\scriptsize",
                r"\begin{tabular}{lllrrr>{\raggedright\arraybackslash}p{0.35\linewidth}}",
                r"\toprule",
                r"Row & Column & Setting & Paper & Ours & $\Delta$ & Run / how to fill \\",
                r"\midrule"]
        for cell in report.cells:
            c = cell.cell
            out.append(" & ".join([*(latex_escape(x) for x in (
                _row_label(report, cell), c.column_label, c.setting, _fmt(c.paper_value, c.metric),
                ours_text(cell), _fmt(cell.delta, c.metric, signed=True))),
                _latex_breakable(source_text(cell, numbers))]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}",
                r"\par\smallskip{}" + latex_escape(note),
                r"\caption{" + latex_escape(f"{report.table.title} ({summary_line(report)})") + "}",
                r"\label{tab:" + report.table.id.replace(".", "-") + "}", r"\end{table}"]
        if numbers:
            out += ["% commands that fill the missing cells:"]
            out += [f"% {i}. {command}" for command, i in numbers.items()]
        out.append("")
    return "\n".join(out)


RENDERERS = {"md": render_markdown, "csv": render_csv, "latex": render_latex}


def render(reports: list[TableReport], fmt: str) -> str:
    if fmt not in RENDERERS:
        raise GsbenchError(f"unknown --format {fmt!r} (use {', '.join(RENDERERS)})")
    return RENDERERS[fmt](reports)


def write_report(reports: list[TableReport], out_dir: Path, fmt: str) -> Path:
    """Write ``out_dir/report.{md,csv,tex}``; returns the path."""
    text = render(reports, fmt)
    path = Path(out_dir) / FORMATS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


# --- plots --------------------------------------------------------------------------------------


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def table_runs(reports: Iterable[TableReport]) -> list[Path]:
    """The run folders the reports' values come from (baselines included), in table order, each
    once: what the plots show."""
    return list(dict.fromkeys(run for report in reports for cell in report.cells
                              for run in cell.run_dirs))


def _run_labels(runs: list[Path]) -> dict[Path, str]:
    """Short names of ``runs``: their paths below the folder they all share."""
    if not runs:
        return {}
    common = Path(os.path.commonpath([str(run.parent) for run in runs]))
    return {run: str(run.relative_to(common)) for run in runs}


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _curve(metrics: dict, key: str) -> tuple[list[int], list[float]]:
    points = sorted((int(k), v) for k, v in (metrics.get(key) or {}).items()
                    if isinstance(v, (int, float)) and not math.isnan(v))
    return [p for p, _ in points], [v for _, v in points]


#: The evaluation curves: metrics.json key, x label, y label, title, file name.
_CURVES = (
    ("crop_miou", "crop factor (px at 1024 rows)", "mIoU (%)",
     "mIoU of distance crops (Gated-SCNN Fig. 5)", "crop_miou.png"),
    ("boundary_f", "radius (px)", "boundary F-score (%)", "Boundary F-score against radius",
     "boundary_f.png"),
)


def _run_metrics(run: Path, settings: list[EvalSetting]) -> dict | None:
    """The metrics of the first of ``settings`` that ``run`` was evaluated with."""
    for setting in settings:
        path = eval_metrics_file(run, setting)
        if path is not None:
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def per_class_iou(report: TableReport) -> dict[str, dict[str, float]]:
    """Per method (row label) of ``report``: the per-class IoU (%) of its first mIoU cell that
    has runs, averaged over those runs (the baseline's are not counted)."""
    out: dict[str, dict[str, float]] = {}
    for cell in report.cells:
        row = _row_label(report, cell)
        if cell.cell.metric != "miou" or row in out:
            continue
        setting = cell_evaluation(cell.cell, report.scale)
        tables = [(_run_metrics(Path(run), [setting]) or {}).get("per_class_iou")
                  for run in cell.runs if not run.startswith("-")]
        tables = [t for t in tables if isinstance(t, dict) and t]
        if tables:
            names = list(tables[0])
            out[row] = {name: statistics.fmean(float(t.get(name, math.nan)) for t in tables)
                        for name in names}
    return out


def write_plots(reports: list[TableReport], out_dir: Path) -> list[Path]:
    """PNG plots of the reports' runs (:func:`table_runs`, nothing else): mIoU against crop
    factor (Gated-SCNN Fig. 5) and boundary F against radius (each run's first evaluation among
    its cells' settings, single scale first), each run's training loss and validation mIoU
    (percent) from its log.csv, and per table a bar chart of the per-class IoU of its methods
    (``per_class_iou_<table>.png``). Returns the files written; raises GsbenchError when
    matplotlib is not installed."""
    if not matplotlib_available():
        raise GsbenchError("matplotlib is not installed: plots skipped (pip install matplotlib)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    runs = table_runs(reports)
    labels = _run_labels(runs)
    settings = sorted(dict.fromkeys(cell_evaluation(cell.cell, report.scale)
                                    for report in reports for cell in report.cells if cell.runs),
                      key=lambda setting: setting.multi_scale)
    evaluated = [(run, m) for run in runs if (m := _run_metrics(run, settings)) is not None]
    for key, xlabel, ylabel, title, name in _CURVES:
        curves = [(run, *_curve(m, key)) for run, m in evaluated]
        curves = [c for c in curves if c[1]]
        if not curves:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        for run, xs, ys in curves:
            axes.plot(xs, ys, marker="o", label=labels[run])
        axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        _save(figure, out_dir / name)
        plt.close(figure)
        written.append(out_dir / name)
    for report in reports:
        methods = per_class_iou(report)
        if not methods:
            continue
        classes = list(next(iter(methods.values())))
        width = 0.8 / len(methods)
        figure, axes = plt.subplots(figsize=(min(16.0, max(6.0, 0.5 * len(classes))), 4))
        for i, (method, ious) in enumerate(methods.items()):
            axes.bar([k + (i - (len(methods) - 1) / 2) * width for k in range(len(classes))],
                     [ious.get(c, math.nan) for c in classes], width, label=method)
        axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        axes.set(ylabel="IoU (%)", ylim=(0, 100),
                 title=f"Per-class IoU, {report.table.id} ({report.scale} scale)")
        axes.grid(alpha=0.3, axis="y")
        axes.legend(fontsize=7)
        name = f"per_class_iou_{report.table.id}.png"
        _save(figure, out_dir / name)
        plt.close(figure)
        written.append(out_dir / name)
    for run in runs:
        log = run / "log.csv"
        if not log.is_file():
            continue
        rows = list(csv.DictReader(io.StringIO(log.read_text(encoding="utf-8"))))
        loss = [(int(r["iter"]), float(r["loss"])) for r in rows if r.get("loss") not in (None, "")]
        val = [(int(r["iter"]), 100 * float(r["val_miou"])) for r in rows
               if r.get("val_miou") not in (None, "")]
        if not loss:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(*zip(*loss), label="training loss")
        axes.set(xlabel="iteration", ylabel="training loss", title=f"Training of {labels[run]}")
        axes.grid(alpha=0.3)
        if val:
            right = axes.twinx()
            right.plot(*zip(*val), color="tab:orange", marker="o", label="val mIoU")
            right.set_ylabel("val mIoU (%)")
        name = "training_" + labels[run].replace("/", "_") + ".png"
        _save(figure, out_dir / name)
        plt.close(figure)
        written.append(out_dir / name)
    return written
