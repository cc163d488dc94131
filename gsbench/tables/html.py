"""``gsbench report --html DIR``: the report as one self-contained HTML page.

The page holds every selected table (one line per cell, as the Markdown report: row, column,
setting, paper, ours, difference, the runs or the command that fills the cell), the commands
that fill the missing cells, and the plots of :func:`gsbench.tables.render.write_plots` embedded
as base64 PNG ``data:`` URIs. The CSS is inline and nothing refers outside the file (no scripts,
fonts, stylesheets or links), so the page opens offline and can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from gsbench.io import atomic_write_text
from gsbench.tables.render import (
    _fmt, _numbers, _row_label, matplotlib_available, ours_text, source_text, summary_line,
    write_plots,
)
from gsbench.tables.report import SMOKE_NOTE, TableReport
from gsbench.tables.runs import RunIndex

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
figcaption { font-size: 12px; color: #555; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table_html(report: TableReport) -> str:
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
    out.append("</section>")
    return "\n".join(out)


def render_html(reports: list[TableReport], plots: list[tuple[str, bytes]] = (),
                plots_note: str = "", scale: str = "full") -> str:
    """The page: every report's table, then the ``(name, PNG bytes)`` plots inlined."""
    body = [f'<p class="scale">{_e(SMOKE_NOTE)}</p>'] if scale == "smoke" else []
    body += [_table_html(report) for report in reports]
    if plots or plots_note:
        body.append('<section id="plots"><h2>Plots</h2>')
        if plots_note:
            body.append(f"<p>{_e(plots_note)}</p>")
        for name, png in plots:
            data = base64.b64encode(png).decode("ascii")
            body.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_e(name)}</figcaption></figure>")
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>gsbench report: paper tables</title>", f"<style>{_CSS}</style>", "</head>",
        "<body>", "<h1>Paper tables: paper values beside gsbench's</h1>", *body, "</body>",
        "</html>", ""])


def write_html_report(reports: list[TableReport], index: RunIndex, out_dir: Path,
                      scale: str = "full") -> Path:
    """Write ``out_dir/report.html`` with the plots of ``index``'s runs; returns the path."""
    plots: list[tuple[str, bytes]] = []
    note = ""
    if matplotlib_available():
        with tempfile.TemporaryDirectory() as tmp:
            plots = [(path.stem, path.read_bytes()) for path in write_plots(index, Path(tmp))]
    else:
        note = "matplotlib is not installed: no plots (pip install matplotlib)"
    path = Path(out_dir) / HTML_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_html(reports, plots, note, scale))
    return path


__all__ = ["HTML_NAME", "render_html", "write_html_report"]
