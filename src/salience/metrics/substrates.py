"""The substrates of published deletion/insertion protocols: RISE's blurred input and ROAD's
noisy linear imputation (:class:`~salience.masking.Substrate` objects, usable wherever a
substrate is)."""

from __future__ import annotations

from itertools import product
from typing import ClassVar

import torch
import torch.nn.functional as F

from .._validation import check_float, check_generator, check_int, make_generator
from ..errors import ParameterError, current_caller
from ..layout import Layout, LayoutLike
from ..masking import Substrate

__all__ = ["RiseBlur", "NoisyLinearImputation"]


class RiseBlur(Substrate):
    """RISE's insertion substrate, exactly: an 11-tap Gaussian (sigma 5) with zero padding.

    RISE builds its kernel as ``scipy.ndimage.gaussian_filter`` (sigma 5, truncate 4, mode
    ``reflect``) of an 11x11 unit impulse, i.e. the Gaussian's tails folded back into the 11
    taps (not a renormalised truncated Gaussian), and blurs with ``conv2d(x, K, padding=5)``
    per channel, which darkens the borders. The kernel is separable, so it is applied along every
    spatial axis of the layout (time for signals, h and w for images, t, h and w for video).

    Parameters
    ----------
    sigma : float in (0, 1e6], default 5.0
        The Gaussian's standard deviation in samples/pixels (the kernel it folds has
        ``2 * int(4 * sigma + 0.5) + 1`` taps, so it is bounded).
    size : int in [1, 1e6], default 11
        Number of taps (odd).
    """

    needs_mask: ClassVar[bool] = False
    is_random: ClassVar[bool] = False

    #: the largest ``sigma`` and ``size``: the kernels are materialised
    MAX_SIGMA: ClassVar[float] = 1e6
    MAX_SIZE: ClassVar[int] = 1_000_000

    def __init__(self, sigma: float = 5.0, *, size: int = 11) -> None:
        self.sigma = check_float(sigma, "sigma", low=0.0, high=self.MAX_SIGMA, closed="right")
        self.size = check_int(size, "size", low=1, high=self.MAX_SIZE)
        if self.size % 2 == 0:
            raise ParameterError(
                f"The 'size' parameter of {current_caller()} must be odd. Got {size!r} instead."
            )

    def kernel(self) -> torch.Tensor:
        """The 1-D kernel (float64, ``size`` taps) whose outer products give RISE's kernel.

        Returns
        -------
        Tensor of shape (size,)
            Tap ``i`` is the sum of the Gaussian's weights ``w[j]`` (truncated at 4 sigma,
            normalised) over the offsets ``j`` whose position ``i + j``, reflected half-sample
            symmetrically into ``[0, size)``, is the centre: scipy's ``gaussian_filter`` of a
            unit impulse.
        """
        n, c = self.size, self.size // 2
        radius = int(4.0 * self.sigma + 0.5)  # scipy's gaussian_filter1d, truncate=4
        j = torch.arange(-radius, radius + 1, dtype=torch.float64)
        w = torch.exp(-0.5 * (j / self.sigma) ** 2)
        w = w / w.sum()
        # position i + j reflects onto the centre c exactly when (i + j) mod 2n is c or 2n-1-c
        # (half-sample symmetric extension, period 2n): each offset feeds at most two taps
        out = torch.zeros(n, dtype=torch.float64)
        jj = j.long()
        for image in (c, 2 * n - 1 - c):
            i = (image - jj) % (2 * n)
            inside = i < n
            out.index_add_(0, i[inside], w[inside])
        return out

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = Layout(str(layout))
        k = self.kernel().to(device=x.device, dtype=x.dtype).reshape(1, 1, -1)
        r = self.size // 2
        out = x
        for dim in lay.spatial_axes:
            moved = out.movedim(dim, -1)
            lead, n = moved.shape[:-1], moved.shape[-1]
            res = F.conv1d(moved.reshape(-1, 1, n), k, padding=r)
            out = res.reshape(*lead, n).movedim(-1, dim)
        return out.contiguous()

    def __repr__(self) -> str:
        return f"RiseBlur(sigma={self.sigma!r}, size={self.size!r})"


class NoisyLinearImputation(Substrate):
    """ROAD's noisy linear imputation: removed values solve a neighbourhood-average equation.

    Each removed value equals the weighted mean of its in-bounds neighbours (weight ``1/m`` for
    a neighbour offset along ``m`` spatial axes: direct 1, diagonal 1/2, as ROAD's 1/6 and 1/12),
    per channel; the sparse symmetric system is solved by batched conjugate gradients on the
    input's device, then Gaussian noise of std ``noise`` is added to the imputed values. On a
    signal this is linear interpolation between the kept neighbours (constant beyond the ends).
    A row with nothing kept is imputed with zeros. Mask-aware (mask: 1 = keep).

    Parameters
    ----------
    noise : float, default 0.01
        Standard deviation of the noise added to imputed values (ROAD's default).
    generator : torch.Generator, optional
        Source of the noise; the draws depend on the chunking (``batch_size``).
    max_iter : int, default 2000
        Maximum conjugate-gradient iterations per call.
    tol : float, default 1e-10
        Relative residual ``||r|| / ||r_0||`` at which conjugate gradients stop. The tolerance
        used is dtype-aware, ``max(tol, 10 * torch.finfo(x.dtype).eps)`` (see
        :meth:`effective_tol`): about ``1.2e-6`` in float32, where ``1e-10`` is below round-off
        and could never be reached (every call would run ``max_iter`` iterations), and ``tol``
        itself in float64. A row whose search direction degenerates at round-off level
        (``p.Ap <= 0``) also stops.

    References
    ----------
    Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods"
    (ROAD), ICML 2022.
    """

    needs_mask: ClassVar[bool] = True
    is_random: ClassVar[bool] = True

    def __init__(
        self,
        noise: float = 0.01,
        *,
        generator: torch.Generator | None = None,
        max_iter: int = 2000,
        tol: float = 1e-10,
    ) -> None:
        self.noise = check_float(noise, "noise", low=0.0)
        self.generator = check_generator(generator)
        self.max_iter = check_int(max_iter, "max_iter", low=1)
        self.tol = check_float(tol, "tol", low=0.0)

    @staticmethod
    def _shift(t: torch.Tensor, offset: tuple[int, ...]) -> torch.Tensor:
        """``out[p] = t[p + offset]`` along the trailing axes, zero outside."""
        d = len(offset)
        pad: list[int] = []
        for o in reversed(offset):
            pad += [max(-o, 0), max(o, 0)]
        out = F.pad(t, pad)
        for i, o in enumerate(offset):
            dim = t.ndim - d + i
            out = out.narrow(dim, max(o, 0), t.shape[dim])
        return out

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            raise ParameterError(
                "NoisyLinearImputation is mask-aware: call it as substrate(x, layout, mask)."
            )
        lay = Layout(str(layout))
        spatial = lay.spatial_axes
        d = len(spatial)
        # move spatial axes last
        rest = [i for i in range(x.ndim) if i not in spatial]
        perm = rest + list(spatial)
        inv = [perm.index(i) for i in range(x.ndim)]
        v = x.permute(perm)
        known = torch.broadcast_to(mask >= 0.5, x.shape).permute(perm).to(x.dtype)
        unknown = 1 - known
        offsets = [o for o in product((-1, 0, 1), repeat=d) if any(o)]
        weights = [1.0 / sum(1 for c in o if c) for o in offsets]
        ones = torch.ones_like(v)
        diag = sum(w * self._shift(ones, o) for o, w in zip(offsets, weights, strict=True))
        rhs = unknown * sum(w * self._shift(v * known, o) for o, w in zip(offsets, weights, strict=True))

        def apply(p: torch.Tensor) -> torch.Tensor:
            p = p * unknown
            return unknown * (
                diag * p - sum(w * self._shift(p, o) for o, w in zip(offsets, weights, strict=True))
            )

        rows = v.shape[0]
        dims = tuple(range(1, v.ndim))
        sol = torch.zeros_like(v)
        res = rhs.clone()
        p = res.clone()
        rr = (res * res).sum(dims)
        # a relative residual of 1 or more is met before the first iteration: capping tol at 1
        # changes nothing but keeps tol ** 2 finite
        tol = min(self.effective_tol(x.dtype), 1.0)
        stop = (tol**2) * rr.clamp_min(torch.finfo(x.dtype).tiny)
        shape = (rows,) + (1,) * (v.ndim - 1)
        broken = torch.zeros_like(rr, dtype=torch.bool)
        for _ in range(self.max_iter):
            # rows that have converged are frozen: iterating on a residual at round-off level
            # (float32) makes alpha/beta blow up to inf/NaN while other rows still iterate
            active = (rr > stop) & ~broken
            if not bool(active.any()):
                break
            ap = apply(p)
            pap = (p * ap).sum(dims)
            ok = active & (pap > 0)
            # p.Ap <= 0 only happens at round-off level (the system is positive definite on the
            # unknowns): such a row cannot progress any more, so it stops instead of idling
            broken = broken | (active & ~ok)
            alpha = torch.where(ok, rr / torch.where(ok, pap, torch.ones_like(pap)), torch.zeros_like(pap))
            sol = sol + alpha.reshape(shape) * p
            res = res - alpha.reshape(shape) * ap
            rr_new = (res * res).sum(dims)
            beta = torch.where(ok, rr_new / torch.where(ok, rr, torch.ones_like(rr)), torch.zeros_like(rr))
            p = torch.where(ok.reshape(shape), res + beta.reshape(shape) * p, p)
            rr = torch.where(ok, rr_new, rr)
        if self.noise > 0:
            g = make_generator(self.generator)  # local: the substrate object is never changed
            eps = torch.randn(v.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)
            sol = sol + self.noise * eps * unknown
        out = known * v + unknown * sol
        return out.permute(inv).contiguous()

    def effective_tol(self, dtype: torch.dtype) -> float:
        """The relative residual at which conjugate gradients stop for inputs of ``dtype``:
        ``max(tol, 10 * eps)`` with ``eps = torch.finfo(dtype).eps``."""
        return max(self.tol, 10.0 * torch.finfo(dtype).eps)

    def __repr__(self) -> str:
        return f"NoisyLinearImputation(noise={self.noise!r}, max_iter={self.max_iter!r}, tol={self.tol!r})"
