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
import time

import numpy as np
from mpi4py import MPI

from collectives import cli, plots
from collectives.bench import format_size
from numa import threads

from .kernels.peaks import fma_loop, triad_kernel
from .roofline_cases import CASES, build

__all__ = ["stream_triad", "gemm_peak", "fma_peak", "run_cases", "main"]


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
                    best = max(best, cli.parse_size(f.read().strip()))
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
    t = _best(lambda: fma_loop(x, np.float32(0.999999), np.float32(1e-6), reps), budget)
    return {"GFLOPs": 2.0 * x.size * reps / t / 1e9}


def run_cases(names, sizes, bandwidth: float, peak: float, budget: float) -> list[dict]:
    """Time every case at every size, ours and numpy's; one record each."""
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
    plt = plots.pyplot()
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


PROG = "python -m training.roofline"


def _kernel_list(text: str) -> list[str]:
    """An argparse type: comma-separated names of :data:`training.roofline_cases.CASES`."""
    names = [k for k in text.split(",") if k]
    if not names or any(k not in CASES for k in names):
        raise argparse.ArgumentTypeError(f"unknown kernel(s) in {text!r}; have {', '.join(CASES)}")
    return names


def parser() -> cli.ArgumentParser:
    """The command line's options, each checked by its type (see :mod:`collectives.cli`)."""
    ap = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    counts = ap.add_mutually_exclusive_group()
    counts.add_argument("--threads", type=cli.positive_int,
                        help="Numba and BLAS threads (default: the cores this process may use)")
    counts.add_argument("--scaling", metavar="LIST", type=cli.int_list,
                        help="thread counts, e.g. 1,2,4,8,16: triad and kernels at each")
    ap.add_argument("--kernels", type=_kernel_list, default=",".join(CASES),
                    help="comma-separated cases (default: all)")
    ap.add_argument("--sizes", type=cli.size_list, default="64K,1M,8M,64M",
                    help="main-array sizes in bytes (default 64K,1M,8M,64M)")
    ap.add_argument("--triad-bytes", type=cli.size_arg, metavar="BYTES",
                    help="triad array size in bytes, at least 8 (default 4x the last-level cache)")
    ap.add_argument("--gemm-n", type=cli.positive_int, default=2048, help="GEMM order for the peak (default 2048)")
    ap.add_argument("--budget", type=cli.positive_seconds, metavar="SECONDS", default=0.3,
                    help="seconds of timing per measurement (default 0.3)")
    ap.add_argument("--json", metavar="PATH", help="write everything as JSON")
    ap.add_argument("--plot", metavar="PATH.png", help="roofline chart (needs matplotlib)")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and cross-check the options: :class:`collectives.cli.AgreedExit` (2) if bad."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.triad_bytes is not None and args.triad_bytes < 8:
        ap.error(f"--triad-bytes ({args.triad_bytes} bytes) holds no float64 element: at least 8 bytes")
    return args


def measure(args, n_threads: int | None) -> dict:
    """The roof (triad, GEMM, FMA) and every case of ``args`` at ``n_threads`` threads."""
    threads.configure(n_threads)
    triad = stream_triad(args.triad_bytes, args.budget * 3)
    gemm = gemm_peak(args.gemm_n, args.budget * 3)
    fma = fma_peak(args.budget)
    peak = max(gemm["GFLOPs"], fma["GFLOPs"])
    return {"env": environment(), "triad": triad, "gemm": gemm, "fma": fma,
            "kernels": run_cases(args.kernels, args.sizes, triad["GBps"], peak, args.budget)}


def main(argv=None) -> int:
    """Measure and print the roofline; bad options or outputs: exit 2 before any measuring."""
    args = parse_args(argv)
    # one process, its own outputs: COMM_SELF (under mpiexec each rank would be a roofline of its own)
    cli.check_outputs(MPI.COMM_SELF, {"--json": args.json, "--plot": args.plot}, PROG)
    cli.agree_or_exit(MPI.COMM_SELF, plots.missing() if args.plot else None, PROG)
    runs = []
    for count in args.scaling or [args.threads]:
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
    cli.run_main(main)
