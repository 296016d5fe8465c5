"""Metrics of attributions: localisation (grid pointing game), faithfulness, robustness."""

from .grid import Grid, GridBatch, grid_pointing_game, make_grid

__all__ = ["Grid", "GridBatch", "make_grid", "grid_pointing_game"]
