"""Independent component analysis as a domain: sources (dataset mode) or mixing weights (per sample)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_float, check_generator, check_input, check_int, check_option, make_generator
from ..errors import ParameterError, ShapeError
from ..layout import Layout, LayoutLike, as_layout
from .base import Domain

__all__ = ["ICA"]


def _as_matrix(a: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(
        np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a), dtype=torch.float64
    )
    if t.ndim != 2 or not bool(torch.isfinite(t).all()):
        raise ParameterError(f"ICA: {name} must be a finite 2-D matrix. Got shape {tuple(t.shape)}.")
    return t


def _fit(est: Any, obs: np.ndarray, what: str) -> None:
    """Fit ``est`` on observations (n, C), with errors that name the cause."""
    n, c = obs.shape
    if n < 2:
        raise ShapeError(
            f"ICA: fitting an ICA on {what} needs at least 2 time points (observations) of its "
            f"{c} channels; got {n}. Fit the domain on longer signals or more samples "
            "(ICA(...).fit(x_train)) and explain with that fitted ICA."
        )
    try:
        est.fit(obs)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        raise ShapeError(
            f"ICA: fitting {type(est).__name__} on {what} ({n} observations of {c} channels) "
            f"failed: {type(err).__name__}: {err}. An ICA needs many more time points than "
            "channels; fit it on longer signals or more samples (ICA(...).fit(x_train))."
        ) from err


def _matrices(ica: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixing (C, K), unmixing (K, C), mean (C,)) of a fitted FastICA-like object."""
    mixing = _as_matrix(ica.mixing_, "mixing_")
    unmixing = _as_matrix(ica.components_, "components_")
    if unmixing.shape != mixing.shape[::-1]:
        raise ParameterError(
            f"ICA: components_ {tuple(unmixing.shape)} and mixing_ {tuple(mixing.shape)} have "
            "incompatible shapes (expected (K, C) and (C, K))."
        )
    mean = getattr(ica, "mean_", None)
    mean_t = (
        torch.zeros(mixing.shape[0], dtype=torch.float64)
        if mean is None
        else torch.as_tensor(np.asarray(mean), dtype=torch.float64).reshape(-1)
    )
    if mean_t.shape[0] != mixing.shape[0]:
        raise ParameterError(f"ICA: mean_ has {mean_t.shape[0]} entries for {mixing.shape[0]} channels.")
    return mixing, unmixing, mean_t


def _is_exact(mixing: torch.Tensor, unmixing: torch.Tensor) -> bool:
    c, k = mixing.shape[-2:]
    if c != k:
        return False
    eye = torch.eye(c, dtype=mixing.dtype)
    return bool(((mixing @ unmixing) - eye).abs().max() <= 1e-8)


class ICA(Domain):
    """Independent components of the channels, in two modes.

    ``mode="dataset"`` (default): ``z`` are the sources, ``s = W (x - mean)`` over the channel
    axis, and ``inverse(s) = A s + mean`` with the mixing matrix ``A`` (C, K) and the unmixing
    matrix ``W = components_`` (K, C). Layout ``"b c t"`` becomes ``"b k t"``: one attribution
    per source and time point. Zero sources are the mean signal, so IG's zero baseline here is
    the channel-mean signal.

    ``mode="sample"`` (the reference implementation of Kechris et al.): the sources of each
    sample are held fixed and the coefficients are the mixing weights: ``z = A^T`` (B, K, C)
    and ``inverse(theta) = theta^T s + mean``. Reported attributions sum over channels: one
    signed score per component, (B, K). Zero weights are the mean signal, so completeness is
    relative to ``f(mean)``. Without a fitted ``ica``, one FastICA is fitted on each sample
    (time points as observations, as the reference does).

    With fewer components than channels the domain is lossy (``exact`` is False) and
    :class:`InDomain` adds the residual ``x - inverse(forward(x))`` so that completeness holds.

    ``ica`` is the one positional parameter (the object that defines the domain); every other
    parameter is keyword-only.

    Parameters
    ----------
    ica : fitted FastICA-like object, list of them, or unfitted estimator, optional
        Anything with ``components_`` (K, C), ``mixing_`` (C, K) and optionally ``mean_`` (C,),
        e.g. ``sklearn.decomposition.FastICA`` after ``fit``; an object with ``fit`` but
        without ``components_`` is cloned and fitted by :meth:`fit` (or per sample). In
        ``mode="sample"`` a list gives one fitted ICA per sample of the batch (the reference
        workflow: each sample's own FastICA). None builds a scikit-learn FastICA (optional
        dependency, ``pip install salience[ica]``).
    mode : {"dataset", "sample"}, default "dataset"
    n_components : int, optional
        For the FastICA built here (None: as many as channels).
    random_state : int, optional
        Seed of every FastICA fitted here (scikit-learn's parameter; the same seed for every
        fit). Exclusive with ``generator``.
    generator : torch.Generator, optional
        Source of the FastICA seeds when ``random_state`` is None: one seed is drawn per fit
        (per sample in ``mode="sample"``), also for an unfitted estimator passed as ``ica``
        whose own ``random_state`` is None. numpy's global RNG is never used; None draws from a
        fresh randomly seeded generator.
    max_iter : int, default 200
    tol : float, default 1e-4
    axis : str, default "c"
        The mixed axis.
    layout : str or Layout, optional

    Attributes
    ----------
    mixing_ : Tensor of shape (C, K)
    components_ : Tensor of shape (K, C)
    mean_ : Tensor of shape (C,)

    References
    ----------
    Hyvarinen & Oja, "Independent component analysis: algorithms and applications", 2000;
    Kechris, Dan & Atienza, arXiv 2505.13100 (ICA-IG).

    Examples
    --------
    >>> import torch
    >>> d = ICA.from_matrices(torch.tensor([[1.0, 0.5], [0.2, 1.0]], dtype=torch.float64))
    >>> x = torch.randn(4, 2, 32, dtype=torch.float64)
    >>> bool(torch.allclose(d.inverse(d.forward(x)), x))
    True
    """

    _needs_fit = True
    # dataset mode: mixing @ s + mean; per-sample mode: sources @ z + mean (sources fixed)
    affine = True

    def __init__(
        self,
        ica: Any = None,
        *,
        mode: str = "dataset",
        n_components: int | None = None,
        random_state: int | None = None,
        generator: torch.Generator | None = None,
        max_iter: int = 200,
        tol: float = 1e-4,
        axis: str = "c",
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(layout=layout)
        self.mode = check_option(mode, "mode", options=("dataset", "sample"))
        self.n_components = None if n_components is None else check_int(n_components, "n_components", low=1)
        self.random_state = None if random_state is None else check_int(random_state, "random_state", low=0)
        self.generator = check_generator(generator)
        if self.random_state is not None and self.generator is not None:
            raise ParameterError(f"{self.name}: pass either random_state=... or generator=..., not both.")
        self.max_iter = check_int(max_iter, "max_iter", low=1)
        self.tol = check_float(tol, "tol", low=0.0)
        if not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of {self.name} must be an axis name (str). Got {axis!r} instead."
            )
        self.axis = axis
        self.ica = ica
        self._per_sample: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if isinstance(ica, (list, tuple)):
            if self.mode != "sample" or not ica:
                raise ParameterError(
                    f"A list of fitted ICAs (one per sample) needs mode='sample' and at least one "
                    f"element in {self.name}. Got mode={self.mode!r} and {len(ica)} element(s)."
                )
            mats = [_matrices(i) for i in ica]
            if len({m[0].shape for m in mats}) != 1:
                raise ParameterError(f"The fitted ICAs given to {self.name} must all have the same shapes.")
            self._per_sample = tuple(torch.stack(t) for t in zip(*mats, strict=True))  # type: ignore[assignment]
        elif ica is not None and hasattr(ica, "components_") and hasattr(ica, "mixing_"):
            self._set(*_matrices(ica))
        elif ica is not None and not hasattr(ica, "fit"):
            raise ParameterError(
                f"The 'ica' parameter of {self.name} must be a fitted FastICA-like object (with "
                "components_, mixing_ and mean_) or an estimator with fit(). Got "
                f"{type(ica).__name__} instead."
            )

    @classmethod
    def from_matrices(
        cls,
        mixing: Any,
        mean: Any = None,
        unmixing: Any = None,
        *,
        mode: str = "dataset",
        axis: str = "c",
        layout: LayoutLike | None = None,
    ) -> ICA:
        """An ICA domain from known matrices (deterministic; no scikit-learn needed).

        Parameters
        ----------
        mixing : array of shape (C, K)
        mean : array of shape (C,), optional
            Default zeros.
        unmixing : array of shape (K, C), optional
            Default the pseudo-inverse of ``mixing``.
        """
        d = cls(mode=mode, axis=axis, layout=layout)
        a = _as_matrix(mixing, "mixing")
        w = torch.linalg.pinv(a) if unmixing is None else _as_matrix(unmixing, "unmixing")
        m = (
            torch.zeros(a.shape[0], dtype=torch.float64)
            if mean is None
            else torch.as_tensor(
                np.asarray(mean.detach().cpu() if isinstance(mean, torch.Tensor) else mean),
                dtype=torch.float64,
            ).reshape(-1)
        )
        if w.shape != a.shape[::-1] or m.shape[0] != a.shape[0]:
            raise ParameterError(
                f"ICA.from_matrices: mixing {tuple(a.shape)}, unmixing {tuple(w.shape)} and mean "
                f"{tuple(m.shape)} do not fit (expected (C, K), (K, C), (C,))."
            )
        d._set(a, w, m)
        return d

    @classmethod
    def from_mne(
        cls, ica: Any, *, units: Any = None, axis: str = "c", layout: LayoutLike | None = None
    ) -> ICA:
        """The domain of a fitted ``mne.preprocessing.ICA``: MNE's sources (``get_sources``) and
        back projection (``apply``), its PCA whitening included; see
        :func:`salience.mne.ica_domain` (``units``: those of the explained tensors)."""
        from ..mne import ica_domain

        return ica_domain(ica, units=units, axis=axis, layout=layout)

    def _set(self, mixing: torch.Tensor, unmixing: torch.Tensor, mean: torch.Tensor) -> None:
        self.mixing_ = mixing
        self.components_ = unmixing
        self.mean_ = mean

    def __repr__(self) -> str:
        k = getattr(self, "mixing_", None)
        extra = f", n_components={k.shape[1]}" if k is not None else ""
        return f"ICA(mode={self.mode!r}{extra})"

    def _is_fitted(self) -> bool:
        # per-sample mode without a shared ICA fits one per sample when bound
        return hasattr(self, "mixing_") or self.mode == "sample"

    def _sample_matrices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        if self._per_sample is not None:
            if self._per_sample[0].shape[0] != b:
                raise ShapeError(
                    f"ICA was given {self._per_sample[0].shape[0]} fitted ICAs (one per sample) "
                    f"for a batch of {b} samples."
                )
            return self._per_sample
        if hasattr(self, "mixing_"):
            return (
                self.mixing_.expand(b, *self.mixing_.shape),
                self.components_.expand(b, *self.components_.shape),
                self.mean_.expand(b, *self.mean_.shape),
            )
        mats = []
        gen = self._seed_source()
        for i in range(b):
            est = self._estimator(gen)
            _fit(est, self._observations(x[i : i + 1]), f"sample {i}")
            mats.append(_matrices(est))
        a, w, m = (torch.stack(t) for t in zip(*mats, strict=True))
        return a, w, m

    @property
    def exact(self) -> bool:  # type: ignore[override]
        if hasattr(self, "_exact"):
            return bool(self._exact)
        if self._per_sample is not None:
            return all(_is_exact(a, w) for a, w in zip(self._per_sample[0], self._per_sample[1], strict=True))
        if hasattr(self, "mixing_"):
            return _is_exact(self.mixing_, self.components_)
        return self.n_components is None

    # ------------------------------------------------------------------ fitting
    def _seed_source(self) -> torch.Generator | None:
        """The generator seeds are drawn from (None when ``random_state`` fixes them)."""
        return None if self.random_state is not None else make_generator(self.generator)

    def _estimator(self, gen: torch.Generator | None) -> Any:
        """A fresh estimator whose seed never comes from numpy's global RNG."""
        seed = self.random_state
        if gen is not None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))
        if self.ica is not None:
            from sklearn.base import clone  # the user's estimator class, never refitted in place

            est = clone(self.ica)
            params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
            if "random_state" in params and params["random_state"] is None:
                est.set_params(random_state=seed)
            return est
        try:
            from sklearn.decomposition import FastICA
        except ImportError as err:  # pragma: no cover - exercised without scikit-learn
            raise ImportError(
                "ICA needs scikit-learn to fit FastICA (pip install 'salience[ica]'), or build "
                "the domain with ICA(fitted_ica) / ICA.from_matrices(mixing, mean)."
            ) from err
        return FastICA(
            n_components=self.n_components,
            whiten="unit-variance",
            random_state=seed,
            max_iter=self.max_iter,
            tol=self.tol,
        )

    def _observations(self, x: torch.Tensor) -> np.ndarray:
        c = self._axis(x, self.axis)
        moved = x.detach().movedim(c, -1)
        return moved.reshape(-1, moved.shape[-1]).cpu().to(torch.float64).numpy()

    def fit(self, x: torch.Tensor) -> ICA:
        """Fit FastICA on every time point (and sample) of ``x`` as one observation.

        Parameters
        ----------
        x : Tensor of shape (M, C, T)
        """
        x = check_input(x, self.name)
        est = self._estimator(self._seed_source())
        _fit(est, self._observations(x), "x")
        self._set(*_matrices(est))
        return self

    def _bind(self, x: torch.Tensor) -> None:
        c_axis = self._axis(x, self.axis)
        if hasattr(self, "mixing_"):
            if self.mixing_.shape[0] != x.shape[c_axis]:  # noqa: SIM102
                raise ShapeError(
                    f"ICA was fitted on {self.mixing_.shape[0]} channels; x has {x.shape[c_axis]}."
                )
            self._exact = _is_exact(self.mixing_, self.components_)
        if self.mode == "dataset":
            return
        a, w, m = self._sample_matrices(x)
        if a.shape[1] != x.shape[c_axis]:
            raise ShapeError(f"ICA was fitted on {a.shape[1]} channels; x has {x.shape[c_axis]}.")
        self._exact = all(_is_exact(ai, wi) for ai, wi in zip(a, w, strict=True))
        self.sample_mixing_ = a  # (B, C, K)
        self.sample_unmixing_ = w  # (B, K, C)
        self.sample_mean_ = m  # (B, C)
        xc = x.detach().movedim(c_axis, -1)  # (B, *rest, C)
        wt = w.to(device=x.device, dtype=x.dtype)
        mt = m.to(device=x.device, dtype=x.dtype)
        view = (x.shape[0],) + (1,) * (xc.ndim - 2) + (-1,)
        centred = xc - mt.reshape(view)
        # sources (B, *rest, K)
        self.sources_ = torch.einsum("b...c,bkc->b...k", centred, wt)

    # ------------------------------------------------------------------ transform
    def _c_axis(self, ndim: int) -> int:
        layout = self.layout or Layout.infer(torch.empty((1,) * ndim))
        return layout.axes(self.axis)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.name)
        self._check_fitted()
        if self.mode == "sample":
            a = getattr(self, "sample_mixing_", None)
            if a is None:
                if not hasattr(self, "mixing_"):
                    raise ShapeError("ICA(mode='sample') fits per sample: call bind(x) first.")
                a = self.mixing_.expand(x.shape[0], *self.mixing_.shape)
            if a.shape[0] != x.shape[0]:
                raise ShapeError(
                    f"This per-sample ICA is bound to {a.shape[0]} samples; got {x.shape[0]}. "
                    "Call bind(x) on this batch."
                )
            return a.transpose(1, 2).to(device=x.device, dtype=x.dtype).contiguous()  # (B, K, C)
        c = self._axis(x, self.axis)
        w = self.components_.to(device=x.device, dtype=x.dtype)
        mean = self.mean_.to(device=x.device, dtype=x.dtype)
        return ((x.movedim(c, -1) - mean) @ w.T).movedim(-1, c)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._check_fitted()
        if self.mode == "sample":
            sources = getattr(self, "sources_", None)
            if sources is None:
                raise ShapeError("ICA(mode='sample') needs the sources of the samples: call bind(x) first.")
            if index is None:
                if z.shape[0] != sources.shape[0]:
                    raise ShapeError(
                        f"{z.shape[0]} rows for a per-sample ICA bound to {sources.shape[0]} samples; pass index=."
                    )
                index = torch.arange(z.shape[0], device=sources.device)
            s = sources.to(device=z.device, dtype=z.dtype)[index.to(sources.device)]  # (R, *rest, K)
            mean = self.sample_mean_.to(device=z.device, dtype=z.dtype)[index.to(self.sample_mean_.device)]
            view = (z.shape[0],) + (1,) * (s.ndim - 2) + (-1,)
            out = torch.einsum("r...k,rkc->r...c", s, z) + mean.reshape(view)  # (R, *rest, C)
            return out.movedim(-1, self._c_axis(out.ndim))
        c = self._c_axis(z.ndim)
        a = self.mixing_.to(device=z.device, dtype=z.dtype)
        mean = self.mean_.to(device=z.device, dtype=z.dtype)
        return (z.movedim(c, -1) @ a.T + mean).movedim(-1, c)

    def output_layout(self, layout: LayoutLike) -> Layout:
        layout = as_layout(layout)
        if self.mode == "sample":
            return Layout(f"b k {self.axis}")
        return layout.replace(self.axis, "k")

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        if self.mode == "sample" and self.axis in layout.names and "k" in layout.names:
            return values.sum(layout.axes(self.axis)[0]), Layout("b k")
        return values, layout

    def coordinates(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        k = self.mixing_.shape[1] if hasattr(self, "mixing_") else self.sample_mixing_.shape[-1]
        return {"k": torch.arange(k)}
