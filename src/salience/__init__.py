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
    datasets,  # whole datasets to a Zarr store; zarr/xarray/ray are imported only when used
    domains,
    engine,
    errors,
    explainers,
    keras,  # Keras/TensorFlow models; tensorflow and keras are imported only when used
    layout,
    masking,
    metrics,
    mne,  # MNE-Python in and out; mne is imported only when used
    targets,
    viz,  # plots and reports; matplotlib is imported only when a plot is made
)
from ._version import __version__
from .adapters import *
from .attribution import *
from .datasets import explain_dataset, open_attributions
from .domains import *
from .errors import *
from .explainers import *
from .layout import *
from .metrics import evaluate
from .targets import *

__all__ = [
    "__version__",
    "datasets",
    "domains",
    "engine",
    "explainers",
    "keras",
    "masking",
    "metrics",
    "mne",
    "viz",
    "evaluate",
    "explain_dataset",
    "open_attributions",
]
__all__ += adapters.__all__
__all__ += attribution.__all__
__all__ += domains.__all__
__all__ += errors.__all__
__all__ += explainers.__all__
__all__ += layout.__all__
__all__ += targets.__all__
