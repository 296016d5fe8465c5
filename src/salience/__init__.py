"""salience: saliency maps for PyTorch models of signals, images and video, in any domain.

The names below come from the subpackages' ``__all__``: explainers (:mod:`salience.explainers`),
domains (:mod:`salience.domains`), targets, errors, ``Attribution``, ``Layout`` and
``NumpyModel``; :mod:`salience.metrics`, :mod:`salience.viz` and :mod:`salience.masking` are
reached as modules, :mod:`salience.engine` is the extension API and :mod:`salience.testing` the
checks for one's own methods (imported on use).
"""

from . import (
    adapters,
    attribution,
    domains,
    engine,
    errors,
    explainers,
    layout,
    masking,
    metrics,
    targets,
    viz,  # plots and reports; matplotlib is imported only when a plot is made
)
from ._version import __version__
from .adapters import *
from .attribution import *
from .domains import *
from .errors import *
from .explainers import *
from .layout import *
from .metrics import evaluate
from .targets import *

__all__ = ["__version__", "domains", "engine", "explainers", "masking", "metrics", "viz", "evaluate"]
__all__ += adapters.__all__
__all__ += attribution.__all__
__all__ += domains.__all__
__all__ += errors.__all__
__all__ += explainers.__all__
__all__ += layout.__all__
__all__ += targets.__all__
