"""``salience explain`` keeps names: a CSV header, .npz name arrays, --channel-names and
--class-names reach the .npz metadata, the figures and the report; --target takes class names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from salience import viz  # noqa: E402
from salience.cli import main  # noqa: E402
from salience.cli._io import CLIError  # noqa: E402
from salience.cli._names import class_label, target_text  # noqa: E402

from .test_cli import FACTORY, tiny  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "namedmodels.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(pkg))
    model = tiny()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    data = np.random.default_rng(0).standard_normal((3, 2, 32)).astype(np.float32)
    drawn: list = []
    real = viz._mpl.to_png

    def keep(fig, dpi=100):  # the figures the command draws, to read their texts
        drawn.append(fig)
        return real(fig, dpi)

    monkeypatch.setattr(viz._mpl, "to_png", keep)
    return {
        "model": model,
        "data": data,
        "dir": tmp_path,
        "drawn": drawn,
        "head": ["namedmodels:make", "--weights", str(tmp_path / "w.pt")],
    }


def _run(setup, data_path, *extra):
    out = setup["dir"] / "out"
    rc = main(
        [
            "explain",
            setup["head"][0],
            str(data_path),
            *setup["head"][1:],
            "--method",
            "gradient",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )
    return rc, out


def _texts(figs) -> str:
    return " ".join(t.get_text() for f in figs for t in f.findobj(lambda o: hasattr(o, "get_text")))


def test_csv_header_names_the_channels(setup):
    csv = setup["dir"] / "rec.csv"
    np.savetxt(csv, setup["data"][0].T, delimiter=",", header="Cz,Pz", comments="")
    rc, out = _run(setup, csv, "--class-names", "rest,left,right", "--target", "left")
    assert rc == 0
    z = np.load(out / "attributions.npz")
    meta = json.loads(str(z["metadata"]))
    assert meta["channels"] == ["Cz", "Pz"] and meta["class_names"] == ["rest", "left", "right"]
    assert z["targets"].tolist() == [1]
    texts = _texts(setup["drawn"])
    assert "Cz" in texts and "Pz" in texts and "Gradient: left" in texts
    assert "<b>target</b>: left (1)" in (out / "report.html").read_text()


def test_npz_name_arrays_and_per_sample_class_names(setup):
    path = setup["dir"] / "named.npz"
    np.savez(
        path, x=setup["data"], channel_names=np.array(["O1", "O2"]), class_names=np.array(["a", "b", "c"])
    )
    rc, out = _run(setup, path, "--target", "c,a,2", "--plots", "3")
    assert rc == 0
    z = np.load(out / "attributions.npz")
    assert z["targets"].tolist() == [2, 0, 2]
    meta = json.loads(str(z["metadata"]))
    assert meta["channels"] == ["O1", "O2"] and meta["class_names"] == ["a", "b", "c"]
    texts = _texts(setup["drawn"])
    assert "O2" in texts and "Gradient: c" in texts and "Gradient: a" in texts


def test_options_override_the_file_and_read_files(setup):
    path = setup["dir"] / "named.npz"
    np.savez(path, x=setup["data"], channel_names=np.array(["O1", "O2"]))
    names = setup["dir"] / "classes.txt"
    names.write_text("no\nmaybe\nyes\n")
    rc, out = _run(setup, path, "--channel-names", "L,R", "--class-names", str(names), "--target", "yes")
    assert rc == 0
    meta = json.loads(str(np.load(out / "attributions.npz")["metadata"]))
    assert meta["channels"] == ["L", "R"] and meta["class_names"] == ["no", "maybe", "yes"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--channel-names", "a,b,c"], "3 channel name(s) for 2 channels"),
        (["--channel-names", "a,a"], "repeats"),
        (["--target", "left"], "or class names once they are known (--class-names"),
        (
            ["--class-names", "x,y,z", "--target", "left"],
            "unknown class name 'left'; the class names are ['x', 'y', 'z']",
        ),
    ],
)
def test_bad_names_one_line_exit_2(setup, capsys, extra, message):
    np.save(setup["dir"] / "x.npy", setup["data"])
    rc, _ = _run(setup, setup["dir"] / "x.npy", *extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_npz_names_must_be_strings(setup, capsys):
    path = setup["dir"] / "bad.npz"
    np.savez(path, x=setup["data"], channel_names=np.array([1, 2]))
    rc, _ = _run(setup, path)
    assert rc == 2 and "must hold names" in capsys.readouterr().err


def test_helpers():
    assert target_text("1,0", None) == "1,0" and target_text(None, None) is None
    assert target_text("predicted", ["a"]) == "predicted"
    assert target_text("b, 0", ["a", "b"]) == "1,0"
    with pytest.raises(CLIError):
        target_text("z", ["a"])
    assert class_label(1, ["a", "b"]) == "b (1)" and class_label(5, ["a"]) == 5 and class_label(0, None) == 0
