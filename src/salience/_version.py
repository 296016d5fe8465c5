"""The package version, written here only (pyproject.toml reads it; ``salience.__version__`` is this)."""

__version__ = "0.1.0"
