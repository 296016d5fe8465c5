"""The mask-update chain of Thakur & Fischmeister (ICPR 2020), vectorised across the batch."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._progress import progress_bar
from .._validation import check_bool, check_float, check_generator, check_int, check_option, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction, own_thread
from ..errors import ModelOutputError
from ..layout import LayoutLike
from ..masking import Filler, GridMasker, SubstrateLike
from ..masking.maskers import AxisSizes
from ..targets import Probability
from ._perturbation import check_substrate

__all__ = ["MaskUpdate"]

#: torch functions whose result is a probability (by ``__name__``: torch.sigmoid, Tensor.sigmoid,
#: F.sigmoid, torch.special.expit, torch.softmax, Tensor.softmax, F.softmax)
_PROBABILITY_FUNCTIONS = frozenset({"sigmoid", "sigmoid_", "special_expit", "softmax"})
#: functions that keep the values of their first argument (views, indexing, dtype/device copies)
_SAME_VALUES = frozenset(
    {
        "__getitem__",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "squeeze",
        "unsqueeze",
        "flatten",
        "unflatten",
        "select",
        "narrow",
        "permute",
        "transpose",
        "t",
        "movedim",
        "swapaxes",
        "contiguous",
        "clone",
        "detach",
        "to",
        "float",
        "double",
        "half",
        "bfloat16",
        "type_as",
        "cpu",
        "cuda",
        "expand",
        "expand_as",
    }
)
#: functions that join a sequence of tensors (a probability only if every part is one)
_JOINS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})


class _ProbabilityOps(TorchFunctionMode):
    """Remembers, during one pass, the tensors made by a sigmoid or softmax and the views and
    copies of them, so that a model whose forward ends in ``torch.sigmoid(...)`` (no module)
    is recognised as returning probabilities. Nothing it sees is changed."""

    def __init__(self) -> None:
        super().__init__()
        # id -> weak reference: nothing is kept alive (attention maps of a transformer are
        # softmax outputs too), and a reused id is told apart by its dead reference
        self.made: dict[int, weakref.ref[torch.Tensor]] = {}

    def holds(self, t: Any) -> bool:
        ref = self.made.get(id(t)) if isinstance(t, torch.Tensor) else None
        return ref is not None and ref() is t

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and args:
            name = getattr(func, "__name__", "")
            first = args[0]
            if (
                name in _PROBABILITY_FUNCTIONS
                or (name in _SAME_VALUES and self.holds(first))
                or (
                    name in _JOINS
                    and isinstance(first, (list, tuple))
                    and first
                    and all(map(self.holds, first))
                )
            ):
                self.made[id(out)] = weakref.ref(out)
        return out


class _HeadProbe:
    """Pass context: records, for each call of an ``nn.Module`` model, whether its output is a
    tensor made by a sigmoid/softmax in its forward (functional heads such as
    ``return torch.sigmoid(self.fc(h))``). Plain callables are not inspected."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    @contextmanager
    def __call__(self, model: Any) -> Iterator[None]:
        if not isinstance(model, nn.Module):
            yield
            return
        ops = _ProbabilityOps()

        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            self.calls.append(ops.holds(out))
            ops.made.clear()  # the next chunk starts afresh

        handle = model.register_forward_hook(own_thread(hook))
        try:
            with ops:
                yield
        finally:
            handle.remove()
            ops.made.clear()

    @property
    def found(self) -> bool:
        return bool(self.calls) and all(self.calls)


def _rows_sum_to_one(out: torch.Tensor) -> bool:
    """Whether a model output (B, K, ...) with K >= 2 holds probabilities over its class axis:
    values in [0, 1] summing to 1 along axis 1 (a softmax computed anywhere, predict_proba)."""
    if out.ndim < 2 or out.shape[1] < 2 or not out.is_floating_point():
        return False
    out = out.detach()
    tol = max(torch.finfo(out.dtype).eps ** 0.5, 1e-6)
    in_range = bool(((out >= -tol) & (out <= 1 + tol)).all())
    return in_range and bool(((out.sum(1, dtype=torch.float64) - 1).abs() <= tol * out.shape[1]).all())


class MaskUpdate(Explainer):
    """Saliency from a Markov chain of grid masks whose cells flip with probability ``1 - p``.

    The chain of Thakur & Fischmeister: a grid mask ``M`` (cells per named axis, upsampled and
    randomly shifted as in RISE) starts with each cell kept with probability ``init_keep``. At
    each step the score ``p = score(fill(x, U(M)))`` (a probability) is computed, and every cell
    keeps its state with probability ``p`` and flips with probability ``1 - p``; cells that become
    (or stay partly) on are damped to ``1 - lr * |p - p_prev|``. The freshly upsampled masks are
    summed, so masks that score high persist and dominate the sum. The map is the mean mask,
    post-processed as in the reference code (``postprocess=True``): ``relu(m - offset *
    mean(m))`` divided by its maximum.

    Deviations from the reference code, on purpose: the accumulator starts at zero (the original
    uses ``np.empty``); all samples of the batch (and ``n_chains`` independent chains per sample)
    advance together, one model call per step for all of them, instead of batch-1 calls; random
    numbers come from ``generator`` (one draw over all cells instead of separate draws for the on
    and off cells; same distribution, not bit-identical to the numpy code).

    Parameters
    ----------
    model : callable
    n_steps : int, default 5000
    cells : int or dict of str to int, optional
        Grid cells per axis name (default 8 per spatial axis, the paper's 8x8 grid).
    init_keep : float, default 0.3
        Probability that a cell starts on (the reference draws ``rand > 0.7``).
    lr : float, default 0.02
        Damping of newly-on cells, ``1 - lr * |dp|``.
    offset : float, default 1.0
        Post-processing constant ``k`` in ``m - k * mean(m)`` (1.0 in the notebook, 0.96 in the
        script).
    postprocess : bool, default True
        Apply ``relu(m - offset * mean(m)) / max``; False returns the mean mask (values in [0, 1]).
    n_chains : int, default 1
        Independent chains per sample; their mean masks are averaged.
    link : {None, "sigmoid", "clamp"}, default None
        How scores become flip probabilities. None requires the explained score to be a
        probability, and checks that it is one: the target is ``sl.Probability(k)``, or the
        model's output comes from a final Softmax/Sigmoid (an ``nn.Softmax``/``nn.Sigmoid``
        module, as :meth:`~salience.engine.ScoreFunction.final_activation` recognises it, or
        ``torch.softmax``/``torch.sigmoid`` at the end of an ``nn.Module``'s forward, so
        multi-label sigmoid heads qualify), or the output at ``x`` has rows of values in [0, 1]
        summing to 1 (a softmax computed elsewhere, scikit-learn's ``predict_proba``); and every
        score lies in [0, 1]. Otherwise (logits, even ones that happen to lie in [0, 1]) a
        ModelOutputError is raised. ``"sigmoid"`` squashes logits; ``"clamp"`` clips to [0, 1]
        and checks nothing else (for probabilities computed in a way salience cannot see).
    substrate : str, float or Substrate, default 0.0
        What masked values become (0 = the mean colour of normalised images, as in the paper).
    shift : bool, default True
        Random shift of the upsampled grid at every step (as the reference).
    generator : torch.Generator, optional
    progress : bool, default True
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *mask_shape), e.g. (B, 1, H, W).

    References
    ----------
    Thakur & Fischmeister, "A Generalizable Saliency Map-Based Interpretation of Model Outcome",
    ICPR 2020 (arXiv 2006.09504).

    Examples
    --------
    >>> import torch, salience as sl
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3), torch.nn.Softmax(-1)).eval()
    >>> mu = sl.MaskUpdate(model, n_steps=20, cells={"t": 5}, generator=torch.Generator().manual_seed(0),
    ...                    progress=False)
    >>> mu(torch.randn(2, 2, 20), target=1).shape
    (2, 1, 20)
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        n_steps: int = 5000,
        cells: AxisSizes | None = None,
        init_keep: float = 0.3,
        lr: float = 0.02,
        offset: float = 1.0,
        postprocess: bool = True,
        n_chains: int = 1,
        link: str | None = None,
        substrate: SubstrateLike = 0.0,
        shift: bool = True,
        generator: torch.Generator | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.n_steps = check_int(n_steps, "n_steps", low=1)
        self.cells = cells
        self.shift = check_bool(shift, "shift")
        self._masker()  # validates cells
        self.init_keep = check_float(init_keep, "init_keep", low=0.0, high=1.0)
        self.lr = check_float(lr, "lr", low=0.0, high=1.0)
        self.offset = check_float(offset, "offset")
        self.postprocess = check_bool(postprocess, "postprocess")
        self.n_chains = check_int(n_chains, "n_chains", low=1)
        self.link = check_option(link, "link", options=(None, "sigmoid", "clamp"))
        self.substrate = check_substrate(substrate)
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    def __repr__(self) -> str:
        return f"MaskUpdate(n_steps={self.n_steps}, cells={self.cells!r}, n_chains={self.n_chains})"

    def _masker(self) -> GridMasker:
        """The grid of cells (its ``p_keep`` is unused: the chain sets the cells)."""
        return GridMasker(self.cells, shift=self.shift)

    def _probability(self, s: torch.Tensor) -> torch.Tensor:
        if self.link == "sigmoid":
            return torch.sigmoid(s)
        if self.link == "clamp":
            return s.clamp(0.0, 1.0)
        if bool(((s < 0) | (s > 1)).any()):
            bad = s[(s < 0) | (s > 1)][0].item()
            raise ModelOutputError(
                f"MaskUpdate flips cells with probability 1 - p, so the explained score must be a "
                f"probability in [0, 1]; got {bad:.4g}. Explain target=sl.Probability(k) (or a model "
                "ending in softmax), or pass link='sigmoid' / link='clamp'."
            )
        return s

    def _first_step_score(self, score: ScoreFunction) -> tuple[ScoreFunction, Any]:
        """The score function of the chain's first step, and a check to run after it.

        With ``link=None`` the scores are used as flip probabilities, so they must be
        probabilities, which values in [0, 1] alone do not show (logits can lie there too).
        Certain without looking: a Probability target. Otherwise the output at ``x`` (one model
        call, reused for the recorded scores) is a probability vector when its rows sum to 1;
        failing that, the first step's model call reveals a final Softmax/Sigmoid, as a module
        (``final_activation``) or as a function at the end of the forward (``_HeadProbe``).
        """
        if self.link is not None or isinstance(score.target, Probability):
            return score, None
        if _rows_sum_to_one(score.reference_output()):
            return score, None
        heads: list[nn.Module] = []
        probe = _HeadProbe()
        watched = score.final_activation(strip=False, found=lambda _name, module: heads.append(module)).under(
            probe
        )

        def check(s: torch.Tensor) -> None:
            if heads and isinstance(heads[0], nn.LogSoftmax):
                raise ModelOutputError(
                    f"{self.name} flips cells with probability 1 - p, but the model ends in "
                    "LogSoftmax, so its outputs are log-probabilities. Explain "
                    "target=sl.Probability(k) on a model without the LogSoftmax, or pass "
                    "link='sigmoid' / link='clamp'."
                )
            if not heads and not probe.found:
                lo, hi = float(s.min()), float(s.max())
                raise ModelOutputError(
                    f"{self.name} flips cells with probability 1 - p, so with link=None the "
                    f"explained score must be a probability, but nothing shows that it is one "
                    f"(scores in [{lo:.4g}, {hi:.4g}]): the model's output does not come from a "
                    "final Softmax/Sigmoid (an nn.Softmax/nn.Sigmoid module, or torch.softmax/"
                    "torch.sigmoid at the end of an nn.Module's forward), its rows do not sum to "
                    "1, and the target is not sl.Probability(k). Explain target=sl.Probability(k) "
                    "for logits, pass link='sigmoid' to squash them, or link='clamp' if the "
                    "scores are probabilities computed in a way salience cannot see."
                )

        return watched, check

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        gen = make_generator(self.generator)
        lay = score.layout
        b, c = x.shape[0], self.n_chains
        r = b * c
        grid = self._masker().resolve(x.shape[1:], lay)
        filler = Filler(x, self.substrate, lay)
        dtype = x.dtype
        # chain j of sample i is row i * c + j
        u = torch.rand((r, *grid.grid_shape), generator=gen, device=gen.device, dtype=torch.float64)
        cells = (u > 1 - self.init_keep).to(dtype).to(x.device)
        masks = grid.render(cells, grid.shifts(r, gen).to(x.device))
        acc = torch.zeros((r, *grid.mask_shape), dtype=dtype, device=x.device)
        p_prev = torch.zeros(r, dtype=dtype, device=x.device)
        cell_view = (r,) + (1,) * len(grid.grid_shape)

        # chain j of sample i is row i * c + j; every chain of a sample shares its substrate
        def rows(start: int, stop: int) -> torch.Tensor:
            index = slice(start, stop) if c == 1 else torch.arange(start, stop, device=x.device) // c
            return filler(index, masks[start:stop])

        first, check = self._first_step_score(score)
        with progress_bar(self.n_steps, "MaskUpdate steps", self.progress) as bar:
            for step in range(self.n_steps):
                s = (first if step == 0 else score).values(rows, n=c).reshape(r).to(dtype)
                if step == 0 and check is not None:
                    check(s)
                p = self._probability(s)
                dp = (p - p_prev).abs()
                u = torch.rand(cells.shape, generator=gen, device=gen.device, dtype=torch.float64).to(
                    x.device
                )
                pp = p.reshape(cell_view).to(torch.float64)
                on = cells > 0
                # an on cell stays on with prob p; an off cell turns on with prob 1 - p
                new = torch.where(on, u > 1 - pp, u > pp).to(dtype)
                damped = (1 - self.lr * dp).reshape(cell_view).expand_as(new)
                cells = torch.where(new - cells > 0, damped, new)
                masks = grid.render(cells, grid.shifts(r, gen).to(x.device))
                acc += masks
                p_prev = p
                bar.update(1)
        m = acc.reshape(b, c, *grid.mask_shape).sum(1) / (c * self.n_steps)
        if self.postprocess:
            dims = tuple(range(1, m.ndim))
            m = torch.relu(m - self.offset * m.mean(dim=dims, keepdim=True))
            top = m.amax(dim=dims, keepdim=True)
            m = torch.where(top > 0, m / top.clamp_min(torch.finfo(dtype).tiny), m)
        return Parts(m, info={"n_steps": self.n_steps, "n_chains": c, "postprocess": self.postprocess})
