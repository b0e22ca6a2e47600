"""``python -m training.roofline``: this machine's limits, and how close each kernel runs to them.

The roof: memory bandwidth by STREAM's triad ``a = b + s*c`` (float64,
arrays of four times the last-level cache, best of repeats, 24 bytes per
element counted) and peak FLOP/s two ways, a large float32 GEMM through
numpy's BLAS and a Numba loop of independent fused multiply-adds on data
in L1.  Then every kernel of :mod:`training.kernels` (and the collectives'
reduce) at several sizes beside the numpy expression it replaces:
arithmetic intensity, achieved GB/s and GFLOP/s, the fraction of the roof
``min(peak, intensity * bandwidth)`` reached, and the speed-up over numpy.

Examples::

    python -m training.roofline --threads 1                       # single-threaded roofline
    python -m training.roofline --json roof.json --plot roof.png
    python -m training.roofline --scaling 1,2,4,8,16 --json scaling.json   # multicore scaling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from numba import njit, prange

from collectives import threads
from collectives.bench import format_size, parse_size

__all__ = ["triad_kernel", "stream_triad", "gemm_peak", "fma_peak", "run_cases", "main"]


@njit(cache=True, nogil=True, parallel=True)
def triad_kernel(a, b, c, s):
    """STREAM's triad, ``a = b + s*c``, over this rank's threads."""
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


@njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _fma_loop(x, m, c, reps):
    # each thread owns blocks of 64 floats (8 AVX2 or 4 AVX-512 registers):
    # reps dependent FMAs on each lane, 8 independent chains per block
    for blk in prange(x.size // 64):
        v = x[blk * 64 : (blk + 1) * 64].copy()
        for _ in range(reps):
            for j in range(64):
                v[j] = v[j] * m + c
        x[blk * 64 : (blk + 1) * 64] = v


def _best(fn, budget: float, min_reps: int = 3) -> float:
    fn()  # compile, page in
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _median_pair(a, b, budget: float, min_reps: int = 7) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, called alternately so that drift hits both alike."""
    a()
    b()
    ta, tb = [], []
    start = time.perf_counter()
    while len(ta) < min_reps or time.perf_counter() - start < 2 * budget:
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def last_level_cache() -> int:
    """Bytes of the largest CPU cache sysfs lists for cpu0 (32 MiB when unknown)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in os.listdir(base):
            try:
                with open(os.path.join(base, d, "size")) as f:
                    best = max(best, parse_size(f.read().strip()))
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return best or (32 << 20)


def stream_triad(array_bytes: int | None = None, budget: float = 1.0) -> dict:
    """Best triad bandwidth, GB/s counted as STREAM does (3 arrays x 8 bytes per element)."""
    array_bytes = array_bytes or max(4 * last_level_cache(), 64 << 20)
    n = array_bytes // 8
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    t = _best(lambda: triad_kernel(a, b, c, 3.0), budget)
    return {"array_bytes": 8 * n, "GBps": 24 * n / t / 1e9, "seconds": t}


def gemm_peak(n: int = 2048, budget: float = 1.0) -> dict:
    """float32 ``n x n`` matrix product by numpy's BLAS: GFLOP/s (2 n^3 per product)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    t = _best(lambda: np.matmul(a, b, out=out), budget)
    return {"n": n, "GFLOPs": 2.0 * n**3 / t / 1e9}


def fma_peak(budget: float = 0.5) -> dict:
    """Numba's float32 FMA rate on data in L1: GFLOP/s (2 per FMA)."""
    blocks = max(1, threads.current()["numba"]) * 4
    x = np.ones(64 * blocks, np.float32)
    reps = 20000
    t = _best(lambda: _fma_loop(x, np.float32(0.999999), np.float32(1e-6), reps), budget)
    return {"GFLOPs": 2.0 * x.size * reps / t / 1e9}


def run_cases(names, sizes, bandwidth: float, peak: float, budget: float) -> list[dict]:
    """Time every case at every size, ours and numpy's; one record each."""
    from .roofline_cases import build

    records = []
    for name in names:
        for size in sizes:
            case = build(name, size)
            t_ours, t_np = _median_pair(case.ours, case.numpy, budget)
            ai = case.flops / case.nbytes if case.nbytes else float("inf")
            gbps = case.nbytes / t_ours / 1e9
            gflops = case.flops / t_ours / 1e9
            records.append({
                "kernel": name, "bytes": int(size), "moved_bytes": int(case.nbytes), "flops": float(case.flops),
                "intensity": ai, "seconds": t_ours, "numpy_seconds": t_np, "GBps": gbps, "GFLOPs": gflops,
                "bound": case.bound,
                # the roof that applies: bandwidth for streaming kernels, else min(peak, AI x bandwidth)
                "roof_fraction": gbps / bandwidth if case.bound == "memory" else gflops / min(peak, ai * bandwidth),
                "speedup_vs_numpy": t_np / t_ours,
            })
    return records


def environment() -> dict:
    import numba

    return {
        "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)), "threads": threads.current(),
        "numpy": np.__version__, "numba": numba.__version__, "python": platform.python_version(),
        "last_level_cache": last_level_cache(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _table(records) -> str:
    head = (f"{'kernel':>20} {'size':>6} {'AI':>6} {'GB/s':>8} {'GFLOP/s':>8} {'bound':>7} "
            f"{'of roof':>8} {'vs numpy':>9}")
    rows = [head]
    for r in records:
        rows.append(f"{r['kernel']:>20} {format_size(r['bytes']):>6} {r['intensity']:>6.2f} {r['GBps']:>8.2f} "
                    f"{r['GFLOPs']:>8.2f} {r['bound']:>7} {r['roof_fraction']:>8.0%} {r['speedup_vs_numpy']:>8.2f}x")
    return "\n".join(rows)


def _plot(path: str, roof: dict, records: list[dict]) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'mpi-train-kit[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bw, peak = roof["triad"]["GBps"], max(roof["gemm"]["GFLOPs"], roof["fma"]["GFLOPs"])
    ai = np.geomspace(0.01, 1000, 400)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(ai, np.minimum(ai * bw, peak), "k-", label=f"roof: triad {bw:.1f} GB/s, peak {peak:.1f} GFLOP/s")
    ax.axhline(roof["fma"]["GFLOPs"], color="gray", ls=":", label="Numba FMA loop")
    for name in dict.fromkeys(r["kernel"] for r in records):
        pts = [r for r in records if r["kernel"] == name and r["flops"] > 0]
        if pts:
            ax.loglog([r["intensity"] for r in pts], [r["GFLOPs"] for r in pts], "o", ms=4, label=name)
    ax.set_xlabel("arithmetic intensity (flop / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"roofline, {roof['env']['threads']['numba']} thread(s)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parser() -> argparse.ArgumentParser:
    from .roofline_cases import CASES

    ap = argparse.ArgumentParser(prog="python -m training.roofline", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, help="Numba and BLAS threads (default: the cores this process may use)")
    ap.add_argument("--kernels", default=",".join(CASES), help="comma-separated cases (default: all)")
    ap.add_argument("--sizes", default="64K,1M,8M,64M", help="main-array sizes (default 64K,1M,8M,64M)")
    ap.add_argument("--triad-bytes", type=parse_size, help="triad array size (default 4x the last-level cache)")
    ap.add_argument("--gemm-n", type=int, default=2048, help="GEMM order for the peak (default 2048)")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timing per measurement")
    ap.add_argument("--scaling", metavar="LIST", help="thread counts, e.g. 1,2,4,8,16: triad and kernels at each")
    ap.add_argument("--json", metavar="PATH", help="write everything as JSON")
    ap.add_argument("--plot", metavar="PATH.png", help="roofline chart (needs matplotlib)")
    return ap


def measure(args, n_threads: int | None) -> dict:
    threads.configure(n_threads)
    names = [k for k in args.kernels.split(",") if k]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    triad = stream_triad(args.triad_bytes, args.budget * 3)
    gemm = gemm_peak(args.gemm_n, args.budget * 3)
    fma = fma_peak(args.budget)
    peak = max(gemm["GFLOPs"], fma["GFLOPs"])
    return {"env": environment(), "triad": triad, "gemm": gemm, "fma": fma,
            "kernels": run_cases(names, sizes, triad["GBps"], peak, args.budget)}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .roofline_cases import CASES

    unknown = [k for k in args.kernels.split(",") if k and k not in CASES]
    if unknown:
        print(f"unknown kernel(s) {unknown}; have {list(CASES)}", file=sys.stderr)
        return 2
    counts = [int(t) for t in args.scaling.split(",")] if args.scaling else [args.threads]
    if any(c is not None and c < 1 for c in counts):
        print("thread counts must be >= 1", file=sys.stderr)
        return 2
    runs = []
    for count in counts:
        roof = measure(args, count)
        runs.append(roof)
        env = roof["env"]
        print(f"# training.roofline: {env['cpu']}, {env['cores']} cores, threads {env['threads']}, "
              f"LLC {format_size(env['last_level_cache'])}, numpy {env['numpy']}, numba {env['numba']}")
        print(f"# triad {roof['triad']['GBps']:.2f} GB/s ({format_size(roof['triad']['array_bytes'])} arrays); "
              f"GEMM {roof['gemm']['GFLOPs']:.1f} GFLOP/s (n={roof['gemm']['n']}); "
              f"Numba FMA {roof['fma']['GFLOPs']:.1f} GFLOP/s")
        print(_table(roof["kernels"]), flush=True)
    if len(runs) > 1:
        print(scaling_table(runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs[0] if len(runs) == 1 else {"scaling": runs}, f, indent=1)
    if args.plot:
        _plot(args.plot, runs[-1], runs[-1]["kernels"])
    return 0


def scaling_table(runs: list[dict]) -> str:
    """Speed-up over the first run's thread count: triad, and each kernel at its largest size."""
    base = runs[0]
    largest = max(r["bytes"] for r in base["kernels"]) if base["kernels"] else 0
    names = [r["kernel"] for r in base["kernels"] if r["bytes"] == largest]
    head = f"{'threads':>8} {'triad GB/s':>11} " + " ".join(f"{n[:14]:>14}" for n in names)
    lines = ["# speed-up over " + str(base["env"]["threads"]["numba"]) + " thread(s), largest size", head]
    for run in runs:
        t = {r["kernel"]: r["seconds"] for r in run["kernels"] if r["bytes"] == largest}
        t0 = {r["kernel"]: r["seconds"] for r in base["kernels"] if r["bytes"] == largest}
        lines.append(f"{run['env']['threads']['numba']:>8} {run['triad']['GBps']:>11.2f} "
                     + " ".join(f"{t0[n] / t[n]:>13.2f}x" for n in names))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
