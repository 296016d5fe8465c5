"""Pictures draw every name literally (no mathtext), and the report escapes every attribute and
checks its arguments (issue #13, item 10)."""

from __future__ import annotations

import html
import io
import os
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import salience as sl  # noqa: E402
from salience import viz  # noqa: E402
from salience.errors import ParameterError  # noqa: E402

# each of these makes matplotlib's mathtext raise at draw time, or changes what is shown
NASTY = ["$x_$", "$\\foo$", "$$", "a$b$c", "I_{Ca}^2 $5 50% #&~ back\\slash"]
RNG = np.random.default_rng(0)


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text()]


def _not_literal(obj, names):
    """Draw the figure (mathtext errors surface here); the names not shown as given (missing, or
    drawn through mathtext/usetex), empty when every name is."""
    fig = obj if hasattr(obj, "savefig") else obj.figure
    fig.canvas.draw()
    shown = {t.get_text(): t for t in _texts(fig)}
    problems = []
    for name in names:
        hits = [t for text, t in shown.items() if name in text]
        if not hits:
            problems.append(f"{name!r} is not drawn; texts: {list(shown)}")
        elif any(t.get_parse_math() or t.get_usetex() for t in hits):
            problems.append(f"{name!r} is drawn through mathtext or usetex")
    return problems


# ------------------------------------------------------------------------------------- plots
def test_signal_views_draw_channel_names_and_titles_literally():
    x, a = RNG.standard_normal((len(NASTY), 30)), RNG.standard_normal((len(NASTY), 30))
    assert _not_literal(viz.plot_signal(x, a, channel_names=NASTY, title=NASTY[0]), NASTY) == []
    assert (
        _not_literal(viz.plot_signal(x[:1], a[:1], channel_names=[NASTY[1]], title=NASTY[2]), NASTY[1:3])
        == []
    )
    assert _not_literal(viz.plot_signal_map(x, a, channel_names=NASTY, title=NASTY[3]), NASTY) == []


def test_image_grid_draws_method_names_and_row_titles_literally():
    images = RNG.standard_normal((2, 3, 8, 8))
    maps = {name: RNG.standard_normal((2, 3, 8, 8)) for name in NASTY}
    assert _not_literal(viz.plot_grid(images, maps, row_titles=NASTY[:2]), NASTY) == []
    assert _not_literal(viz.plot_image(images[0], maps[NASTY[0]][0], title=NASTY[4]), NASTY[4:]) == []
    signals = RNG.standard_normal((2, 1, 20))
    assert (
        _not_literal(
            viz.plot_grid(
                signals, {n: RNG.standard_normal((2, 1, 20)) for n in NASTY[:2]}, row_titles=NASTY[2:4]
            ),
            NASTY[:4],
        )
        == []
    )


def test_curves_draw_method_names_labels_and_titles_literally():
    curves = {name: RNG.random((3, 11)) for name in NASTY}
    ax = viz.plot_curves(curves, ylabel=NASTY[0], title=NASTY[1])
    assert _not_literal(ax, NASTY) == []
    assert any(t.get_text().startswith("$x_$ (AUC") for t in _texts(ax.figure))


def test_spectrum_bands_and_components_draw_names_literally():
    bands = {name: (2.0 * i, 2.0 * i + 2.0) for i, name in enumerate(NASTY)}
    freqs = np.linspace(0, 12, 25)
    a = RNG.standard_normal((len(NASTY), 25))
    assert (
        _not_literal(viz.plot_spectrum(a, freqs, bands=bands, xlabel=NASTY[0], title=NASTY[1]), NASTY) == []
    )
    assert (
        _not_literal(
            viz.plot_bands(a, freqs, bands=bands, per_channel=True, channel_names=NASTY, title=NASTY[2]),
            NASTY,
        )
        == []
    )
    assert _not_literal(viz.plot_bands(a, freqs, bands=bands, title=NASTY[3]), NASTY) == []
    assert (
        _not_literal(
            viz.plot_time_frequency(
                RNG.standard_normal((4, 5)), np.arange(5.0), np.arange(4.0), title=NASTY[4]
            ),
            NASTY[4:],
        )
        == []
    )
    fig = viz.plot_components(
        RNG.standard_normal(len(NASTY)), RNG.standard_normal((len(NASTY), 30)), names=NASTY, title=NASTY[0]
    )
    assert _not_literal(fig, NASTY) == []


def test_volume_slices_and_layout_names_are_drawn_literally():
    vol, a = RNG.standard_normal((1, 4, 6, 6)), RNG.standard_normal((1, 4, 6, 6))
    assert _not_literal(viz.plot_volume_slices(vol, a, axis_name="$z_$", n_slices=2), ["$z_$ = 0"]) == []
    # an attribution over axes with odd names (a custom domain's layout)
    attr = sl.Attribution(
        values=torch.randn(1, 3, 5),
        target=None,
        scores=torch.zeros(1),
        method="m",
        layout=sl.Layout("b $k_$ t^2"),
    )
    assert _not_literal(viz.plot_attribution(torch.randn(1, 3, 5), attr), ["$k_$", "t^2"]) == []


# ------------------------------------------------------------------------------------ report
def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 3)).save(buf, format="PNG")
    return buf.getvalue()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_mime_is_checked_and_never_written_raw():
    r = viz.Report("x")
    evil = 'image/png" onerror="alert(1)'
    with pytest.raises(
        ParameterError, match=r"'mime' parameter of Report.figure must be None or one of .*onerror"
    ):
        r.figure(_png(), mime=evil)
    with pytest.raises(
        ParameterError, match=r"'mime'.*says 'image/gif', but the content of \d+ bytes is 'image/png'"
    ):
        r.figure(_png(), mime="image/gif")
    assert r.n_figures == 0 and "onerror" not in r.to_html()


def test_every_attribute_of_the_report_is_escaped():
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2) a="'
    r = viz.Report(evil)
    r.section(evil, evil).table([{evil: evil}], caption=evil)
    r.figure(_png(), evil)
    r.sample(evil, prediction=evil, target=evil, metrics={evil: 1.0}, figures=[(evil, _png())])
    text = r.to_html()
    parser = _Tags()
    parser.feed(text)
    assert "script" not in {tag for tag, _ in parser.tags}
    allowed = {"lang", "charset", "name", "content", "class", "id", "href", "src", "alt", "tabindex"}
    assert {k for _, attrs in parser.tags for k in attrs} <= allowed
    alts = [attrs["alt"] for tag, attrs in parser.tags if tag == "img"]
    assert alts == [evil, evil]  # the caption survives as the literal alt text
    assert all(
        attrs["src"].startswith("data:image/png;base64,") for tag, attrs in parser.tags if tag == "img"
    )
    assert html.escape(evil) in text


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: viz.Report(5), r"'title' parameter of Report must be a str\. Got int 5"),
        (
            lambda r: viz.Report("x", dpi=0),
            r"'dpi' parameter of Report must be an int in the range \[1, 2400\]\. Got 0",
        ),
        (lambda r: viz.Report("x", dpi="90"), r"'dpi'.*Got '90'"),
        (lambda r: r.section(None), r"'title' parameter of Report.section must be a str\. Got NoneType"),
        (
            lambda r: r.section("s", 3),
            r"'text' parameter of Report.section must be a str or None\. Got int 3",
        ),
        (lambda r: r.text(["a"]), r"'text' parameter of Report.text must be a str\. Got list"),
        (
            lambda r: r.table({"method": "IG"}),
            r"'rows' parameter of Report.table must be a list of dicts.*Got dict",
        ),
        (lambda r: r.table("IG"), r"'rows'.*Got str"),
        (lambda r: r.table([{"a": 1}, ("a", 1)]), r"'rows'.*row 1 is a tuple"),
        (
            lambda r: r.table([{"a": 1}], caption=2),
            r"'caption' parameter of Report.table must be a str or None",
        ),
        (
            lambda r: r.figure(b"not an image at all"),
            r"'fig' parameter of Report.figure must hold an image.*19 bytes",
        ),
        (lambda r: r.figure(b""), r"'fig'.*0 bytes"),
        (
            lambda r: r.figure(np.zeros((3, 3))),
            r"'fig' parameter of Report.figure must be a matplotlib Figure.*Got ndarray",
        ),
        (lambda r: r.figure("no/such/file.png"), r"'fig'.*Reading 'no/such/file.png' failed"),
        (lambda r: r.figure(_png(), caption=3), r"'caption' parameter of Report.figure"),
        (lambda r: r.figure(_png(), mime=3), r"'mime' parameter of Report.figure.*Got 3"),
        (lambda r: r.sample(3), r"'name' parameter of Report.sample must be a str"),
        (
            lambda r: r.sample("s", metrics=[0.5]),
            r"'metrics' parameter of Report.sample must be a dict.*Got list",
        ),
        (
            lambda r: r.sample("s", figures=[_png()]),
            r"'figures' parameter of Report.sample.*entry 0 is a bytes",
        ),
        (lambda r: r.sample("s", figures=_png()), r"'figures'.*Got bytes"),
        (
            lambda r: r.sample("s", figures=[("c", b"text")]),
            r"'fig' parameter of Report.figure must hold an image",
        ),
        (lambda r: r.save(5), r"'path' parameter of Report.save must be a file path.*Got int"),
    ],
)
def test_bad_report_arguments_get_typed_errors(call, match):
    r = viz.Report("x")
    with pytest.raises(ParameterError, match=match):
        call(r)
    assert r.n_figures == 0 and '<div class="sample">' not in r.to_html()  # nothing half-written


def test_paths_that_cannot_be_written_get_typed_errors(tmp_path):
    r = viz.Report("x")
    with pytest.raises(ParameterError, match=r"'path'.*is a folder"):
        r.save(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ParameterError, match=r"'path' parameter of Report.save must be a writable file path"):
        r.save(blocker / "report.html")  # a file where a folder should be
    if os.name == "posix" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ParameterError, match=r"Permission denied"):
            r.save(locked / "report.html")
    assert r.save(tmp_path / "ok" / "report.html").endswith("report.html")


def test_report_embeds_other_image_types_with_their_own_mime():
    from PIL import Image

    r = viz.Report("x")
    for fmt, mime in (("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")):
        buf = io.BytesIO()
        Image.new("RGB", (3, 3)).save(buf, format=fmt)
        r.figure(buf.getvalue(), fmt)
        assert f'src="data:{mime};base64,' in r.to_html()
    r.figure(
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>',
        mime="image/svg+xml",
    )
    assert 'src="data:image/svg+xml;base64,' in r.to_html() and r.n_figures == 4
