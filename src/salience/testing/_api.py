"""The public entry points: run the checks, or list them for pytest's parametrize."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .. import Explainer
from ._common import Check
from ._domain import DOMAIN_CHECKS
from ._domain import Setup as DomainSetup
from ._explainer import EXPLAINER_CHECKS
from ._explainer import Setup as ExplainerSetup
from ._models import KINDS

__all__ = ["check_explainer", "explainer_checks", "check_domain", "domain_checks"]

Factory = Callable[..., Explainer]
Passes = Callable[[int], Sequence[int]]


def explainer_checks(
    make: Factory,
    *,
    kinds: Sequence[str] = ("signal", "image"),
    stochastic: bool | None = None,
    expected_passes: Passes | None = None,
    checks: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-10,
    seed: int = 0,
) -> Iterator[tuple[str, Check]]:
    """The explainer checks as ``(name, check)`` pairs, for ``pytest.mark.parametrize``.

    Like scikit-learn's ``parametrize_with_checks``: each check is its own test, so every
    failure is reported. Calling ``check()`` runs it: True when it passes, else :class:`CheckFailed`.

    Parameters
    ----------
    make : callable
        ``make(model, batch_size=None) -> Explainer``: builds your explainer around a model the
        kit supplies (:func:`toy_model`: a float64 CNN in eval mode with 4 classes whose module
        ``"2"`` is its last convolution). ``batch_size`` is passed only when a check sets it.
        If ``make`` has a parameter named ``generator``, each call gets a fresh
        ``torch.Generator`` seeded with ``seed``; otherwise a random method must seed its
        own generator in ``make`` (results must be reproducible).
    kinds : sequence of {"signal", "image", "video"}, default ("signal", "image")
        The inputs to check on: (N, 3, 20) signals, (N, 3, 8, 8) images, (N, 3, 4, 6, 6) videos.
    stochastic : bool, optional
        Whether a sample's map depends on the rest of the batch through random draws (noise
        drawn per row); such methods skip ``batch_invariance``. None reads the explainer's
        ``is_stochastic``.
    expected_passes : callable, optional
        ``expected_passes(B) -> [rows, ...]``: the rows of each pass over the model for a batch
        of B samples (e.g. ``lambda b: [n_steps * b]`` for IG). ``chunk_invariance`` then
        requires exactly ``sum(ceil(rows / batch_size))`` model calls.
    checks : sequence of str, optional
        Names of the checks to run (default: all of :data:`EXPLAINER_CHECKS`).
    device : torch.device or str, optional
        Where the models and inputs live (default: the CPU).
    rtol, atol : float
        Tolerances of the invariance checks (float64 throughout); determinism and target forms
        are exact.
    seed : int, default 0
        The seed of the generator passed to ``make``.

    Yields
    ------
    name : str
        ``"<check>[<kind>]"``, e.g. ``"batch_invariance[signal]"``.
    check : Check
        A callable without arguments.

    Notes
    -----
    The checks, for each kind:

    - ``output``: an Attribution with one map per sample, the input's dtype and device, finite
      values, one score per sample, a method name.
    - ``batch_invariance`` (deterministic methods): explaining samples one by one gives the
      maps of the whole batch (per-sample targets).
    - ``chunk_invariance``: ``batch_size`` 1, 2 and the default give the same values; no
      model call gets more rows than ``batch_size``; the number of calls is
      ``expected_passes``'s, when given.
    - ``determinism``: an explainer called twice gives identical values (one whose
      ``is_stochastic`` is True: two explainers from ``make``, with the same seed).
    - ``no_side_effects``: under ``torch.no_grad()``, the model's parameters, buffers,
      ``.grad``, ``requires_grad`` flags, modes and hooks (forward, backward, state-dict, tensor
      and global module hooks), the input's values, version counter and ``requires_grad``, and
      the global RNG are unchanged.
    - ``no_side_effects_after_error``: the same when the model raises on its first or second
      call (the error propagates, itself or as the cause).
    - ``training_mode``: a model with BatchNorm and Dropout in training mode gets a warning
      naming training mode; its state and the global RNG are unchanged (the method may refuse
      it with a SalienceError).
    - ``target_forms``: ``3``, a tensor, a list, ``Class(3)`` and a callable score give
      identical maps (a method may refuse a callable with a SalienceError); ``Attribution.target``
      records 3 for each sample.
    - ``target_recorded``: for ``target=None``, ``Attribution.target`` is the predicted class and
      ``Attribution.scores`` the model's output for it at x.
    - ``extra_inputs``: a per-sample forward input (``explain(..., forward_kwargs=...)``)
      reaches every model call with its sample's rows: ``batch_size`` 1 and 2 give the values of
      the default, and (deterministic methods) each sample explained alone gives its values.

    Examples
    --------
    >>> import salience as sl
    >>> from salience.testing import explainer_checks
    >>> CHECKS = list(explainer_checks(lambda m, **kw: sl.Gradient(m, **kw), expected_passes=lambda b: [b]))
    >>> CHECKS[0][0]
    'output[signal]'
    >>> for name, check in CHECKS:  # or: @pytest.mark.parametrize("name, check", CHECKS)
    ...     assert check()
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds must be among {sorted(KINDS)}; got {unknown}.")
    names = list(EXPLAINER_CHECKS) if checks is None else list(checks)
    unknown = sorted(set(names) - set(EXPLAINER_CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {list(EXPLAINER_CHECKS)}.")
    setup = ExplainerSetup(make, stochastic, expected_passes, torch.device(device or "cpu"), rtol, atol, seed)
    for kind in kinds:
        for name in names:
            if name == "batch_invariance" and setup.is_stochastic(kind):
                continue
            fn = EXPLAINER_CHECKS[name]
            yield f"{name}[{kind}]", Check(f"{name}[{kind}]", functools.partial(fn, setup, kind))


def check_explainer(make: Factory, **kwargs: Any) -> None:
    """Run every explainer check; raise :class:`CheckFailed` at the first failure.

    Like scikit-learn's ``check_estimator``, for explainers: your own ``Explainer`` subclass
    (or configuration of a built-in one) is checked against the contract every salience
    explainer satisfies.

    Parameters
    ----------
    make : callable
        ``make(model, batch_size=None) -> Explainer`` (see :func:`explainer_checks`).
    **kwargs
        ``kinds``, ``stochastic``, ``expected_passes``, ``checks``, ``device``, ``rtol``,
        ``atol``, ``seed``: see :func:`explainer_checks`.

    Raises
    ------
    CheckFailed
        An ``AssertionError`` naming the check, what was expected and what was found.

    Examples
    --------
    >>> import salience as sl
    >>> from salience.testing import check_explainer
    >>> check_explainer(lambda m, **kw: sl.IntegratedGradients(m, n_steps=4, **kw),
    ...                 expected_passes=lambda b: [4 * b])
    """
    for _, check in explainer_checks(make, **kwargs):
        check()


def domain_checks(
    domain: Any,
    x: torch.Tensor | None = None,
    *,
    checks: Sequence[str] | None = None,
    model: Any = None,
    target: int = 0,
    tol: float = 1e-10,
    n_steps: int = 32,
    completeness_tol: float = 1e-2,
    seed: int = 0,
) -> Iterator[tuple[str, Check]]:
    """The domain checks as ``(name, check)`` pairs, for ``pytest.mark.parametrize``.

    Each check works on its own deep copy of ``domain`` (fitted on ``x`` when it must be), so
    your object is never modified. Calling ``check()`` runs it: True when it passes, else :class:`CheckFailed`.

    Parameters
    ----------
    domain : Domain or object with ``forward(x)`` and ``inverse(z)``
        Your domain (a duck-typed object is adapted as :class:`~salience.InDomain` adapts it).
    x : Tensor of shape (B, *S), optional
        Data to check on, B >= 2 (cast to float64). Default: 3 seeded signals of 3 channels and
        24 time steps.
    checks : sequence of str, optional
        Names of the checks to run (default: all of :data:`DOMAIN_CHECKS`).
    model : callable, optional
        The model of ``explainer_in_domain``; default :func:`toy_model` for ``x``'s shape.
    target : int, default 0
        The class ``explainer_in_domain`` explains.
    tol : float, default 1e-10
        Absolute tolerance of the round trip and batch invariance, times ``max(1, |x|)``.
    n_steps : int, default 32
        IG steps of ``explainer_in_domain``.
    completeness_tol : float, default 1e-2
        The largest IG completeness gap with ``n_steps`` steps, times ``max(1, |f(x) - f(x0)|)``.
    seed : int, default 0
        Seed of the default ``x`` and of the random directions.

    Yields
    ------
    name : str
    check : Check
        A callable without arguments.

    Notes
    -----
    The checks:

    - ``shapes_dtypes``: ``forward`` returns real coefficients with the batch axis first, in the
      input's dtype (float64 and float32), one axis per name of ``output_layout``; ``inverse``
      returns the input's shape and dtype.
    - ``round_trip``: ``inverse(forward(x)) == x`` and ``forward(inverse(z)) == z`` for an
      ``exact`` domain; for a lossy one, ``inverse(forward(.))`` is a projection.
    - ``adjoint``: autograd's ``J^T w`` of ``inverse`` satisfies ``<J v, w> = <v, J^T w>``, with
      ``J v`` from a central difference, or exactly from ``inverse(z + v) - inverse(z)`` for an
      ``affine`` domain (also: linear along ``v``, the same ``J^T w`` at every z). Integrated
      Gradients applies this adjoint once per sample in affine domains.
    - ``reduce``: ``reduce`` keeps each sample's total (it sums coordinates into units).
    - ``input_unchanged``: ``fit``, ``bind``, ``forward`` and ``inverse`` leave ``x``, ``z``
      (values, version counter, ``requires_grad``) and the domain's attributes as they were.
    - ``batch_invariance``: a sample bound and transformed alone gives its row of the batch.
    - ``explainer_in_domain``: ``InDomain(IntegratedGradients(model), domain)`` gives finite
      maps, its ``delta`` is ``sum(attr) - (f(x) - f(x0))`` with ``x0 = inverse(0)`` (plus the
      residual of a lossy domain), and the gap is within ``completeness_tol`` and shrinks from
      4 to ``n_steps`` steps.

    Examples
    --------
    >>> import salience as sl
    >>> from salience.testing import domain_checks
    >>> [name for name, _ in domain_checks(sl.Fourier())][:3]
    ['shapes_dtypes', 'round_trip', 'adjoint']
    """
    names = list(DOMAIN_CHECKS) if checks is None else list(checks)
    unknown = sorted(set(names) - set(DOMAIN_CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {list(DOMAIN_CHECKS)}.")
    setup = DomainSetup(domain, x, model, target, tol, n_steps, completeness_tol, seed)
    for name in names:
        fn = DOMAIN_CHECKS[name]
        yield name, Check(name, functools.partial(fn, setup))


def check_domain(domain: Any, x: torch.Tensor | None = None, **kwargs: Any) -> None:
    """Run every domain check; raise :class:`CheckFailed` at the first failure.

    Parameters
    ----------
    domain : Domain or object with ``forward(x)`` and ``inverse(z)``
    x : Tensor of shape (B, *S), optional
    **kwargs
        ``checks``, ``model``, ``target``, ``tol``, ``n_steps``, ``completeness_tol``, ``seed``:
        see :func:`domain_checks`.

    Raises
    ------
    CheckFailed
        An ``AssertionError`` naming the check, what was expected and what was found.

    Examples
    --------
    >>> import salience as sl
    >>> from salience.testing import check_domain
    >>> check_domain(sl.STFT(n_fft=8, hop_length=2))
    """
    for _, check in domain_checks(domain, x, **kwargs):
        check()
