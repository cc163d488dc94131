"""``gsbench report --html DIR``: the report as one self-contained HTML page.

The page states the scale of the runs (with the smoke warning at smoke scale) and holds every
selected table (one line per cell, as the Markdown report: row, column, setting, paper, ours,
difference, the runs or the command that fills the cell), the commands that fill the missing
cells, per table the per-class IoU bar chart of its methods and a gallery of prediction panels
per method and run (image, ground truth, prediction, error map, boundary matches: the panels
``gsbench eval RUN --show N`` writes beside the run's metrics), and the plots of
:func:`gsbench.tables.render.write_plots`, every image embedded as a base64 PNG ``data:`` URI.
The CSS is inline and nothing refers outside the file (no scripts, fonts, stylesheets or
links), so the page opens offline and can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from gsbench.io import atomic_write_text
from gsbench.tables.render import (
    _fmt, _numbers, _row_label, matplotlib_available, ours_text, scale_line, source_text,
    summary_line, write_plots,
)
from gsbench.tables.report import TableReport
from gsbench.tables.runs import eval_metrics_file
from gsbench.tables.smoke import cell_evaluation
from gsbench.visualize import PANELS_DIR

HTML_NAME = "report.html"

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.reproduced td.ours, tr.computed td.ours { background: #e6f4ea; }
tr.missing-run td.ours, tr.missing-eval td.ours { background: #fdecea; }
td.src { font-size: 12px; color: #555; max-width: 40em; overflow-wrap: anywhere; }
.summary { color: #555; }
p.scale { background: #fff4d6; border: 1px solid #e6c96a; padding: .5em 1em; }
ol.commands code { font-size: 12px; overflow-wrap: anywhere; }
figure { display: inline-block; margin: 0 1em 1em 0; }
figure img { max-width: 600px; border: 1px solid #ddd; }
figure.panel { width: 48%; min-width: 380px; }
figure.panel img, figure.chart img { max-width: 100%; }
figure.chart { display: block; max-width: 1200px; }
figcaption { font-size: 12px; color: #555; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; }
"""

#: A gallery: per method (row label), per run (its label and panel captions with PNG bytes).
Gallery = list[tuple[str, list[tuple[str, list[tuple[str, bytes]]]]]]
#: Panels per run in the gallery.
GALLERY_PANELS = 4


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _img(name: str, png: bytes, css: str = "") -> str:
    """A figure with the PNG inlined and ``name`` as its caption."""
    data = base64.b64encode(png).decode("ascii")
    figure = f'<figure class="{css}">' if css else "<figure>"
    return (f'{figure}<img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(name)}</figcaption></figure>")


def _table_html(report: TableReport, chart: bytes | None = None,
                gallery: Gallery = ()) -> str:
    numbers = _numbers(report)
    table = report.table
    out = [f'<section id="{_e(table.id)}">',
           f"<h2>{_e(table.id)}: {_e(table.title)}</h2>",
           f'<p class="summary">{_e(summary_line(report))}</p>']
    if report.static_method:
        out.append(f"<p>Computed: {_e(report.static_method)}.</p>")
    out += [f'<table class="paper-table" data-table="{_e(table.id)}">',
            "<thead><tr><th>row</th><th>column</th><th>setting</th><th>paper</th><th>ours</th>"
            "<th>&Delta;</th><th>run / how to fill</th></tr></thead>", "<tbody>"]
    for cell in report.cells:
        c = cell.cell
        out.append(
            f'<tr class="{_e(cell.state)}" data-cell="{_e(c.row_id)}.{_e(c.column)}">'
            f"<td>{_e(_row_label(report, cell))}</td><td>{_e(c.column_label)}</td>"
            f"<td>{_e(c.setting)}</td>"
            f'<td class="num">{_e(_fmt(c.paper_value, c.metric))}</td>'
            f'<td class="num ours">{_e(ours_text(cell))}</td>'
            f'<td class="num">{_e(_fmt(cell.delta, c.metric, signed=True))}</td>'
            f'<td class="src">{_e(source_text(cell, numbers))}</td></tr>')
    out += ["</tbody>", "</table>"]
    if numbers:
        out.append("<p>Commands that fill the missing cells:</p>")
        out.append('<ol class="commands">' + "".join(
            f"<li><code>{_e(command)}</code></li>" for command in numbers) + "</ol>")
    if chart is not None:
        out.append(_img(f"per-class IoU of the methods of {table.id}", chart, "chart"))
    if gallery:
        out.append(f'<div class="gallery" data-table="{_e(table.id)}"><h3>Predictions: image, '
                   "ground truth, prediction, errors (red: wrong, black: ignored), boundaries "
                   "at the first radius (green: matched, red: missed, blue: false)</h3>")
        for method, runs in gallery:
            out.append(f"<h3>{_e(method)}</h3>")
            for run, panels in runs:
                if not panels:
                    out.append(f"<p>{_e(run)}: no prediction panels; <code>gsbench eval "
                               f"{_e(run)} --data DATA --show {GALLERY_PANELS}</code> writes "
                               "them.</p>")
                out += [_img(f"{run}: {caption}", png, "panel") for caption, png in panels]
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def render_html(reports: list[TableReport], plots: list[tuple[str, bytes]] = (),
                plots_note: str = "", charts: dict[str, bytes] | None = None,
                galleries: dict[str, Gallery] | None = None) -> str:
    """The page: the scale note, every report's table (with its per-class chart from
    ``charts`` and its gallery from ``galleries``, by table id), then the ``(name, PNG bytes)``
    plots inlined."""
    charts, galleries = charts or {}, galleries or {}
    body = [f'<p class="scale">{_e(scale_line(reports))}</p>']
    body += [_table_html(report, charts.get(report.table.id), galleries.get(report.table.id, ()))
             for report in reports]
    if plots or plots_note:
        body.append('<section id="plots"><h2>Plots</h2>')
        if plots_note:
            body.append(f"<p>{_e(plots_note)}</p>")
        body += [_img(name, png) for name, png in plots]
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>gsbench report: paper tables</title>", f"<style>{_CSS}</style>", "</head>",
        "<body>", "<h1>Paper tables: paper values beside gsbench's</h1>", *body, "</body>",
        "</html>", ""])


def gallery(report: TableReport) -> Gallery:
    """Per method (row) of ``report``, per run of its cells (as the table names it): up to
    :data:`GALLERY_PANELS` panels from ``RUN/eval/<setting>/panels/`` of the first of the row's
    evaluations that has them."""
    rows: dict[str, dict[Path, list]] = {}
    for cell in report.cells:
        for run in (Path(run) for run in cell.runs if not run.startswith("-")):  # not baselines
            rows.setdefault(_row_label(report, cell), {}).setdefault(run, []).append(
                cell_evaluation(cell.cell, report.scale))
    out: Gallery = []
    for method, runs in rows.items():
        shown = []
        for run, settings in runs.items():
            panels: list[tuple[str, bytes]] = []
            for setting in dict.fromkeys(settings):
                metrics = eval_metrics_file(run, setting)
                folder = metrics.parent / PANELS_DIR if metrics is not None else None
                if folder is not None and folder.is_dir():
                    panels = [(f"{setting.split} {path.stem}", path.read_bytes())
                              for path in sorted(folder.glob("*.png"))[:GALLERY_PANELS]]
                    break
            shown.append((str(run), panels))
        out.append((method, shown))
    return out


def write_html_report(reports: list[TableReport], out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` with the plots, per-class charts and galleries of the
    reports' runs; returns the path."""
    plots: list[tuple[str, bytes]] = []
    charts: dict[str, bytes] = {}
    note = ""
    if matplotlib_available():
        with tempfile.TemporaryDirectory() as tmp:
            for path in write_plots(reports, Path(tmp)):
                table_id = path.stem.removeprefix("per_class_iou_")
                if table_id != path.stem:
                    charts[table_id] = path.read_bytes()
                else:
                    plots.append((path.stem, path.read_bytes()))
    else:
        note = "matplotlib is not installed: no plots (pip install matplotlib)"
    galleries = {report.table.id: gallery(report) for report in reports}
    path = Path(out_dir) / HTML_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_html(reports, plots, note, charts, galleries))
    return path


__all__ = ["GALLERY_PANELS", "HTML_NAME", "gallery", "render_html", "write_html_report"]
