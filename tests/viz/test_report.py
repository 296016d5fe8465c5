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
