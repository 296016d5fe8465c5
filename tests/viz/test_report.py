"""The HTML report: self-contained, escaped, and rendered by headless Chromium with every figure
decoded."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from salience import viz  # noqa: E402

EVIL = '<script>alert("x")</script> & "quotes"'


def small_report(n_fig: int = 3) -> viz.Report:
    r = viz.Report(f"report {EVIL}")
    r.section(f"section {EVIL}", f"text {EVIL}")
    r.table(
        [{"method": EVIL, "AUC": 0.123456}, {"method": "IG", "AUC": float("nan"), "extra": 1}], caption=EVIL
    )
    rng = np.random.default_rng(0)
    figs = [(f"signal {EVIL}", viz.plot_signal(rng.standard_normal((2, 40)), rng.standard_normal((2, 40))))]
    r.sample(
        f"sample {EVIL}",
        prediction=EVIL,
        target=EVIL,
        metrics={EVIL: 0.5, "pointing game": 1.0},
        figures=figs,
    )
    for i in range(n_fig - 1):
        r.figure(viz.plot_image(rng.standard_normal((3, 8, 8)), rng.standard_normal((3, 8, 8))), f"image {i}")
    return r


def test_report_is_self_contained_and_escaped(tmp_path):
    r = small_report(3)
    path = r.save(tmp_path / "sub" / "report.html")
    text = Path(path).read_text(encoding="utf-8")
    assert "<script" not in text  # every user string escaped (the report itself has no scripts)
    assert html.escape(EVIL) in text
    assert text.count('<figure class="salience-figure">') == 3 == r.n_figures
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_embeds_gif_bytes_and_files(tmp_path):
    from PIL import Image

    gif = tmp_path / "a.gif"
    Image.new("RGB", (4, 4)).save(gif)
    r = viz.Report("x")
    r.figure(str(gif), "a gif")
    r.figure(Path(gif).read_bytes())
    text = r.to_html()
    assert text.count("data:image/gif;base64,") == 2
    with pytest.raises(ValueError, match="Figure"):
        r.figure(42)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src || 'error')), true);
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('figure.salience-figure img')];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const out = document.createElement('pre');
  out.id = 'salience-check';
  out.textContent = JSON.stringify({figures: imgs.length, decoded: ok, errors: window.__errors,
                                    tables: document.querySelectorAll('table').length,
                                    alerts: document.querySelectorAll('script').length - 1});
  document.body.appendChild(out);
});
</script>"""


def render(path, tmp_path) -> dict:
    import json

    exe = chromium()
    if exe is None:
        pytest.skip(
            "no headless browser: install Debian's 'chromium' package (apt-get install -y chromium); .ci/run does"
        )
    checked = tmp_path / "checked.html"
    checked.write_text(
        Path(path).read_text(encoding="utf-8").replace("<head>", "<head>" + CHECK, 1), encoding="utf-8"
    )
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        checked.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="salience-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the browser did not render the report (rc={proc.returncode}): {proc.stderr[-800:]}"
    return json.loads(html.unescape(m.group(1)))


def test_report_renders_in_headless_chromium(tmp_path):
    path = small_report(3).save(tmp_path / "report.html")
    result = render(path, tmp_path)
    assert result == {"figures": 3, "decoded": 3, "errors": [], "tables": 1, "alerts": 0}


def test_browser_check_detects_a_broken_figure(tmp_path):
    """The check can fail: a corrupted embedded PNG is counted but not decoded."""
    path = small_report(2).save(tmp_path / "report.html")
    text = Path(path).read_text(encoding="utf-8")
    text = text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAAA", 1)
    Path(path).write_text(text, encoding="utf-8")
    result = render(path, tmp_path)
    assert result["figures"] == 2 and result["decoded"] == 1


def test_numbers_distinguish_near_one_from_one():
    from salience.viz.report import _fmt

    assert _fmt(0.99997) == "0.99997" and _fmt(1.0) == "1.0000" and _fmt(0.3551234) == "0.3551"
    assert _fmt(np.float32(0.5)) == "0.5000" and _fmt(3) == "3" and _fmt(2e-5) == "2e-05"
    r = viz.Report("x")
    r.sample("s", metrics={"p(target)": 0.99997, "pointing game": 1.0})
    text = r.to_html()
    assert "0.99997" in text and "1.0000" in text


def test_header_does_not_claim_one_scale_and_figures_open_full_size():
    text = small_report(1).to_html()
    assert "symmetric colour scale" not in text and "stated in the figure" in text
    assert 'tabindex="0"' in text and "img:focus{max-width:none" in text  # click: full size, no script


# ---------------------------------------------------------------- text legible at the displayed size
MEASURE = """<script>
window.addEventListener('load', () => {
  const rows = [...document.querySelectorAll('figure.salience-figure img')].map(i => ({
    natural: i.naturalWidth, shown: i.clientWidth,
    text_px: i.dataset.textPx ? parseFloat(i.dataset.textPx) : null,
    scrolls: i.parentElement.scrollWidth > i.parentElement.clientWidth + 1,
    page_scrolls: document.documentElement.scrollWidth > document.documentElement.clientWidth + 1}));
  const out = document.createElement('pre');
  out.id = 'salience-measure';
  out.textContent = JSON.stringify(rows);
  document.body.appendChild(out);
});
</script>"""


def measure(path, tmp_path, width: int = 1280) -> list[dict]:
    """Each figure's natural and displayed width (CSS px) in a ``width``-px wide window, with the
    smallest text height the report recorded for it."""
    import json

    exe = chromium()
    if exe is None:
        pytest.skip("no headless browser: install Debian's 'chromium' package")
    page = tmp_path / f"measured{width}.html"
    page.write_text(Path(path).read_text(encoding="utf-8").replace("<head>", "<head>" + MEASURE, 1))
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},900",
        f"--user-data-dir={tmp_path / f'profile{width}'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="salience-measure">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the browser did not render the report (rc={proc.returncode}): {proc.stderr[-800:]}"
    return json.loads(html.unescape(m.group(1)))


def shown_text_px(row: dict) -> float:
    """The smallest text's height as displayed: its height at natural size x displayed / natural."""
    return row["text_px"] * row["shown"] / row["natural"]


@pytest.fixture(scope="module")
def legible(tmp_path_factory) -> Path:
    """A report with a grid far wider than the page (6 methods x 2 signals, 7-pt tick labels),
    a plot of ordinary width, a PNG rendered elsewhere (as the CLI and the demo do), and a GIF."""
    from PIL import Image

    from salience.viz import _mpl

    tmp_path = tmp_path_factory.mktemp("legible")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 100))
    maps = {name: rng.standard_normal((2, 1, 100)) for name in ("G", "IxG", "IG", "SG", "CAM", "RISE")}
    r = viz.Report("legible")
    r.figure(viz.plot_grid(x, maps, fs=50.0), "a 6-method grid")
    r.figure(viz.plot_signal(x[0], maps["IG"][0], fs=50.0), "one signal")
    overlay = viz.plot_image(rng.random((3, 8, 8)), rng.random((3, 8, 8)))
    r.sample("s", figures=[("bytes", _mpl.to_png(overlay.figure))])
    gif = tmp_path / "a.gif"
    Image.new("RGB", (1600, 20)).save(gif)
    r.figure(str(gif), "a wide GIF without text")
    return Path(r.save(tmp_path / "legible.html"))


@pytest.mark.parametrize("width", [1280, 480])
def test_figure_text_stays_legible_at_the_displayed_size(legible, tmp_path, width):
    rows = measure(legible, tmp_path, width)
    assert len(rows) == 4 and all(r["natural"] > 0 and r["shown"] > 0 for r in rows)
    grid, signal, png, gif = rows
    for row in (grid, signal, png):  # every figure with text knows its smallest text ...
        assert row["text_px"] is not None
        assert shown_text_px(row) >= 9 - 0.05, row  # ... and shows it at 9 px or more
    assert grid["natural"] > 1800 and grid["scrolls"]  # too wide: scrolled, not shrunk
    assert gif["text_px"] is None and gif["shown"] < gif["natural"]  # no text: fitted to the page
    assert not grid["page_scrolls"]  # the page itself keeps its width; the figure scrolls
    if width == 1280:  # ordinary plots fit a laptop-wide page at natural size
        assert signal["shown"] == signal["natural"] and not signal["scrolls"]


def test_legibility_check_can_fail(legible, tmp_path):
    """Without the report's min-width the wide grid is shrunk to the page and its text to ~5 px."""
    path = tmp_path / "unguarded.html"
    text = re.sub(r' style="min-width:\d+px"', "", legible.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    grid = measure(path, tmp_path)[0]
    assert shown_text_px(grid) < 6 and not grid["scrolls"]


def test_png_records_its_smallest_text():
    from salience.viz import _mpl

    ax = viz.plot_signal(np.zeros((1, 20)), np.ones((1, 20)))
    ax.set_title("tiny", fontsize=6)
    data = _mpl.to_png(ax.figure, 150)
    assert _mpl.png_text_px(data) == pytest.approx(6 * 150 / 72, abs=1e-3)
    chunk = data.index(b"salience:text-px") - 8  # its length and type come first
    assert _mpl.png_text_px(data[:chunk] + data[chunk + 12 + 23 :]) is None  # a PNG without it
    assert _mpl.png_text_px(data.replace(b"\x0012.500", b"\x00nan.00")) is None
    # hidden text and the ticks of an Axes drawn with its axis off do not count
    ax.set_title("")
    ax.tick_params(labelsize=4)
    ax.axis("off")
    ax.text(0.5, 0.5, "hidden", fontsize=3, visible=False)
    _mpl.to_png(ax.figure)
    assert _mpl.smallest_text_pt(ax.figure) == 10.0  # the colour bar's label


def test_report_keeps_min_width_only_for_figures_with_known_text(tmp_path):
    from PIL import Image

    r = viz.Report("x", min_text_px=12)
    r.figure(viz.plot_signal(np.zeros((1, 20)), np.ones((1, 20))))
    Image.new("RGB", (40, 4)).save(tmp_path / "plain.png")
    r.figure(str(tmp_path / "plain.png"))
    text = r.to_html()
    widths = [int(w) for w in re.findall(r'style="min-width:(\d+)px"', text)]
    assert len(widths) == 1 and 'data-text-px="' in text and "text is 12 px tall" in text
    natural = int(re.findall(r'data-text-px="([\d.]+)"', text)[0].split(".")[0])
    assert natural == 13  # 10-pt text at 100 dpi: 13.9 px
    for bad in (-1, float("nan"), "9", True):
        with pytest.raises(ValueError, match="min_text_px"):
            viz.Report("x", min_text_px=bad)
