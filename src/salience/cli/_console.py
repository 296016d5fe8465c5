"""Console helpers for the command line: progress bars and tables."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any


class Progress:
    """A tqdm bar when tqdm is installed and output is enabled; otherwise nothing."""

    def __init__(self, total: int, *, disable: bool = False, desc: str = "") -> None:
        self._bar = None
        if not disable:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width text table; floats with 3 decimals, NaN and missing as '-'."""
    if not rows:
        return ""
    cols = list(columns) if columns is not None else []
    if columns is None:
        for r in rows:
            cols += [k for k in r if k not in cols]

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    table = [[c for c in cols]] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [
        "  ".join(
            v.ljust(w) if i == 0 or j == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for j, row in enumerate(table)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
