"""docs/viz.md and docs/domains.md are self-contained: their ```python blocks, read top to bottom,
define every name they use (the page builds its own model and data), so a reader can paste them
into an empty interpreter. tests/test_guides.py runs every block; this checks, without running
them again, that no block relies on a name the page never defines."""

from __future__ import annotations

import builtins
import symtable

import pytest

from test_guides import blocks

PAGES = ["viz.md", "domains.md"]


def free_names(code: str) -> set[str]:
    """Names the code reads as globals but never binds at module level (nor are builtins)."""
    top = symtable.symtable(code, "<page>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    bound |= {t.get_name() for t in top.get_children()}  # functions and classes defined
    used: set[str] = set()

    def visit(table: symtable.SymbolTable, module: bool) -> None:
        for s in table.get_symbols():
            if s.is_referenced() and (module or s.is_global()):
                used.add(s.get_name())
        for child in table.get_children():
            visit(child, False)

    visit(top, True)
    return used - bound - set(dir(builtins))


@pytest.mark.parametrize("page", PAGES)
def test_page_defines_every_name_it_uses(page):
    found = [code for _, code, skip in blocks(page) if skip is None]
    assert found, f"docs/{page} has no runnable block"
    assert free_names("\n".join(found)) == set(), f"docs/{page} uses names it never defines"


def test_the_check_can_fail():
    assert free_names("import torch\ny = model(x)\ndef f(a):\n    return a + w\n") == {"model", "x", "w"}
    assert free_names("class D:\n    def forward(self, x):\n        return x\nD().forward(1)\n") == set()
