"""Packaging guard rails: one version, shipped type information, the CLI reports the version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import salience
from salience import _version
from salience.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_written_once():
    assert salience.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", _version.__version__)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "salience._version.__version__"}


def test_package_ships_type_information():
    assert (Path(salience.__file__).parent / "py.typed").is_file()


def test_cli_prints_the_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"salience {_version.__version__}"
