"""The ``salience`` command line (``salience demo``, ``salience explain``, ``salience layers``)."""

from .main import main

__all__ = ["main"]
