"""`gsbench report --html DIR`: one self-contained page (tables, plots, per-class chart, gallery
of prediction panels), checked as text and in headless Chromium.

The browser test needs Debian's chromium (`apt-get install -y chromium`); it is skipped with that
reason where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gsbench.cli import app
from gsbench.recipes import load_recipe
from gsbench.io import write_png
from gsbench.tables import RunIndex, build_report, select_tables
from gsbench.tables.html import GALLERY_PANELS, render_html, write_html_report
from gsbench.tables.render import matplotlib_available
from gsbench.visualize import PANELS_DIR, fallback_palette, prediction_panel

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _panel(seed: int):
    rng = np.random.default_rng(seed)
    gt = np.zeros((64, 128), np.uint8)
    gt[20:40, 30:90] = 1
    pred = gt.copy()
    pred[24:44, 30:90] = 1
    image = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    return prediction_panel(image, pred, gt, fallback_palette(19), radius=3)


def _runs(root: Path) -> Path:
    """One finished, evaluated run of gff101 initialised from a baseline run (as gff.table1's
    GFF row) with a training log and prediction panels (a filled cell, plots, a per-class chart
    and a gallery), and a run of no table cell."""
    run = root / "gff101"
    (run / "eval" / "val_ss").mkdir(parents=True)
    recipe = load_recipe("gff101", [f"train.init_from={root / 'gff101_baseline'}"])
    (run / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    metrics = {"miou": 77.5, "boundary_f": {"3": 60.0, "5": 66.0, "9": 71.0, "12": 73.0},
               "crop_miou": {"0": 77.5, "100": 70.0, "200": 64.0},
               "per_class_iou": {"road": 97.0, "sidewalk": 80.0, "building": 90.0}}
    (run / "eval" / "val_ss" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    # gff.table1's cells read GFF's sliding-window protocol
    (run / "eval" / "val_ss_slide").mkdir()
    (run / "eval" / "val_ss_slide" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (run / "log.csv").write_text("iter,loss,val_miou\n10,3.0,\n20,2.0,0.4\n", encoding="utf-8")
    for number in range(GALLERY_PANELS + 1):  # one more than the gallery shows
        write_png(run / "eval" / "val_ss_slide" / PANELS_DIR / f"img{number}.png", _panel(number))
    other = root / "psanet101-smoke"  # in runs/, but in none of the tables
    other.mkdir()
    (other / "recipe.yaml").write_text(load_recipe("psanet101-smoke").to_yaml(), encoding="utf-8")
    (other / "log.csv").write_text("iter,loss,val_miou\n10,3.0,\n", encoding="utf-8")
    return root


@pytest.fixture()
def page(tmp_path):
    runs = _runs(tmp_path / "runs")
    reports = [build_report(t, RunIndex(runs)) for t in select_tables(["gff.table1", "gff.table5"])]
    path = write_html_report(reports, tmp_path / "html")
    return path, reports


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_page_is_self_contained_with_every_table_and_cell(page):
    path, reports = page
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    # nothing to fetch: no URL scheme but inline data, no script, stylesheet or font links
    assert not re.search(r"(https?|ftp|file)://", text)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", text)
    assert not re.search(r"\b(src|href)=\"(?!data:image/png;base64,)", text)
    for report in reports:
        assert f'data-table="{report.table.id}"' in text
        for cell in report.cells:
            assert f'data-cell="{cell.cell.row_id}.{cell.cell.column}"' in text
    assert "77.50" in text  # the evaluated run fills gff.table1's GFF cell
    assert html.escape("gsbench train --recipe gff101_fpn", quote=True) in text
    assert "Scale: full" in text
    images = _images(text)
    assert all(img.startswith(PNG_MAGIC) for img in images)
    # the gallery: GALLERY_PANELS panels of the one run, under its method, in gff.table1 only
    assert text.count('class="gallery"') == 1 and 'data-table="gff.table1"><h3>' in text
    panels = [base64.b64decode(b) for b in re.findall(
        r'<figure class="panel"><img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]
    assert panels == [_png_of(i) for i in range(GALLERY_PANELS)]  # the files, in name order
    assert text.count('<figure class="panel">') == GALLERY_PANELS
    assert f"{path.parent.parent / 'runs' / 'gff101'}: val img0" in text and "img4" not in text
    assert "psanet101-smoke" not in text  # a run of no cell: in no plot, no gallery
    if matplotlib_available():
        # crop mIoU, boundary F, the gff101 training curve and gff.table1's per-class chart
        assert len(images) == 4 + GALLERY_PANELS
        assert "per-class IoU of the methods of gff.table1" in text


def _png_of(number: int) -> bytes:
    from gsbench.io import encode_png

    return encode_png(_panel(number))


def test_markup_is_escaped():
    report = build_report(select_tables(["gff.table1"])[0], RunIndex(Path("no-such-runs")), data="<d&>")
    text = render_html([report], [("a<b", PNG_MAGIC)], plots_note="x & y",
                       galleries={"gff.table1": [("m<", [("r&", [("c>", PNG_MAGIC)])])]})
    assert "<d&>" not in text and "&lt;d&amp;&gt;" in text
    assert 'alt="a&lt;b"' in text and "x &amp; y" in text
    assert "m&lt;" in text and 'alt="r&amp;: c&gt;"' in text


def test_smoke_scale_page_says_so():
    table = select_tables(["gff.table2"])[0]
    report = build_report(table, RunIndex(Path("no-such-runs")), scale="smoke")
    assert "Smoke scale" in render_html([report])
    assert "Smoke scale" not in render_html([build_report(table, RunIndex(Path("no-such-runs")))])


def test_run_without_panels_says_how_to_make_them(tmp_path):
    runs = _runs(tmp_path / "runs")
    shutil.rmtree(runs / "gff101" / "eval" / "val_ss_slide" / PANELS_DIR)
    reports = [build_report(select_tables(["gff.table1"])[0], RunIndex(runs))]
    text = write_html_report(reports, tmp_path / "html").read_text(encoding="utf-8")
    assert "no prediction panels" in text and f"--show {GALLERY_PANELS}" in text


def test_cli_report_html(tmp_path):
    runs = _runs(tmp_path / "runs")
    result = CliRunner().invoke(app, ["report", "gff.table1", "--runs", str(runs), "--html",
                                      str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.skipif(not CHROMIUM.is_file(),
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
def test_page_renders_in_headless_chromium(page, tmp_path):
    path, reports = page
    # a copy with a probe that writes what the browser decoded into the DOM before it is dumped
    probe = ("<script>window.addEventListener('load', () => {"
             "const out = document.createElement('pre'); out.id = 'probe';"
             "out.textContent = JSON.stringify({"
             "images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),"
             "panels: [...document.querySelectorAll('figure.panel img')].map(i => "
             "[i.naturalWidth, i.naturalHeight]),"
             "tables: [...document.querySelectorAll('table.paper-table')].map(t => "
             "[t.dataset.table, t.tBodies[0].rows.length]),"
             "resources: performance.getEntriesByType('resource').map(r => r.name)});"
             "document.body.appendChild(out);});</script>")
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text(encoding="utf-8").replace("</body>", probe + "</body>"),
                      encoding="utf-8")
    profile = tmp_path / "profile"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    dom = subprocess.run(base + ["--dump-dom", probed.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    probe_data = json.loads(html.unescape(found.group(1)))
    assert probe_data["tables"] == [[r.table.id, len(r.cells)] for r in reports]
    assert probe_data["resources"] == []  # no request for anything outside the page
    expected_images = (4 if matplotlib_available() else 0) + GALLERY_PANELS
    assert len(probe_data["images"]) == expected_images
    assert all(complete and width > 100 and height > 100
               for complete, width, height in probe_data["images"])
    # the gallery's panels decode at their own size
    height, width = _panel(0).shape[:2]
    assert probe_data["panels"] == [[width, height]] * GALLERY_PANELS
    shot = tmp_path / "page.png"
    subprocess.run(base + ["--window-size=1400,1800", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    if os.environ.get("GSBENCH_KEEP_SCREENSHOT"):  # a file path: keep the screenshot to look at
        shutil.copy(shot, os.environ["GSBENCH_KEEP_SCREENSHOT"])
