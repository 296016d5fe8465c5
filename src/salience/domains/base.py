"""The Domain contract, the identity domain and the composition of two domains."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .._validation import check_input
from ..errors import NamedInit, NotFittedError, ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike, as_layout

if TYPE_CHECKING:
    from ..engine import ScoreFunction

__all__ = ["Domain", "Time", "Compose", "as_domain", "into"]


class Domain(NamedInit):
    """An invertible change of coordinates ``z = forward(x)``, ``x = inverse(z)``.

    A domain lets any explainer attribute in other coordinates (frequency bins, independent
    components, wavelet bands): :class:`~salience.domains.InDomain` explains
    ``g(z) = f(inverse(z))`` at ``z = forward(x)``.

    The contract a subclass fulfils:

    - ``forward(x) -> z`` and ``inverse(z, index=None) -> x``, both batched over the leading axis;
      ``inverse`` is differentiable with torch operations only (it is called inside the model's
      autograd graph on every row the explainer evaluates).
    - ``z`` is real-valued: complex coefficients get an explicit real/imaginary axis ``r`` of
      size 2, so baselines, masks and noise stay well defined.
    - ``exact`` is True when ``inverse(forward(x)) == x`` for every ``x`` (up to rounding).
      For a lossy domain :class:`InDomain` adds the fixed residual ``x - inverse(forward(x))``.
    - ``affine`` is True when ``inverse(z, index)`` is affine in ``z`` (a linear map plus a
      constant; every built-in domain is). Integrated Gradients then sums its path gradients
      before the inverse and applies the inverse's adjoint once per sample instead of once per
      step (same result, less work). Leave it False (the default) for a non-linear inverse.
    - ``fit(x) -> self``: learned attributes end with ``_``; using a domain that needs fitting
      before :meth:`fit` raises :class:`~salience.errors.NotFittedError`. Stateless domains
      return ``self``.
    - ``output_layout(layout)``: axis names of ``z`` for an input with ``layout``.
    - ``reduce(values, layout)``: the reporting granularity (e.g. one value per frequency bin,
      the sum of its real and imaginary parts). Always a sum over coordinates, so completeness
      is kept.
    - ``coordinates(...)``: axis values for plots (e.g. bin frequencies in Hz).
    - Parameters are cast to the input's device and dtype on use; a domain is not an
      ``nn.Module``.

    Per-batch state (the length of the signal, the sources of each sample in per-sample ICA) is
    attached by :meth:`bind`, which returns a bound copy; ``inverse(z, index)`` then uses the
    state of the points ``index`` (positions in the bound batch; None means the rows are the
    bound batch itself).

    Parameters
    ----------
    layout : str or Layout, optional
        Axis names of the inputs; None infers them from ``x.ndim`` (``"b c t"`` for signals), or
        takes the explainer's layout inside :class:`InDomain`.
    """

    #: whether ``inverse(forward(x)) == x`` for every x
    exact: ClassVar[bool] = True
    #: whether ``inverse(z, index)`` is affine in z (its Jacobian does not depend on z)
    affine: ClassVar[bool] = False
    #: whether the domain must be fitted before use
    _needs_fit: ClassVar[bool] = False

    def __init__(self, *, layout: LayoutLike | None = None) -> None:
        self.layout = as_layout(layout) if layout is not None else None

    # ------------------------------------------------------------------ sklearn-style plumbing
    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"

    def _is_fitted(self) -> bool:
        return not self._needs_fit or any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise NotFittedError(
                f"This {self.name} domain is not fitted yet. Call fit(x) with reference data "
                "first (or build it from known matrices)."
            )

    def layout_of(self, x: torch.Tensor) -> Layout:
        """The axis names of ``x``: the domain's ``layout``, or inferred from ``x.ndim``."""
        return Layout.infer(x, self.layout)

    def axis_of(self, x: torch.Tensor, name: str) -> int:
        """The position in ``x`` of the axis called ``name`` (e.g. ``"t"``); a ShapeError names
        the layout when ``x`` has no such axis."""
        layout = self.layout_of(x)
        if name not in layout.names:
            raise ShapeError(
                f"{self.name} acts on the axis {name!r}, which is not in {layout!r}; pass "
                "layout=... or axis=... ."
            )
        return layout.axes(name)[0]

    # the names the built-in domains use
    _layout_of = layout_of
    _axis = axis_of

    # ------------------------------------------------------------------ the contract
    def fit(self, x: torch.Tensor) -> Domain:
        """Learn the domain's parameters from reference data (stateless domains: no-op).

        Parameters
        ----------
        x : Tensor of shape (M, *S)

        Returns
        -------
        self
        """
        x = check_input(x, self.name)
        return self

    def bind(self, x: torch.Tensor, layout: LayoutLike | None = None) -> Domain:
        """A copy of this domain carrying the per-batch state needed to invert ``forward(x)``.

        Parameters
        ----------
        x : Tensor of shape (M, *S)
            The batch that will be transformed.
        layout : Layout, optional
            Used when the domain was built without a layout.
        """
        self._check_fitted()
        x = check_input(x, self.name)
        bound = copy.copy(self)
        if bound.layout is None and layout is not None:
            bound.layout = as_layout(layout)
        bound.layout = bound._layout_of(x)
        bound._bind(x)
        return bound

    def _bind(self, x: torch.Tensor) -> None:
        """Attach per-batch state to this (already copied) domain; default: nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients of ``x``.

        Parameters
        ----------
        x : Tensor of shape (M, *S)

        Returns
        -------
        z : real Tensor of shape (M, *Z)
        """
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The signal of coefficients ``z`` (differentiable, torch operations only).

        Parameters
        ----------
        z : Tensor of shape (R, *Z)
        index : Tensor of shape (R,), optional
            Position of each row's point in the bound batch (per-sample domains only).

        Returns
        -------
        x : Tensor of shape (R, *S)
        """
        raise NotImplementedError

    def output_layout(self, layout: LayoutLike) -> Layout:
        """Axis names of ``z`` for inputs with ``layout``."""
        return as_layout(layout)

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """Sum attributions of ``z`` into the reported units (default: every coordinate)."""
        return values, layout

    def expand(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """Place values in the reported units (:meth:`reduce`'s output) on the coordinates of ``z``.

        The way back from a report to ``z``, for metrics that remove, insert or sum coefficients:
        each unit's value is spread over its coordinates (on an axis of size 1 that broadcasts,
        or shared evenly), so the coordinates of a unit tie and sums over units are kept.
        Default: unchanged.
        """
        return values, layout

    def coordinates(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Axis values of the reported attributions, for plots (default: none)."""
        return {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class Time(Domain):
    """The identity domain: attributions in the input's own coordinates.

    ``InDomain(explainer, Time())`` gives exactly ``explainer``'s result.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 16)
    >>> bool((Time().inverse(Time().forward(x)) == x).all())
    True
    """

    exact = True
    affine = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.name)
        return x

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return z


class Compose(Domain):
    """``second`` applied to the coefficients of ``first`` (e.g. ICA, then Fourier).

    ``forward(x) = second.forward(first.forward(x))`` and
    ``inverse(z) = first.inverse(second.inverse(z))``; the reported units are ``second``'s.
    ``Compose(ICA(...), Fourier())`` gives the frequency content of each independent component,
    as in the EEG seizure example of Kechris et al.

    Parameters
    ----------
    first, second : Domain
    """

    def __init__(self, first: Domain, second: Domain) -> None:
        for name, d in (("first", first), ("second", second)):
            if not isinstance(d, Domain):
                raise ParameterError(
                    f"The {name!r} parameter of Compose must be a salience Domain. "
                    f"Got {type(d).__name__} instead."
                )
        super().__init__(layout=first.layout)
        self.first = first
        self.second = second

    def __repr__(self) -> str:
        return f"Compose({self.first!r}, {self.second!r})"

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return bool(self.first.exact and self.second.exact)

    @property
    def affine(self) -> bool:  # type: ignore[override]
        return bool(self.first.affine and self.second.affine)

    def _is_fitted(self) -> bool:
        return self.first._is_fitted() and self.second._is_fitted()

    def fit(self, x: torch.Tensor) -> Compose:
        x = check_input(x, self.name)
        self.first.fit(x)
        layout = self._layout_of(x)
        first = self.first.bind(x, layout)
        with torch.no_grad():
            z = first.forward(x)
        # the second domain is fitted on the coefficients, whose axes it may name (Wavelet on "f")
        saved = self.second.layout
        if saved is None:
            self.second.layout = first.output_layout(layout)
        try:
            self.second.fit(z)
        finally:
            self.second.layout = saved
        return self

    def bind(self, x: torch.Tensor, layout: LayoutLike | None = None) -> Compose:
        self._check_fitted()
        x = check_input(x, self.name)
        layout = as_layout(layout) if layout is not None else self._layout_of(x)
        first = self.first.bind(x, layout)
        with torch.no_grad():
            z1 = first.forward(x)
        x_layout = first.layout if first.layout is not None else layout  # bind sets it
        second = self.second.bind(z1, first.output_layout(x_layout))
        bound = copy.copy(self)
        bound.first, bound.second, bound.layout = first, second, x_layout
        return bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.name)
        return self.second.forward(self.first.forward(x))

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.first.inverse(self.second.inverse(z, index), index)

    def output_layout(self, layout: LayoutLike) -> Layout:
        return self.second.output_layout(self.first.output_layout(layout))

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        return self.second.reduce(values, layout)

    def expand(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        return self.second.expand(values, layout)

    def coordinates(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        return self.second.coordinates(**kwargs)


class _Adapted(Domain):
    """A duck-typed domain (``forward(x)``, ``inverse(z)``) seen through the Domain contract.

    An object with ``bind(x, layout)`` follows the full protocol: its bound copy receives
    ``inverse(z, index)``; one without receives ``inverse(z)``. Without an ``exact`` attribute
    it counts as lossy (the residual is then computed, which is always correct); without an
    ``affine`` attribute its inverse is differentiated row by row.
    """

    def __init__(self, obj: Any) -> None:
        super().__init__()
        self.obj = obj
        self._protocol = callable(getattr(obj, "bind", None))

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.obj, "exact", False))

    @property
    def affine(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.obj, "affine", False))

    @property
    def name(self) -> str:
        return type(self.obj).__name__

    def __repr__(self) -> str:
        return repr(self.obj)

    def bind(self, x: torch.Tensor, layout: LayoutLike | None = None) -> Domain:
        bound = copy.copy(self)
        bound.layout = Layout.infer(x, as_layout(layout) if layout is not None else None)
        if self._protocol:
            bound.obj = self.obj.bind(x, layout)
        return bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.name)
        return self.obj.forward(x)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.obj.inverse(z, index) if self._protocol else self.obj.inverse(z)

    def output_layout(self, layout: LayoutLike) -> Layout:
        out = getattr(self.obj, "output_layout", None)
        return as_layout(str(out(layout))) if callable(out) else as_layout(layout)

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        fn = getattr(self.obj, "reduce", None)
        return fn(values, layout) if callable(fn) else (values, layout)


def as_domain(domain: Any, owner: str | None = None) -> Domain:
    """A :class:`Domain` as it is; an object with ``forward(x)`` and ``inverse(z)`` methods
    adapted to the contract (see :func:`into`); anything else raises ParameterError naming
    ``owner`` (by default the explainer or metric running, :func:`salience.errors.current_caller`)."""
    if isinstance(domain, Domain):
        return domain
    for meth in ("forward", "inverse"):
        if not callable(getattr(domain, meth, None)):
            raise ParameterError(
                f"{owner or current_caller()}: the domain must be a salience Domain (Time(), Fourier(), ICA(...), ...) "
                f"or have forward(x) and inverse(z) methods. Got {type(domain).__name__} without "
                f"{meth}()."
            )
    return _Adapted(domain)


def _generic_layout(z: torch.Tensor) -> Layout:
    """A layout for coefficients whose axes have no known names: ``b c z0 z1 ...``."""
    return Layout(" ".join(["b", "c"] + [f"z{i}" for i in range(z.ndim - 2)]))


def into(
    score: ScoreFunction, x: torch.Tensor, domain: Any, layout: Layout
) -> tuple[torch.Tensor, Layout, ScoreFunction, Domain]:
    """Explain inside a domain: ``z = forward(x)`` and the score ``g(z) = f(inverse(z) + r)``.

    The one implementation behind :class:`~salience.domains.InDomain` and the metrics'
    ``domain=`` argument. The domain is bound to ``x``; for a lossy domain (``exact`` False)
    the fixed residual ``r = x - inverse(forward(x))`` of each point makes
    ``g(forward(x)) == f(x)`` (exact domains: ``r`` is omitted). ``domain`` is a
    :class:`Domain` or a duck-typed object (see :func:`as_domain`).

    Parameters
    ----------
    score : ScoreFunction
        The score at ``x``.
    x : Tensor of shape (B, *S)
    domain : Domain or object with forward/inverse
    layout : Layout
        Axis names of ``x``.

    Returns
    -------
    z : Tensor of shape (B, *Z)
        The coefficients (real, detached).
    z_layout : Layout
        Their axis names (``b c z0 z1 ...`` for a duck-typed domain without ``output_layout``).
    g : ScoreFunction
        The score in the domain (shares the cached scores at ``x``).
    bound : Domain
        The domain bound to ``x`` (for ``reduce`` and the recorded ``Attribution.domain``).
    """
    owner = score.caller
    adapted = not isinstance(domain, Domain)
    d = as_domain(domain, owner).bind(x, layout)
    with torch.no_grad():
        z = d.forward(x)
        if not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[0] != x.shape[0] or z.is_complex():
            got = f"shape {tuple(z.shape)} ({z.dtype})" if isinstance(z, torch.Tensor) else type(z).__name__
            raise ShapeError(
                f"{owner}: {d.name}.forward(x) returned {got}; a domain must return real "
                "coefficients with the batch axis first."
            )
        z = z.detach()
        residual = None if d.exact else (x - d.inverse(z, torch.arange(x.shape[0], device=x.device))).detach()
    z_layout = d.output_layout(layout)
    if z_layout.ndim != z.ndim:
        if not adapted:
            raise ShapeError(
                f"{owner}: {d.name}.forward returned shape {tuple(z.shape)} for {z_layout!r}; the "
                "coefficients must have one axis per name of output_layout()."
            )
        z_layout = _generic_layout(z)

    def transform(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        out = d.inverse(rows, index)
        return out if residual is None else out + residual[index]

    affine = bool(getattr(d, "affine", False))
    return z, z_layout, score.compose(transform, z, z_layout, affine=affine), d
