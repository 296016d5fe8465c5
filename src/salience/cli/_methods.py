"""``salience explain``'s methods: the explainer an option names, built with the CLI's options,
and the domain it runs in."""

from __future__ import annotations

import argparse
from typing import Any

from ._io import (
    CLIError,
)

#: --method names -> (salience class name, needs a layer)
METHODS: dict[str, str] = {
    "gradient": "Gradient",
    "saliency": "Saliency",
    "inputxgradient": "InputXGradient",
    "ig": "IntegratedGradients",
    "smoothgrad": "SmoothGrad",
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
    "rise": "RISE",
    "occlusion": "Occlusion",
}
#: --domain names -> salience domain class name (None: the input space)
DOMAINS: dict[str, str | None] = {
    "time": None,
    "fourier": "Fourier",
    "stft": "STFT",
    "wavelet": "Wavelet",
    "ica": "ICA",
}


def _build_explainer(args: argparse.Namespace, model: Any) -> Any:
    import torch

    import salience as sl

    name = _method_name(args.method)
    if name not in METHODS:
        raise CLIError(f"unknown method {args.method!r}; choose one of {', '.join(METHODS)}.")
    cls = getattr(sl, METHODS[name], None)
    if cls is None:
        raise CLIError(
            f"method {args.method!r} ({METHODS[name]}) is not available in this version of salience."
        )
    kw: dict[str, Any] = {"batch_size": args.batch_size}
    g = torch.Generator(device=args.device if args.device != "mps" else "cpu").manual_seed(args.seed)
    if name == "ig" and args.steps is not None:
        kw["n_steps"] = args.steps
    # the methods with their own progress bar show it unless --quiet (the command's own bar over
    # chunks is then left out, so bars are never nested)
    if name == "smoothgrad":
        n_samples = 50 if args.steps is None else args.steps
        return cls(
            sl.Gradient(model, batch_size=args.batch_size),
            n_samples=n_samples,
            generator=g,
            progress=not args.quiet,
        )
    if name in ("rise", "occlusion") and args.layer is not None:
        raise CLIError(f"--layer applies to CAM methods, not {args.method!r}.")
    if name in _OWN_BAR:
        kw["progress"] = not args.quiet
    if name == "rise":
        kw["generator"] = g
        if args.steps is not None:
            kw["n_masks"] = args.steps
    if name == "occlusion":
        if args.window is None:
            raise CLIError(
                "--method occlusion needs --window, e.g. t=25 for signals or h=16,w=16 for images."
            )
        kw["window"] = _axis_sizes(args.window, "--window")
        if args.stride is not None:
            kw["stride"] = _axis_sizes(args.stride, "--stride")
    elif args.window is not None or args.stride is not None:
        raise CLIError(f"--window/--stride apply to occlusion, not {args.method!r}.")
    if args.layer is not None:
        if name not in ("gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "scorecam"):
            raise CLIError(f"--layer applies to CAM methods, not {args.method!r}.")
        kw["layer"] = args.layer
    if "cam" in name and isinstance(model, torch.jit.ScriptModule):
        raise CLIError(_NO_HOOKS.format(what=f"method {args.method!r}"))
    return cls(model, **kw)


def _method_name(method: str) -> str:
    """The METHODS key of a --method value (case, dashes and underscores ignored; aliases)."""
    name = method.lower().replace("-", "").replace("_", "")
    return {"integratedgradients": "ig", "ixg": "inputxgradient", "inputxgrad": "inputxgradient"}.get(
        name, name
    )


#: --method names whose explainer draws its own progress bar
_OWN_BAR = ("smoothgrad", "rise", "occlusion", "scorecam")

_NO_HOOKS = (
    "{what} needs layer hooks, which TorchScript modules do not support; give the model as a "
    "torch.export archive (.pt2) or as package.module:factory with --weights."
)


def _axis_sizes(text: str, option: str) -> dict[str, int]:
    out = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        try:
            if not eq or not k.strip():
                raise ValueError
            out[k.strip()] = int(v)
        except ValueError as exc:
            raise CLIError(
                f"{option} takes axis=size pairs such as t=25 or h=16,w=16. Got {text!r}."
            ) from exc
    return out


def _wrap_domain(args: argparse.Namespace, explainer: Any, x: Any) -> Any:
    import salience as sl

    dom = args.domain.lower()
    if dom not in DOMAINS:
        raise CLIError(f"unknown domain {args.domain!r}; choose one of {', '.join(DOMAINS)}.")
    name = DOMAINS[dom]
    if name is None:
        return explainer
    cls = getattr(sl, name, None)
    wrapper = getattr(sl, "InDomain", None)
    if cls is None or wrapper is None:
        raise CLIError(f"domain {args.domain!r} is not available in this version of salience.")
    kwargs: dict[str, Any] = {"fs": args.fs} if dom in ("fourier", "stft") and args.fs is not None else {}
    if dom == "ica":
        kwargs["random_state"] = args.seed
    domain = cls(**kwargs)
    if getattr(domain, "_needs_fit", False):  # learned domains (ICA) are fitted on the data given
        domain.fit(x)
    return wrapper(explainer, domain)
