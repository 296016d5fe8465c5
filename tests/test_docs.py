"""The README's Python blocks and the docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import salience
import salience as sl

ROOT = Path(__file__).resolve().parents[1]


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("i", range(len(_readme_blocks())))
def test_readme_python_blocks_run(i, capsys):
    code = _readme_blocks()[i]
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md block {i}", "exec"), namespace)
    if "print(" in code:  # the examples show their results
        assert capsys.readouterr().out.strip()
    assert any(isinstance(v, sl.Attribution) for v in namespace.values()), "the block explains something"


def _modules() -> list[str]:
    names = ["salience"]
    for info in pkgutil.walk_packages(salience.__path__, "salience."):
        if ".cli" in info.name:  # the CLI modules are exercised through the entry point
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:  # an optional extra that is not installed
        pytest.skip(f"{name}: {err}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
