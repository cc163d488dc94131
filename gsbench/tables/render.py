"""Render table reports (:class:`gsbench.tables.TableReport`) as rich tables, Markdown, CSV and
LaTeX, and plot runs (mIoU against crop factor, boundary F against radius, training curves).

Every format lists one line per cell - the paper's row and column, the evaluation setting with
its test protocol (the terminal view leaves it out; CSV spells out every protocol parameter and
where the paper or official code states it), the paper's value, ours (mean +- std over runs),
the difference and the runs it comes from - so that tables of any shape (per-class tables
included) read the same way; missing cells point to the numbered commands listed under each
table. Values keep full precision in CSV and two decimals elsewhere
(RF and SR three, as the papers print them).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable

from rich.table import Table as RichTable

from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_bytes, atomic_write_text
from gsbench.tables.report import CellReport, TableReport
from gsbench.tables.runs import RunIndex, eval_metrics_file

FORMATS = {"md": "report.md", "csv": "report.csv", "latex": "report.tex"}

CSV_COLUMNS = (
    "table", "row_id", "row", "column", "metric", "dataset", "split", "scales", "flip",
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
    if cell.state == "reproduced":
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


def summary_line(report: TableReport) -> str:
    """``12 cells: 3 reproduced, 9 missing-run``."""
    counts: dict[str, int] = {}
    for cell in report.cells:
        counts[cell.state] = counts.get(cell.state, 0) + 1
    return f"{len(report.cells)} cells: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Iterable[TableReport]) -> str:
    out = ["# Paper tables: paper values beside gsbench's", ""]
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
                c.table_id, c.row_id, _row_label(report, cell), c.column_label, c.metric, c.dataset or "",
                c.split, c.scales, c.flip, c.protocol_text, c.protocol_source or "",
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


def render_latex(reports: Iterable[TableReport]) -> str:
    """One ``table`` environment (booktabs) per paper table; missing cells say how to fill them
    in a footnote-sized last column."""
    out = ["% gsbench report: paper values beside gsbench's (needs \\usepackage{booktabs})", ""]
    for report in reports:
        numbers = _numbers(report)
        out += [r"\begin{table}[t]", r"\centering", r"\scriptsize",
                r"\begin{tabular}{lllrrrl}", r"\toprule",
                r"Row & Column & Setting & Paper & Ours & $\Delta$ & Run / how to fill \\",
                r"\midrule"]
        for cell in report.cells:
            c = cell.cell
            out.append(" & ".join(latex_escape(x) for x in (
                _row_label(report, cell), c.column_label, c.setting,
                _fmt(c.paper_value, c.metric), ours_text(cell),
                _fmt(cell.delta, c.metric, signed=True), source_text(cell, numbers)[:80],
            )) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}",
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


def _run_label(index: RunIndex, run_dir: Path) -> str:
    try:
        return str(run_dir.relative_to(index.runs_dir))
    except ValueError:
        return str(run_dir)


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _curve(metrics: dict, key: str) -> tuple[list[int], list[float]]:
    points = sorted((int(k), v) for k, v in (metrics.get(key) or {}).items()
                    if isinstance(v, (int, float)) and not math.isnan(v))
    return [p for p, _ in points], [v for _, v in points]


def write_plots(index: RunIndex, out_dir: Path, split: str = "val") -> list[Path]:
    """PNG plots of the runs under ``index``: mIoU against crop factor (Gated-SCNN Fig. 5),
    boundary F against radius (single-scale ``split`` evaluations), and each run's training loss
    (and validation mIoU) from its log.csv. Returns the files written; raises GsbenchError when
    matplotlib is not installed."""
    if not matplotlib_available():
        raise GsbenchError("matplotlib is not installed: plots skipped (pip install matplotlib)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    runs = sorted(index.all_runs(), key=lambda r: str(r.path))
    evaluated = []
    for run in runs:
        path = eval_metrics_file(run.path, EvalSetting(split))
        if path is not None:
            import json

            evaluated.append((run, json.loads(path.read_text(encoding="utf-8"))))
    for key, xlabel, ylabel, name in (
            ("crop_miou", "crop factor (px)", "mIoU (%)", "crop_miou.png"),
            ("boundary_f", "radius (px)", "boundary F (%)", "boundary_f.png")):
        curves = [(run, *_curve(m, key)) for run, m in evaluated]
        curves = [c for c in curves if c[1]]
        if not curves:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        for run, xs, ys in curves:
            axes.plot(xs, ys, marker="o", label=_run_label(index, run.path))
        axes.set(xlabel=xlabel, ylabel=ylabel, title=f"{name[:-4]} against {xlabel} ({split})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        _save(figure, out_dir / name)
        plt.close(figure)
        written.append(out_dir / name)
    for run in runs:
        log = run.path / "log.csv"
        if not log.is_file():
            continue
        rows = list(csv.DictReader(io.StringIO(log.read_text(encoding="utf-8"))))
        loss = [(int(r["iter"]), float(r["loss"])) for r in rows if r.get("loss") not in (None, "")]
        val = [(int(r["iter"]), float(r["val_miou"])) for r in rows if r.get("val_miou") not in (None, "")]
        if not loss:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(*zip(*loss), label="training loss")
        axes.set(xlabel="iteration", ylabel="loss", title=_run_label(index, run.path))
        axes.grid(alpha=0.3)
        if val:
            right = axes.twinx()
            right.plot(*zip(*val), color="tab:orange", marker="o", label="val mIoU")
            right.set_ylabel("val mIoU")
        name = "training_" + _run_label(index, run.path).replace("/", "_") + ".png"
        _save(figure, out_dir / name)
        plt.close(figure)
        written.append(out_dir / name)
    return written
