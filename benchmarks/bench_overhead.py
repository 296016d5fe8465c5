"""What a change of the library costs: the same calls timed on two commits, in one run.

Usage (from the repository root, on an otherwise idle machine)::

    python benchmarks/bench_overhead.py [--base REV] [--rounds N] [--quick] [--out FILE --title TEXT]

``--base`` (default ``a90916f``, the last commit before the hardening of issue #13) is checked
out into a temporary git worktree. Two worker processes import salience, one from the base's
``src`` and one from this checkout's ``src``; every round asks each worker in turn to time one
call of every case (interleaved, so slow drifts of the machine affect both alike), and the best
time of each is kept. The table (``benchmarks/results_overhead.md``) gives both times and their
ratio: the cost of the change on that call, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results_overhead.md"


# ---------------------------------------------------------------- worker side
def _cases(quick: bool) -> dict[str, Callable[[], Any]]:
    """Every case: a call of the public API on the shared benchmark models (see _common.py)."""
    import torch

    import salience as sl
    import _common

    n_sig, n_img = (8, 4) if quick else (32, 16)
    m1, x1 = _common.setup("cnn1d", n_sig)
    m2, x2 = _common.setup("cnn2d", n_img)
    small1 = x1[:8]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    steps = 10 if quick else 50
    masks = 50 if quick else 500
    cases: dict[str, Callable[[], Any]] = {
        "IG cnn1d": lambda: sl.IntegratedGradients(m1, n_steps=steps, rule="gausslegendre").explain(x1, 1),
        "IG cnn2d": lambda: sl.IntegratedGradients(m2, n_steps=steps, rule="gausslegendre").explain(x2, 1),
        "Saliency cnn1d": lambda: sl.Saliency(m1).explain(x1, 1),
        "Saliency cnn2d": lambda: sl.Saliency(m2).explain(x2, 1),
        "FourierIG cnn1d": lambda: sl.FourierIG(m1, n_steps=steps).explain(x1, 1),
        "SmoothGrad cnn1d": lambda: sl.SmoothGrad(sl.Gradient(m1), n_samples=steps, generator=gen(), progress=False).explain(x1, 1),
        "GradCAM cnn1d": lambda: sl.GradCAM(m1, layer="6").explain(x1, 1),
        "GradCAM cnn2d": lambda: sl.GradCAM(m2, layer="6").explain(x2, 1),
        "GradCAM default layer cnn1d": lambda: sl.GradCAM(m1).explain(x1, 1),
        "ScoreCAM cnn1d": lambda: sl.ScoreCAM(m1, layer="6", progress=False).explain(small1, 1),
        "GuidedBackprop cnn2d": lambda: sl.GuidedBackprop(m2).explain(x2, 1),
        "LRP cnn1d": lambda: sl.LRP(m1, composite="epsilon_plus").explain(x1, 1),
        "LRP cnn2d": lambda: sl.LRP(m2, composite="epsilon_plus").explain(x2, 1),
        "RISE cnn1d": lambda: sl.RISE(m1, n_masks=masks, generator=gen(), progress=False).explain(small1, 1),
        "RISE cnn2d": lambda: sl.RISE(m2, n_masks=masks, generator=gen(), progress=False).explain(x2[:4], 1),
        "Occlusion cnn1d": lambda: sl.Occlusion(m1, window=50, stride=25).explain(small1, 1),
    }
    attr = sl.Gradient(m1).explain(x1, 1)
    cases["deletion+insertion cnn1d"] = lambda: (
        sl.metrics.deletion_curve(m1, x1, attr, 1, steps=steps, progress=False),
        sl.metrics.insertion_curve(m1, x1, attr, 1, steps=steps, progress=False),
    )
    cases["faithfulness_correlation cnn1d"] = lambda: sl.metrics.faithfulness_correlation(
        m1, x1, attr, 1, n_runs=steps, subset_size=100, generator=gen(), progress=False
    )
    return cases


def worker(src: str, quick: bool) -> None:
    """Serve timing requests on stdin: one case name a line; answers the seconds of one call."""
    sys.path.insert(0, src)
    sys.path.insert(1, str(ROOT / "benchmarks"))
    import warnings

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    cases = _cases(quick)
    reps = {}
    for name, fn in cases.items():  # warm-up; fast calls are repeated to about 0.2 s a timing
        fn()
        t0 = time.perf_counter()
        fn()
        reps[name] = max(1, int(0.2 / max(time.perf_counter() - t0, 1e-6)))
    print(json.dumps(sorted(cases)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        fn, k = cases[name], reps[name]
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        print((time.perf_counter() - t0) / k, flush=True)


# ---------------------------------------------------------------- driver side
def _start(src: Path, quick: bool) -> subprocess.Popen:
    # passive waiting: an idle worker's OpenMP threads must not spin on the cores the other
    # worker is timing on; freed memory kept by the allocator rather than returned to the system,
    # so large fresh buffers do not pay page faults at random (both workers alike)
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH="",
               MALLOC_MMAP_THRESHOLD_=str(2**30), MALLOC_TRIM_THRESHOLD_=str(2**34))
    args = [sys.executable, __file__, "--worker", str(src)] + (["--quick"] if quick else [])
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _ask(proc: subprocess.Popen, name: str) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(name + "\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="a90916f")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="time only the calls whose name contains this text")
    parser.add_argument("--out", default=str(OUT), help="the markdown table to write (full runs only)")
    parser.add_argument("--title", default="Cost of a change", help="the table's heading")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.quick)
        return
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    head_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), base_rev], cwd=ROOT, check=True)
        try:
            names: list[str] | None = None
            best: dict[tuple[str, str], float] = {}
            # fresh worker pairs per session: a process can land in a slower state as a whole
            # (memory layout, allocator), which more rounds in the same process cannot undo
            for session in range(args.sessions):
                procs = {"base": _start(tree / "src", args.quick), "head": _start(ROOT / "src", args.quick)}
                for p in procs.values():
                    assert p.stdout is not None
                    got = json.loads(p.stdout.readline())
                    names = got if names is None else [n for n in names if n in got]
                assert names is not None
                if args.only:
                    names = [n for n in names if args.only in n]
                for r in range(args.rounds):
                    for n in names:
                        for k in (("base", "head") if r % 2 == 0 else ("head", "base")):
                            best[k, n] = min(best.get((k, n), float("inf")), _ask(procs[k], n))
                print(f"session {session + 1}/{args.sessions} done", file=sys.stderr, flush=True)
                for p in procs.values():
                    assert p.stdin is not None
                    p.stdin.close()
                    p.wait()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    import torch

    ratios = [best["head", n] / best["base", n] for n in names]
    lines = [
        f"## {args.title}: the same calls on two commits (`benchmarks/bench_overhead.py`)",
        "",
        f"Base {base_rev}, head {head_rev}; torch {torch.__version__}, 2 threads; best of "
        f"{args.sessions} sessions x {args.rounds} rounds, the two versions interleaved call by "
        "call in separate processes (fresh ones each session)"
        f"{' (--quick sizes)' if args.quick else ''}.",
        "",
        "| call | base (s) | head (s) | head / base |",
        "|---|---|---|---|",
    ]
    for n, ratio in zip(names, ratios):
        lines.append(f"| {n} | {best['base', n]:.4f} | {best['head', n]:.4f} | {ratio:.3f} |")
    geo = 1.0
    for ratio in ratios:
        geo *= ratio
    geo **= 1 / len(ratios)
    lines += ["", f"Geometric mean of head / base: {geo:.3f}; largest: {max(ratios):.3f} "
              f"({names[ratios.index(max(ratios))]})."]
    text = "\n".join(lines) + "\n"
    if not args.quick and not args.only:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
