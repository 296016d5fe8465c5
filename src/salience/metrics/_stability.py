"""The loop behind :mod:`salience.metrics.stability`: perturbed copies of each sample, explained
chunk by chunk with the target bound at ``x``, compared with the explanation at ``x``.

Copy ``j`` of sample ``i`` is row ``i * n + j``; rows are drawn, explained, run through the model
(outputs, a layer's activations) and reduced to one ratio each, at most ``batch_size`` rows at a
time, so memory is bounded by ``batch_size`` and not by ``B * n``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._progress import progress_bar
from .._validation import (
    check_batch_size,
    check_bool,
    check_float,
    check_generator,
    check_option,
    make_generator,
)
from ..domains.base import as_domain
from ..engine import Explainer, ScoreFunction, default_batch_size
from ..errors import NumericalError, ParameterError, SalienceError, ShapeError, current_caller
from ..layout import Layout
from ..targets import TargetLike
from ._checks import check_count, check_explainer, check_forward, check_rows, check_values, check_x, unpack
from ._reexplain import explain_with, reexplainer
from ._setup import prepare


@dataclass
class Rows:
    """One chunk of perturbed copies: what the ratio of each metric reads."""

    samples: torch.Tensor  # (R,) the sample of each row
    z: torch.Tensor  # (R, *Z) the unperturbed point, in the perturbed space (x or a domain's coefficients)
    zp: torch.Tensor  # (R, *Z) the perturbed point, same space
    ref: torch.Tensor  # (R, *A) the explanation at x
    expl: torch.Tensor  # (R, *A) the explanation of the perturbed input
    out: torch.Tensor | None  # (R, O) the model's output at x (flattened), if asked for
    outp: torch.Tensor | None  # (R, O) the output at the perturbed input
    act: torch.Tensor | None  # (R, L) the layer's activations at x (flattened), if asked for
    actp: torch.Tensor | None  # (R, L) the activations at the perturbed input


def relative(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """``||(a - b) / a||_2`` per row, an element where ``a`` is 0 divided by ``eps`` instead
    (Agarwal et al.'s relative change, as Quantus computes it)."""
    den = torch.where(a == 0, torch.full_like(a, eps), a)
    return torch.linalg.vector_norm(((a - b) / den).reshape(a.shape[0], -1), dim=1)


def distance(a: torch.Tensor, b: torch.Tensor, ord: float = 2.0) -> torch.Tensor:
    """``||a - b||_ord`` per row (flattened)."""
    return torch.linalg.vector_norm((a - b).reshape(a.shape[0], -1), ord=ord, dim=1)


def need_model(model: Any, explainer: Any) -> Any:
    """The model for the metric's own model calls: ``model``, else the Explainer's."""
    if model is None and isinstance(explainer, Explainer):
        model = explainer.model
    if model is None:
        raise ParameterError(
            f"{current_caller()} calls the model (its outputs, layer or predicted class) and the explainer is "
            f"a plain callable; pass the model as model=..."
        )
    return model


def rows_per_call(explainer: Any, batch_size: int | None, x: torch.Tensor) -> int:
    """Rows per explainer and model call: ``batch_size``, else the Explainer's, else the default."""
    if batch_size is not None:
        return batch_size
    return getattr(explainer, "batch_size", None) or default_batch_size(int(x[0].numel()), x.device)


def flat_prediction(out: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row: argmax over the flattened output."""
    return out.reshape(out.shape[0], -1).argmax(1)


def run(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    n: int,
    draw: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor],
    ratio: Callable[[Rows], torch.Tensor],
    attribution: Any,
    model: Any,
    output: Any,
    outputs: bool,
    layer: Any,
    keep_prediction: bool,
    domain: Any,
    layout: Any,
    batch_size: int | None,
    progress: bool,
    forward_args: Sequence[Any],
    forward_kwargs: Mapping[str, Any] | None,
) -> torch.Tensor:
    """The ratio of every perturbed copy, shape (B, n); NaN where ``keep_prediction`` drops it.

    ``draw(z_rows, samples, start, stop)`` perturbs the rows ``start..stop`` (``z_rows`` are the
    unperturbed points of their samples, in the domain's coefficients when ``domain`` is given).
    The explainer runs on the perturbed input (mapped back through the domain's inverse, plus
    the residual of a lossy domain); the model (``model``, else the Explainer's) is called only
    when ``outputs``, ``layer`` or ``keep_prediction`` ask for it.
    """
    x = check_x(x)
    check_explainer(explainer)
    check_forward(forward_args, forward_kwargs, x.shape[0])
    b = x.shape[0]
    check_rows(b, n, "n_perturbations")
    if attribution is None:
        ref, explained = explain_with(explainer, x, target, forward_args, forward_kwargs)
    else:
        ref, explained, _ = unpack(attribution, target, None)
        if ref.shape[0] != b:
            raise ShapeError(
                f"{current_caller()}: the attribution must hold one map per input, {b} here. Got shape "
                f"{tuple(ref.shape)} instead."
            )
    bound = explained if target is None else target
    lay = Layout.infer(x, layout if layout is not None else getattr(explainer, "layout", None))
    rows = rows_per_call(explainer, batch_size, x)

    z, back = x, None
    if domain is not None:
        d = as_domain(domain, current_caller()).bind(x, lay)
        with torch.no_grad():
            z = d.forward(x).detach()
            if not isinstance(z, torch.Tensor) or z.shape[0] != b or z.is_complex():
                raise ShapeError(
                    f"{current_caller()}: {d.name}.forward(x) must return real coefficients (B, ...)."
                )
            residual = None if d.exact else x - d.inverse(z, torch.arange(b, device=x.device))

        def back(zp: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                xp = d.inverse(zp, samples).detach().to(x.dtype)
            return xp if residual is None else xp + residual[samples]

    score: ScoreFunction | None = None
    module = None
    out_x = act_x = pred_x = None
    if outputs or layer is not None or keep_prediction:
        _, _, score = prepare(
            need_model(model, explainer),
            x,
            bound,
            batch_size=rows,
            layout=lay,
            output=output if output is not None else getattr(explainer, "output", None),
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        out_x = score.reference_output().reshape(b, -1)
        pred_x = out_x.argmax(1)
        if layer is not None:
            module = score.find_layer(layer)[1]
            act_x = score.layer_gradients(module, grad=False)[1].reshape(b, -1)

    explain = reexplainer(explainer, x, bound, forward_args, forward_kwargs)
    total, parts = b * n, []
    with progress_bar(total, f"{current_caller()} perturbations", progress) as bar:
        for start in range(0, total, rows):
            stop = min(total, start + rows)
            samples = torch.arange(start, stop, device=x.device) // n
            zs = z[samples]
            zp = draw(zs, samples, start, stop)
            xp = zp if back is None else back(zp, samples)
            e = check_values(explain(xp, samples), "the explanations of the perturbed copies")
            if e.shape != (stop - start, *ref.shape[1:]):
                raise ShapeError(
                    f"{current_caller()}: the explanations of {stop - start} perturbed copies have shape "
                    f"{tuple(e.shape)}, but the attribution at x has shape {tuple(ref.shape)}; "
                    f"expected {(stop - start, *ref.shape[1:])}."
                )
            outp = actp = None
            if score is not None:
                sub = score.retarget(
                    score.target,
                    xp,
                    score.sample_map[samples],
                    parents=samples,
                    target_map=score.target_map[samples],
                )
                outp = sub.reference_output().reshape(stop - start, -1)
                if module is not None:
                    actp = sub.layer_gradients(module, grad=False)[1].reshape(stop - start, -1)
            sel = samples.to(ref.device)
            chunk = Rows(
                samples=samples,
                z=zs,
                zp=zp,
                ref=ref[sel],
                expl=e.to(ref.device, ref.dtype),
                out=None if out_x is None else out_x[samples],
                outp=outp,
                act=None if act_x is None else act_x[samples],
                actp=actp,
            )
            r = ratio(chunk)
            if keep_prediction and outp is not None and pred_x is not None:
                same = flat_prediction(outp).to(r.device) == pred_x[samples].to(r.device)
                r = torch.where(same, r, torch.full_like(r, torch.nan))
            parts.append(r.to(x.device))
            bar.update(stop - start)
    values = torch.cat(parts).reshape(b, n)
    if bool(torch.isinf(values).any()):
        bad = torch.isinf(values).any(1).nonzero().flatten().tolist()
        raise NumericalError(
            f"{current_caller()}: the result overflowed {values.dtype} (inf) for sample(s) {bad}; the "
            "explanations (or their differences) are too large for the norms in this dtype."
        )
    return values


def present(t: torch.Tensor | None) -> torch.Tensor:
    """A tensor the chunk must hold (the run was asked for it)."""
    if t is None:
        raise SalienceError(f"{current_caller()}: internal error, a model output was not recorded.")
    return t


def nanmax(values: torch.Tensor) -> torch.Tensor:
    """Per-row maximum over the finite entries (B, n) -> (B,); NaN where none is."""
    kept = ~torch.isnan(values)
    out = torch.where(kept, values, torch.full_like(values, -torch.inf)).amax(1)
    return torch.where(kept.any(1), out, torch.full_like(out, torch.nan))


def check_perturbation(p: Any) -> torch.Tensor | None:
    if p is None:
        return None
    if not isinstance(p, torch.Tensor):
        raise ParameterError(
            f"The 'perturbation' parameter of {current_caller()} must be None or a tensor (B, n_perturbations, *S) "
            f"of additive noise. Got {type(p).__name__} instead."
        )
    return check_values(p, "the perturbation tensor", min_ndim=3)


def noise_rows(
    noise: str, scale: float, perturbation: torch.Tensor | None, gen: torch.Generator, b: int, n: int
) -> Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]:
    """Rows ``start..stop`` plus their noise: the given tensor's rows, or one draw per row in row
    order (``torch.randn``/``torch.rand`` of one sample's shape), whatever the chunking."""

    def draw(zs: torch.Tensor, samples: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        shape = zs.shape[1:]
        if perturbation is not None:
            if perturbation.shape != (b, n, *shape):
                raise ShapeError(
                    f"{current_caller()}: the perturbation tensor must have shape {(b, n, *shape)} "
                    f"(B, n_perturbations, *S; S the domain's coefficients with domain=). Got "
                    f"{tuple(perturbation.shape)} instead."
                )
            return zs + perturbation.reshape(-1, *shape)[start:stop].to(zs.device, zs.dtype)
        rand = torch.randn if noise == "gaussian" else torch.rand
        draws = torch.stack(
            [rand(shape, generator=gen, device=gen.device, dtype=zs.dtype) for _ in range(stop - start)]
        ).to(zs.device)
        return zs + scale * (draws if noise == "gaussian" else 2 * draws - 1)

    return draw


def noise_args(
    n_perturbations: Any, noise: Any, scale: Any, keep_prediction: Any, progress: Any, batch_size: Any
) -> tuple[int, str, float, bool, bool, int | None]:
    n = check_count(n_perturbations, "n_perturbations")
    noise = check_option(noise, "noise", options=("gaussian", "uniform"))
    scale = check_float(scale, "scale", low=0.0, closed="right")
    return (
        n,
        noise,
        scale,
        check_bool(keep_prediction, "keep_prediction"),
        check_bool(progress, "progress"),
        check_batch_size(batch_size),
    )


def noisy(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike,
    ratio: Callable[[Rows], torch.Tensor],
    kw: dict[str, Any],
    *,
    outputs: bool = False,
    layer: Any = None,
) -> torch.Tensor:
    """The shared body of the noise-based metrics: validated options, the (B, n) ratios, their max."""
    n, noise, scale, keep, progress, batch_size = noise_args(
        kw["n_perturbations"],
        kw["noise"],
        kw["scale"],
        kw["keep_prediction"],
        kw["progress"],
        kw["batch_size"],
    )
    gen = make_generator(check_generator(kw["generator"]))
    x = check_x(x)
    draw = noise_rows(noise, scale, check_perturbation(kw["perturbation"]), gen, x.shape[0], n)
    values = run(
        explainer,
        x,
        target,
        n=n,
        draw=draw,
        ratio=ratio,
        attribution=kw["attribution"],
        model=kw["model"],
        output=kw["output"],
        outputs=outputs,
        layer=layer,
        keep_prediction=keep,
        domain=kw["domain"],
        layout=kw["layout"],
        batch_size=batch_size,
        progress=progress,
        forward_args=kw["forward_args"],
        forward_kwargs=kw["forward_kwargs"],
    )
    return nanmax(values)


def check_eps(eps_min: Any) -> float:
    return check_float(eps_min, "eps_min", low=0.0, closed="right")


def check_layer(layer: Any) -> str | nn.Module:
    if isinstance(layer, (str, nn.Module)) and not isinstance(layer, bool):
        return layer
    raise ParameterError(
        f"The 'layer' parameter of {current_caller()} must be a module of the model or its dotted name "
        f"(see salience.layers(model, x)). Got {type(layer).__name__} instead."
    )
