"""Core benchmark: IntegratedGradients and Saliency vs Captum and vs the bare model cost.

Run by hand (never in tests):

    python benchmarks/bench_core.py            # full run, writes benchmarks/results_core.md
    python benchmarks/bench_core.py --quick    # tiny smoke run, prints only

Everything in the timing table is measured in one process, on the same models, inputs and
thread count, so the ratios are comparable. The "bare limit" is the cost of the model's own
forward+backward passes over the same number of rows (N * n_steps for IG), measured as one
giant batch, in chunks of 256 rows and in chunks of our default batch size; the fastest is the
limit. Peak memory is the growth of the resident set of a fresh subprocess while it runs one
configuration: after building the model and data, the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``) and the peak (VmHWM) minus the resident set before the call is
reported.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from _common import THREADS, setup, time_all, timeit  # noqa: E402  (puts src/ on sys.path)
import salience as sl  # noqa: E402
from salience.engine import default_batch_size  # noqa: E402

ROOT = Path(__file__).resolve().parent












def bare_pass(model, rows: torch.Tensor, target: int, chunk: int | None):
    def run():
        for start in range(0, rows.shape[0], chunk or rows.shape[0]):
            r = rows[start : start + (chunk or rows.shape[0])].detach().requires_grad_(True)
            out = model(r)[:, target].sum()
            torch.autograd.grad(out, r)
    return run


def interpolants(x: torch.Tensor, n_steps: int) -> torch.Tensor:
    a = torch.linspace(0, 1, n_steps)
    return (a.view(1, -1, *[1] * (x.ndim - 1)) * x.unsqueeze(1)).reshape(-1, *x.shape[1:])


def methods(model, x, n_steps, rule, captum_ibs):
    from captum.attr import IntegratedGradients as CIG, Saliency as CSal

    target = 1
    out = {
        "salience IG": lambda: sl.IntegratedGradients(model, n_steps=n_steps, rule=rule).explain(x, target),
        "captum IG (internal_batch_size=None)": lambda: CIG(model).attribute(x, target=target, n_steps=n_steps, method=rule),
        "salience Saliency": lambda: sl.Saliency(model).explain(x, target),
        "captum Saliency": lambda: CSal(model).attribute(x, target=target, abs=True),
    }
    for ibs in captum_ibs:
        out[f"captum IG (internal_batch_size={ibs})"] = (
            lambda ibs=ibs: CIG(model).attribute(x, target=target, n_steps=n_steps, method=rule, internal_batch_size=ibs)
        )
    return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(spec: str) -> None:
    """Run one configuration and print the growth of its resident set (KiB) as JSON."""
    torch.set_num_threads(THREADS)
    cfg = json.loads(spec)
    model, x = setup(cfg["model"], cfg["n"])
    fn = methods(model, x, cfg["n_steps"], cfg["rule"], cfg.get("ibs", []))[cfg["method"]]
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter (VmHWM) to the current resident set
    fn()
    print(json.dumps({"growth_kib": _status_kib("VmHWM") - before}))


def peak_mib(cfg: dict) -> float:
    res = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps(cfg)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])["growth_kib"] / 1024


def completeness_table(model, x, rules, sweep, repeats) -> list[str]:
    """Steps and time to reach |delta| < 1% of |f(x) - f(x0)| for every sample."""
    rows = ["| model | rule | steps needed | max relative gap | time (s) |", "|---|---|---|---|---|"]
    for rule in rules:
        found = None
        for n in sweep:
            if rule == "riemann_trapezoid" and n < 2:
                continue
            ig = sl.IntegratedGradients(model, n_steps=n, rule=rule)
            attr = ig.explain(x, 1)
            rel = (attr.delta.abs() / (attr.scores - attr.info["baseline_scores"]).abs()).max().item()
            if rel < 0.01:
                found = (n, rel, timeit(lambda: ig.explain(x, 1), repeats))
                break
        rows.append(
            f"| {{model}} | {rule} | {found[0] if found else f'> {sweep[-1]}'} | "
            f"{found[1] if found else float('nan'):.2e} | {found[2] if found else float('nan'):.3f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory-child")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    torch.set_num_threads(THREADS)
    n, n_steps, repeats = (4, 8, 1) if args.quick else (32, 50, 5)
    rule = "gausslegendre"  # Captum's default, so its default call is compared like for like
    ibs_list = [32, 64, 128, 256, 512] if not args.quick else [16]
    lines = [
        f"Threads: {THREADS}; torch {torch.__version__}; N={n}, IG n_steps={n_steps}, rule={rule}, target=1; "
        f"best of {repeats} interleaved rounds after a warm-up.",
        "",
        "| model | method | time (s) | vs bare limit | vs ours |",
        "|---|---|---|---|---|",
    ]
    mem_lines = ["| model | method | peak RSS growth during the call (MiB) |", "|---|---|---|"]
    summary = {}
    for name in ("cnn1d", "cnn2d"):
        model, x = setup(name, n)
        rows = interpolants(x, n_steps)
        ours_chunk = default_batch_size(math.prod(x.shape[1:]))
        timings = time_all(
            {
                "bare one": bare_pass(model, rows, 1, None),
                "bare 256": bare_pass(model, rows, 1, 256),
                "bare ours": bare_pass(model, rows, 1, ours_chunk),
                "bare saliency": bare_pass(model, x, 1, None),
                **methods(model, x, n_steps, rule, ibs_list),
            },
            repeats,
        )
        bare_one, bare_chunk = timings.pop("bare one"), timings.pop("bare 256")
        bare_ours, sal_limit = timings.pop("bare ours"), timings.pop("bare saliency")
        limit = min(bare_one, bare_chunk, bare_ours)
        lines.append(f"| {name} | bare fwd+bwd, {rows.shape[0]} rows in one batch | {bare_one:.3f} | {bare_one / limit:.2f}x | |")
        lines.append(f"| {name} | bare fwd+bwd, {rows.shape[0]} rows in chunks of 256 | {bare_chunk:.3f} | {bare_chunk / limit:.2f}x | |")
        lines.append(
            f"| {name} | bare fwd+bwd, {rows.shape[0]} rows in chunks of {ours_chunk} (our default batch_size) "
            f"| {bare_ours:.3f} | {bare_ours / limit:.2f}x | |"
        )
        ours_ig = timings["salience IG"]
        for k, t in timings.items():
            base = sal_limit if "Saliency" in k else limit
            ref = timings["salience Saliency"] if "Saliency" in k else ours_ig
            lines.append(f"| {name} | {k} | {t:.3f} | {t / base:.2f}x | {t / ref:.2f}x |")
        lines.append(f"| {name} | bare fwd+bwd, {n} rows (Saliency limit) | {sal_limit:.3f} | | |")
        captum_best_key = min((k for k in timings if k.startswith("captum IG")), key=timings.get)
        captum_best = timings[captum_best_key]
        summary[name] = dict(
            ig_vs_limit=ours_ig / limit,
            captum_default_over_ours=timings["captum IG (internal_batch_size=None)"] / ours_ig,
            captum_best_over_ours=captum_best / ours_ig,
        )
        summary[name + " captum best"] = captum_best_key
        if not args.quick:
            for method, extra in (
                ("salience IG", {}),
                ("captum IG (internal_batch_size=None)", {}),
                ("captum IG (internal_batch_size=256)", {"ibs": [256]}),
            ):
                for steps in (n_steps, 4 * n_steps):
                    cfg = {"model": name, "n": n, "method": method, "n_steps": steps, "rule": rule, **extra}
                    mem_lines.append(f"| {name} | {method}, n_steps={steps} | {peak_mib(cfg):.0f} |")
    comp = []
    if not args.quick:
        comp = ["| model | rule | steps needed | max relative gap | time (s) |", "|---|---|---|---|---|"]
        for name in ("cnn1d", "cnn2d"):
            model, x = setup(name, n)
            rows = completeness_table(model, x, sl.explainers.integrated_gradients.RULES, [4, 8, 16, 32, 64, 128, 256], 1)
            comp += [r.replace("{model}", name) for r in rows[2:]]
    text = "\n".join(
        ["## Core: IntegratedGradients and Saliency (`benchmarks/bench_core.py`)", "", *lines, "",
         "Summary (ratios, same run): " + json.dumps({k: v if isinstance(v, str) else {kk: round(vv, 2) for kk, vv in v.items()} for k, v in summary.items()}),
         "", "Peak memory (fresh subprocess per row; bounded by batch_size, not n_steps, for ours):", "", *mem_lines,
         "", "Steps and time to a completeness gap below 1% of |f(x) - f(x0)| (every sample):", "", *comp, ""]
    )
    print(text)
    if not args.quick:
        (ROOT / "results_core.md").write_text(text)


if __name__ == "__main__":
    main()
