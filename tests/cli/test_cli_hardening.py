"""Input validation of the command line (issue #13, item 8): every bad value, file or flag ends
as one ``salience: error: ...`` line with exit code 2, before anything large is allocated."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from salience.cli import main

# the fixtures save TorchScript archives, which torch >= 2.10 deprecates (they still load)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]

FACTORY = """
from torch import nn

def make():
    return nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))

def broken():
    raise ValueError("no such checkpoint size")
"""


@pytest.fixture
def f(tmp_path, monkeypatch):
    """A TorchScript model, a (5, 2, 32) .npy file and an importable factory module."""
    model = nn.Sequential(
        nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    torch.jit.script(model).save(str(tmp_path / "m.pt"))
    data = np.random.default_rng(0).standard_normal((5, 2, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "hardening_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(pkg))
    return types.SimpleNamespace(
        ts=str(tmp_path / "m.pt"),
        npy=str(tmp_path / "x.npy"),
        data=data,
        dir=tmp_path,
        out=str(tmp_path / "out"),
    )


def explain(f, data, *extra):
    """``salience explain`` of the tiny model on ``data``: fast (gradient, no plots) unless overridden."""
    return main(
        ["explain", f.ts, str(data), "--method", "gradient", "--plots", "0", "--out", f.out, "-q", *extra]
    )


def one_error_line(capsys, *needles: str) -> str:
    """The only stderr line, which must be the CLI's user error containing every needle."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert (
        lines[0].startswith("salience: error: ") and "Traceback" not in err and "internal error" not in err
    ), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- sampling rates
@pytest.mark.parametrize(
    "fs, shown",
    [
        (np.nan, "nan"),
        (0.0, "0.0"),
        (-3.0, "-3.0"),
        (np.inf, "inf"),
        (np.array([250.0, 500.0]), "shape (2,)"),
        (np.array("abc"), "'abc'"),
        (np.array(True), "True"),
        (np.array(1 + 2j), "(1+2j)"),
        (np.zeros(0), "shape (0,)"),
    ],
    ids=["nan", "zero", "negative", "inf", "array", "string", "bool", "complex", "empty"],
)
def test_fs_read_from_an_npz_must_be_a_positive_finite_scalar(f, capsys, fs, shown):
    np.savez(f.dir / "d.npz", x=f.data, fs=fs)
    assert explain(f, f.dir / "d.npz") == 2
    one_error_line(capsys, "'fs' array in", "positive finite sampling rate", shown, "--fs")


def test_fs_flag_overrides_a_bad_value_in_the_file(f):
    np.savez(f.dir / "d.npz", x=f.data, fs=np.nan)
    assert explain(f, f.dir / "d.npz", "--fs", "100") == 0
    with np.load(f.dir / "out" / "attributions.npz") as z:
        assert json.loads(str(z["metadata"]))["fs"] == 100.0


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "0", "-5"])
def test_fs_flag_must_be_positive_and_finite(f, capsys, value):
    assert explain(f, f.npy, "--fs", value) == 2
    one_error_line(capsys, "--fs must be a positive finite sampling rate")


@pytest.mark.parametrize(
    "rates",
    [[0.0, 0.0], [np.nan, 256.0], [np.inf, np.inf], [-128.0, -128.0]],
    ids=["zero", "nan", "inf", "negative"],
)
def test_fs_from_an_edf_header_is_checked(f, capsys, monkeypatch, rates):
    """A reader standing in for pyedflib reports a broken header's sampling rates."""

    class Reader:
        def __init__(self, path):
            pass

        def getSampleFrequencies(self):
            return np.array(rates)

        def readSignal(self, i):
            return np.zeros(64)

        def getSignalLabels(self):
            return ["a", "b"]

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "pyedflib", types.SimpleNamespace(EdfReader=Reader))
    (f.dir / "r.edf").write_bytes(b"0")
    assert explain(f, f.dir / "r.edf") == 2
    one_error_line(capsys, "sampling rate in the header of", "r.edf")


# ---------------------------------------------------------------- numeric flags
@pytest.mark.parametrize("method", ["ig", "smoothgrad", "rise"])
@pytest.mark.parametrize("steps", ["0", "-2"])
def test_steps_zero_or_negative_is_an_error_not_the_default(f, capsys, method, steps):
    assert explain(f, f.npy, "--method", method, "--steps", steps) == 2
    one_error_line(capsys, f"--steps must be >= 1. Got {steps}.")


def test_steps_for_a_method_without_steps_is_an_error(f, capsys):
    assert explain(f, f.npy, "--method", "saliency", "--steps", "16") == 2
    one_error_line(capsys, "--steps applies to ig, smoothgrad and rise, not 'saliency'")


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_seed_out_of_range(f, capsys, seed):
    assert explain(f, f.npy, "--seed", seed) == 2
    one_error_line(capsys, "--seed must be in the range [0, 4294967295]")


def test_demo_seed_checked_before_running(capsys, tmp_path):
    assert main(["demo", "--seed", "-1", "--quick", "--out", str(tmp_path), "-q"]) == 2
    one_error_line(capsys, "--seed must be in the range")


def test_target_beyond_int64(f, capsys):
    assert explain(f, f.npy, "--target", str(10**30)) == 2
    one_error_line(capsys, "--target class", "out of range")


# ---------------------------------------------------------------- devices and shapes
@pytest.mark.parametrize("command", ["explain", "layers"])
def test_meta_device_is_refused(f, capsys, command):
    if command == "explain":
        rc = explain(f, f.npy, "--device", "meta")
    else:
        rc = main(["layers", "hardening_models:make", "--shape", "2,32", "--device", "meta"])
    assert rc == 2
    one_error_line(capsys, "device 'meta' holds shapes but no data")


def test_layers_names_an_unknown_device(f, capsys):
    assert main(["layers", "hardening_models:make", "--shape", "2,32", "--device", "nodevice"]) == 2
    one_error_line(capsys, "device 'nodevice' is not usable here")


@pytest.mark.parametrize(
    "shape, needle",
    [
        ("100000000000,4096", "makes an input of 1.5 PiB"),  # refused before torch.zeros sees it
        ("99999999999999999999999,2", "over the"),  # beyond int64
        ("2,1000", "over the 1.0 KiB limit"),  # 8000 bytes with --max-data 1k
        ("1e11,64", "comma-separated ints"),
    ],
)
def test_layers_huge_shape_is_a_user_error(f, capsys, shape, needle):
    extra = ["--max-data", "1k"] if shape == "2,1000" else []
    assert main(["layers", "hardening_models:make", "--shape", shape, *extra]) == 2
    one_error_line(capsys, needle)


def test_out_of_memory_is_a_user_error(f, capsys, monkeypatch):
    cli_main = importlib.import_module("salience.cli.main")

    for exc in (
        MemoryError("Unable to allocate 728. TiB for an array with shape (100000000000000,)"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
            "tried to allocate 25600000000000 bytes."
        ),
    ):

        def boom(args, exc=exc):
            raise exc

        monkeypatch.setattr(cli_main, "_explain", boom)
        assert explain(f, f.npy) == 2
        one_error_line(capsys, "not enough memory:", "--batch-size")


def test_factory_that_raises_is_a_user_error(f, capsys):
    assert explain_model(f, "hardening_models:broken") == 2
    one_error_line(capsys, "hardening_models:broken() raised ValueError: no such checkpoint size")


def explain_model(f, model, *extra):
    return main(
        ["explain", model, f.npy, "--method", "gradient", "--plots", "0", "--out", f.out, "-q", *extra]
    )


# ---------------------------------------------------------------- data size limits
def test_npz_declared_size_is_checked_before_decompression(f, capsys, monkeypatch):
    """A compressed member whose uncompressed size is over the limit is never opened."""
    np.savez_compressed(f.dir / "bomb.npz", x=np.zeros((64, 2, 8192), np.float32))  # 4 MiB -> a few KiB
    assert (f.dir / "bomb.npz").stat().st_size < 64 * 1024
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    assert explain(f, f.dir / "bomb.npz", "--max-data", "1M") == 2
    one_error_line(
        capsys, "bomb.npz", "['x'] take 4.0 MiB once decompressed", "over the 1.0 MiB limit", "--max-data"
    )
    assert opened == []


def test_npz_declared_size_checked_against_the_default_limit(f, capsys, monkeypatch):
    cli_main = importlib.import_module("salience.cli.main")

    monkeypatch.setattr(cli_main, "default_data_limit", lambda: 2**20)
    np.savez_compressed(f.dir / "bomb.npz", x=np.zeros((64, 2, 8192), np.float32))
    assert explain(f, f.dir / "bomb.npz") == 2
    one_error_line(capsys, "over the 1.0 MiB limit")
    assert explain(f, f.dir / "bomb.npz", "--max-data", "8M", "--plots", "0") == 0  # raised explicitly


def test_npz_limit_counts_the_extra_arrays_read(f, capsys):
    np.savez(f.dir / "d.npz", x=f.data, y=np.zeros(100_000), fs=np.array(32.0))
    assert explain(f, f.dir / "d.npz", "--max-data", "64k") == 2
    one_error_line(capsys, "['x', 'fs', 'y']")


def _forged_npy(shape, n_data_bytes: int) -> bytes:
    """An .npy stream whose header declares float32 ``shape`` but which holds ``n_data_bytes`` of data."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return header.getvalue() + b"\0" * n_data_bytes


def test_npy_header_over_the_limit_is_refused_before_allocation(f, capsys):
    """4 TB declared in a 100-byte file (np.load would try to allocate it)."""
    (f.dir / "huge.npy").write_bytes(_forged_npy((10**6, 10**6), 16))
    assert explain(f, f.dir / "huge.npy") == 2
    one_error_line(
        capsys, "huge.npy declares an array of shape (1000000, 1000000) float32 (3.6 TiB)", "limit"
    )


def test_npy_header_larger_than_the_file_is_refused(f, capsys):
    (f.dir / "short.npy").write_bytes(_forged_npy((1000, 2, 32), 100))
    assert explain(f, f.dir / "short.npy") == 2
    one_error_line(
        capsys,
        "short.npy declares an array of shape (1000, 2, 32) float32 (256000 bytes) but holds "
        "100 bytes of data: the file is truncated or corrupt.",
    )


@pytest.mark.parametrize("shape", [(10**6, 10**6), (1000, 2, 32)], ids=["huge", "short"])
def test_npz_member_header_is_checked_against_the_member(f, capsys, shape):
    with zipfile.ZipFile(f.dir / "forged.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", _forged_npy(shape, 64))
    assert explain(f, f.dir / "forged.npz") == 2
    one_error_line(capsys, "forged.npz (array 'x') declares an array of shape")


@pytest.mark.parametrize("kind", ["empty.npy", "zip.npy", "npy.npz", "truncated.npz", "text.npz"])
def test_data_files_of_the_wrong_kind(f, capsys, kind):
    np.savez(f.dir / "ok.npz", x=f.data)
    content = {
        "empty.npy": b"",
        "zip.npy": (f.dir / "ok.npz").read_bytes(),
        "npy.npz": (f.dir / "x.npy").read_bytes(),
        "truncated.npz": (f.dir / "ok.npz").read_bytes()[:100],
        "text.npz": None,
    }[kind]
    path = f.dir / kind
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.npy", "not an array")
    else:
        path.write_bytes(content)
    assert explain(f, path) == 2
    one_error_line(capsys, f"cannot read {path}")


def test_layers_data_respects_the_limit(f, capsys):
    assert main(["layers", "hardening_models:make", "--data", f.npy, "--max-data", "100"]) == 2
    one_error_line(capsys, "x.npy declares an array of shape (5, 2, 32)", "over the 100 bytes limit")


def test_parse_size():
    from salience.cli._io import CLIError, parse_size

    assert (
        parse_size("512M") == 512 * 2**20
        and parse_size("8G") == 8 * 2**30
        and parse_size("2GiB") == 2 * 2**30
    )
    assert parse_size("1e9") == 10**9 and parse_size("1.5k") == 1536 and parse_size(" 3 tb ") == 3 * 2**40
    for bad in ("0", "-1", "abc", "1e400", "", "5X", "0.5"):
        with pytest.raises(CLIError, match="--max-data takes a size"):
            parse_size(bad)


def test_default_limit_is_a_quarter_of_the_memory(monkeypatch):
    import os

    from salience.cli._io import FALLBACK_DATA_LIMIT, default_data_limit

    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PHYS_PAGES": 4 * 2**20, "SC_PAGE_SIZE": 4096}[name])
    assert default_data_limit() == 4 * 2**30  # 16 GiB of memory

    def missing(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", missing)
    assert default_data_limit() == FALLBACK_DATA_LIMIT == 4 * 2**30


# ---------------------------------------------------------------- torch's own output
def test_refused_model_files_print_no_torch_log(f, capsys):
    """torch.export.load logs a failed read's traceback as a warning; the cause is on our one line."""
    with zipfile.ZipFile(f.dir / "fake.pt2", "w") as zf:
        zf.writestr("archive/models/model.json", "{}")
    (f.dir / "npy.pt2").write_bytes((f.dir / "x.npy").read_bytes())
    seen = []

    class Spy(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    spy = Spy()
    logging.getLogger("torch.export").addHandler(spy)
    try:
        assert explain_model(f, str(f.dir / "fake.pt2")) == 2
        one_error_line(capsys, "cannot load torch.export archive", 'hasRecord("version")')
        assert explain_model(f, str(f.dir / "npy.pt2")) == 2
        one_error_line(capsys, "npy.pt2 is not a torch.export archive (not a zip file)")
    finally:
        logging.getLogger("torch.export").removeHandler(spy)
    assert seen == []
    assert spy not in logging.getLogger("torch.export").handlers  # the loggers are restored
    assert logging.getLogger("torch").handlers and not logging.getLogger("torch").propagate


def test_whole_model_given_as_weights_is_refused_without_torch_warnings(f, capsys):
    with warnings.catch_warnings(record=True) as record:  # not --quiet: any warning would show
        warnings.simplefilter("always")
        rc = main(
            [
                "explain",
                "hardening_models:make",
                f.npy,
                "--weights",
                f.ts,
                "--method",
                "gradient",
                "--plots",
                "0",
                "--out",
                f.out,
            ]
        )
    assert rc == 2
    one_error_line(capsys, "m.pt is a TorchScript archive (a whole model), not a state dict")
    assert [str(w.message) for w in record] == []


@pytest.mark.parametrize("quiet", [False, True])
def test_torch_log_of_a_successful_load_is_shown_unless_quiet(f, monkeypatch, quiet):
    io_module = importlib.import_module("salience.cli._model_io")
    model = nn.Linear(2, 3)

    def load_logging(spec, device):
        logging.getLogger("torch.export").warning("a note from torch while loading")
        return model

    monkeypatch.setattr(io_module, "_load_exported", load_logging)
    seen = []

    class Spy(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    spy = Spy()
    logging.getLogger("torch.export").addHandler(spy)
    try:
        assert io_module.load_model(_pt2(f), quiet=quiet) is model
    finally:
        logging.getLogger("torch.export").removeHandler(spy)
    assert seen == ([] if quiet else ["a note from torch while loading"])


def _pt2(f) -> str:
    """A zip file named .pt2 (its content is not read: the loader is replaced)."""
    with zipfile.ZipFile(f.dir / "any.pt2", "w") as zf:
        zf.writestr("archive/models/model.json", "{}")
    return str(f.dir / "any.pt2")
