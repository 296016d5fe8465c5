"""An optional tqdm progress bar for long loops (tqdm is an optional dependency, imported lazily)."""

from __future__ import annotations

from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: seconds of work before a bar appears
_DELAY_S = 1.0


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` units, or a silent stand-in when disabled or tqdm is missing.

    The bar appears only after a second of work (tqdm's ``delay``), so short calls stay quiet.
    """
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    # shown only once the work has run for a second: quick calls print nothing
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, delay=_DELAY_S)
