"""The domain checks: the contract every salience Domain, built-in or your own, satisfies."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch

from .. import InDomain, IntegratedGradients, Layout, NotFittedError
from ..domains import Domain, as_domain
from ._common import CheckFailed, attribute_changes, difference, snapshot, tensor_changes
from ._models import toy_model

__all__ = ["DOMAIN_CHECKS", "Setup"]


class Setup:
    def __init__(
        self,
        domain: Any,
        x: torch.Tensor | None,
        model: Any,
        target: int,
        tol: float,
        n_steps: int,
        completeness_tol: float,
        seed: int,
    ) -> None:
        if x is None:
            x = torch.randn(3, 3, 24, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(
                "x must be a floating-point tensor with a batch of at least 2 samples; got "
                f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}."
            )
        self.original = domain
        self.x = x.detach().to(torch.float64)
        self.model = model
        self.target, self.tol, self.n_steps, self.completeness_tol, self.seed = (
            target,
            tol,
            n_steps,
            completeness_tol,
            seed,
        )
        self.scale = max(1.0, float(self.x.abs().max()))
        self._fitted: Domain | None = None

    @property
    def name(self) -> str:
        return as_domain(self.original, "salience.testing").name

    def domain(self) -> Domain:
        """A fitted private copy of the user's domain (fitted on x, once, if it must be)."""
        if self._fitted is None:
            d = copy.deepcopy(as_domain(self.original, "salience.testing"))
            try:
                d.bind(self.x)
            except NotFittedError:
                _quiet_fit(d, self.x)
            self._fitted = d
        return copy.deepcopy(self._fitted)

    def layout(self, x: torch.Tensor, d: Domain) -> Layout:
        return Layout.infer(x, d.layout)

    def randn(self, shape: torch.Size, offset: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + offset)
        return torch.randn(tuple(shape), generator=g, dtype=torch.float64).to(self.x.device)


def _quiet_fit(d: Domain, x: torch.Tensor) -> None:
    """Fit the kit's own copy (a learned domain fitted on a few samples may warn, e.g. FastICA)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d.fit(x)


def _fail(check: str, s: Setup, problem: str) -> CheckFailed:
    return CheckFailed(check, f"domain {s.name}", problem)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


# ------------------------------------------------------------------------------------- the checks
def check_shapes_dtypes(s: Setup) -> None:
    name = "shapes_dtypes"
    for dtype in (torch.float64, torch.float32):
        d, x = s.domain(), s.x.to(dtype)
        bound = d.bind(x)
        z = bound.forward(x)
        if not isinstance(z, torch.Tensor) or z.is_complex() or z.ndim < 1 or z.shape[0] != x.shape[0]:
            got = f"{tuple(z.shape)} {z.dtype}" if isinstance(z, torch.Tensor) else type(z).__name__
            raise _fail(
                name,
                s,
                f"expected forward(x) to return real coefficients with the batch axis first "
                f"({x.shape[0]} rows); found {got}.",
            )
        if z.dtype != dtype:
            raise _fail(name, s, f"expected forward to keep the input's dtype {dtype}; found {z.dtype}.")
        if isinstance(s.original, Domain):  # duck-typed domains may return any axes (b c z0 z1 ...)
            z_layout = bound.output_layout(s.layout(x, bound))
            if z_layout.ndim != z.ndim:
                raise _fail(
                    name,
                    s,
                    f"expected forward(x) to have one axis per name of output_layout() "
                    f"({z_layout!r}); found shape {tuple(z.shape)}.",
                )
        back = bound.inverse(z)
        if not isinstance(back, torch.Tensor) or back.shape != x.shape or back.dtype != dtype:
            got = (
                f"{tuple(back.shape)} {back.dtype}" if isinstance(back, torch.Tensor) else type(back).__name__
            )
            raise _fail(
                name,
                s,
                f"expected inverse(forward(x)) of the input's shape and dtype "
                f"({tuple(x.shape)} {dtype}); found {got}.",
            )


def check_round_trip(s: Setup) -> None:
    name = "round_trip"
    d, x = s.domain(), s.x
    bound = d.bind(x)
    z = bound.forward(x)
    back = bound.inverse(z)
    atol = s.tol * s.scale
    if bool(getattr(d, "exact", False)):
        if not torch.allclose(back, x, rtol=0, atol=atol):
            raise _fail(
                name,
                s,
                f"the domain declares exact=True: expected inverse(forward(x)) == x within "
                f"{atol:.1g} (float64); found {difference(back, x)}.",
            )
        again = bound.forward(back)
        if not torch.allclose(again, z, rtol=0, atol=10 * atol * max(1.0, float(z.abs().max()) / s.scale)):
            raise _fail(
                name,
                s,
                f"expected forward(inverse(z)) == z on the coefficients of x; found {difference(again, z)}.",
            )
    else:
        # a lossy domain projects: reconstructing a reconstruction changes nothing
        twice = bound.inverse(d.bind(back).forward(back))
        if not torch.allclose(twice, back, rtol=0, atol=atol):
            raise _fail(
                name,
                s,
                "the domain declares exact=False: expected inverse(forward(.)) to be a "
                f"projection (applying it twice changes nothing); found {difference(twice, back)}.",
            )


def check_adjoint(s: Setup) -> None:
    """Autograd's vector-Jacobian product of ``inverse`` against its directional derivative."""
    name = "adjoint"
    d, x = s.domain(), s.x
    bound = d.bind(x)
    z = bound.forward(x).detach()
    index = torch.arange(x.shape[0] - 1, -1, -1, device=x.device)  # rows of other points, as the engine does
    zr = z.flip(0)
    v = s.randn(z.shape, 1) * max(1.0, float(z.abs().max()))
    w = s.randn(x.shape, 2)

    def inv(rows: torch.Tensor) -> torch.Tensor:
        return bound.inverse(rows, index)

    def vjp(at: torch.Tensor) -> torch.Tensor:
        leaf = at.detach().clone().requires_grad_(True)
        out = inv(leaf)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise _fail(
                name,
                s,
                "expected inverse(z) to be differentiable in z (torch operations only); "
                "found an output without a gradient.",
            )
        (g,) = torch.autograd.grad(out, leaf, grad_outputs=w.to(out.dtype), allow_unused=True)
        return torch.zeros_like(leaf) if g is None else g

    jt_w = vjp(zr)
    rhs = _dot(v, jt_w)
    with torch.no_grad():
        if bool(getattr(d, "affine", False)):
            jv = inv(zr + v) - inv(zr)
            lhs, rtol, how = (
                _dot(jv, w),
                1e-9,
                "inverse(z + v) - inverse(z) (the domain declares affine=True)",
            )
            jv2 = inv(zr + 2 * v) - inv(zr)
            if not torch.allclose(jv2, 2 * jv, rtol=1e-9, atol=1e-9 * float(jv.abs().max() + 1)):
                raise _fail(
                    name,
                    s,
                    "the domain declares affine=True: expected inverse(z + 2v) - inverse(z) "
                    f"== 2 (inverse(z + v) - inverse(z)); found {difference(jv2, 2 * jv)}.",
                )
        else:
            h = 1e-6
            jv = (inv(zr + h * v) - inv(zr - h * v)) / (2 * h)
            lhs, rtol, how = _dot(jv, w), 1e-5, "the central difference of inverse along v"
    if abs(lhs - rhs) > rtol * max(1.0, abs(lhs), abs(rhs)):
        raise _fail(
            name,
            s,
            f"expected <J v, w> = <v, J^T w> with J v from {how} and J^T w from autograd "
            f"(the adjoint IG and the explainers' gradients use); found {lhs:.12g} vs {rhs:.12g}.",
        )
    if bool(getattr(d, "affine", False)):
        other = vjp(zr + v)
        if not torch.allclose(other, jt_w, rtol=1e-9, atol=1e-12 * max(1.0, float(jt_w.abs().max()))):
            raise _fail(
                name,
                s,
                "the domain declares affine=True: expected the same J^T w at every z; found "
                f"{difference(other, jt_w)}.",
            )


def check_reduce(s: Setup) -> None:
    name = "reduce"
    d, x = s.domain(), s.x
    bound = d.bind(x)
    z = bound.forward(x)
    z_layout = bound.output_layout(s.layout(x, bound))
    if z_layout.ndim != z.ndim:
        return  # a duck-typed domain without output_layout: nothing to reduce by name
    values = s.randn(z.shape, 3)
    out, layout = bound.reduce(values, z_layout)
    if out.ndim != Layout(str(layout)).ndim or out.shape[0] != x.shape[0]:
        raise _fail(
            name,
            s,
            f"expected reduce() to return values with the batch axis first and one axis per "
            f"name of its layout ({layout!r}); found shape {tuple(out.shape)}.",
        )
    a, b = out.flatten(1).sum(1), values.flatten(1).sum(1)
    if not torch.allclose(a, b, rtol=1e-10, atol=1e-10):
        raise _fail(
            name,
            s,
            "expected reduce() to sum coordinates into units (each sample's total kept, so "
            f"completeness holds); found totals {a.tolist()} for {b.tolist()}.",
        )


def check_input_unchanged(s: Setup) -> None:
    name = "input_unchanged"
    x = s.x.clone()
    version = x._version
    _quiet_fit(copy.deepcopy(as_domain(s.original, "salience.testing")), x)
    found = tensor_changes(x, s.x, version, "the input")
    if found:
        raise _fail(name, s, "expected fit(x) to leave x as it was; found " + "; ".join(found) + ".")
    d = s.domain()
    before = snapshot(d)
    bound = d.bind(x)
    z = bound.forward(x)
    z_copy, z_version = z.detach().clone(), z._version
    bound.inverse(z)
    found = tensor_changes(x, s.x, version, "the input")
    found += [f"inverse(z) {f}" for f in tensor_changes(z, z_copy, z_version, "z")]
    found += [f"bind(x) left the domain itself changed: {f}" for f in attribute_changes(d, before)]
    if found:
        raise _fail(
            name,
            s,
            "expected bind, forward and inverse to leave their arguments and the domain as "
            "they were; found " + "; ".join(found) + ".",
        )


def check_batch_invariance(s: Setup) -> None:
    name = "batch_invariance"
    d, x = s.domain(), s.x
    bound = d.bind(x)
    z = bound.forward(x)
    back = bound.inverse(z)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        one = d.bind(xi)
        zi = one.forward(xi)
        if not torch.allclose(zi, z[i : i + 1], rtol=1e-10, atol=s.tol * s.scale):
            raise _fail(
                name,
                s,
                f"expected forward of sample {i} alone to equal its row of forward(x) (a "
                f"sample's coefficients must not depend on the batch); found {difference(zi, z[i : i + 1])}.",
            )
        bi = one.inverse(zi)
        if not torch.allclose(bi, back[i : i + 1], rtol=1e-10, atol=s.tol * s.scale):
            raise _fail(
                name,
                s,
                f"expected inverse of sample {i} alone to equal its row of inverse(z); found "
                f"{difference(bi, back[i : i + 1])}.",
            )


def check_explainer_in_domain(s: Setup) -> None:
    name = "explainer_in_domain"
    x = s.x
    model = s.model
    if model is None:
        if x.ndim not in (3, 4, 5):
            raise ValueError(
                "pass model= to check a domain on inputs that are not (N, C, T), (N, C, H, W) or "
                f"(N, C, T, H, W); got shape {tuple(x.shape)}."
            )
        model = toy_model(x.ndim - 2, in_channels=x.shape[1], device=x.device)
    gaps = []
    for n in (4, s.n_steps):
        d = s.domain()
        attr = InDomain(IntegratedGradients(model, n_steps=n, rule="riemann_trapezoid"), d).explain(
            x, s.target
        )
        if (
            not torch.isfinite(attr.values).all()
            or attr.delta is None
            or not torch.isfinite(attr.delta).all()
        ):
            raise _fail(
                name,
                s,
                f"expected finite IG attributions and delta in the domain; found values with "
                f"{int((~torch.isfinite(attr.values)).sum())} NaN/inf and delta {attr.delta}.",
            )
        bound = d.bind(x)
        with torch.no_grad():
            z = bound.forward(x)
            x0 = bound.inverse(torch.zeros_like(z))
            if not bool(getattr(bound, "exact", False)):
                x0 = x0 + (x - bound.inverse(z))
            f = model(x)[:, s.target] - model(x0)[:, s.target]
        gap = attr.values.flatten(1).sum(1) - f
        if not torch.allclose(gap, attr.delta, rtol=0, atol=1e-9 * max(1.0, float(f.abs().max()))):
            raise _fail(
                name,
                s,
                f"expected Attribution.delta to be sum(attr) - (f(x) - f(x0)) with x0 = "
                f"inverse(0) (+ the residual of a lossy domain); found delta {attr.delta.tolist()} for "
                f"{gap.tolist()}.",
            )
        gaps.append((float(gap.abs().max()), float(f.abs().max())))
    (coarse, _), (fine, size) = gaps
    if fine > s.completeness_tol * max(1.0, size):
        raise _fail(
            name,
            s,
            f"expected IG completeness within {s.completeness_tol:g} with {s.n_steps} steps "
            f"(|sum(attr) - (f(x) - f(x0))|); found a gap of {fine:.3g}.",
        )
    if fine > coarse / 4 and fine > 1e-9 * max(1.0, size):
        raise _fail(
            name,
            s,
            f"expected IG's completeness gap to shrink with more steps; found {coarse:.3g} with "
            f"4 steps and {fine:.3g} with {s.n_steps}.",
        )


#: the domain checks in the order they run: name -> function(setup)
DOMAIN_CHECKS: dict[str, Callable[[Setup], None]] = {
    "shapes_dtypes": check_shapes_dtypes,
    "round_trip": check_round_trip,
    "adjoint": check_adjoint,
    "reduce": check_reduce,
    "input_unchanged": check_input_unchanged,
    "batch_invariance": check_batch_invariance,
    "explainer_in_domain": check_explainer_in_domain,
}
