"""OSU-style sweep of every algorithm of a collective, side by side with the MPI library's own.

Launch::

    mpiexec -n 2 python -m mpi4py -m collectives.bench
    mpiexec -n 16 python -m mpi4py -m collectives.bench --collective allgather --json ag.json

Method: sizes double from ``--min-bytes`` to ``--max-bytes``; for each size
every algorithm is warmed up, then timed in one of two ways (``--timing``):

- ``loop`` (the default, as nccl-tests and OSU's latency loops time): a
  barrier, then a block of back-to-back calls timed together; each rank's
  time per call is the block's time over its calls.  A record gives the
  average over the ranks (``time_us``) with their minimum and maximum, each
  the median over the blocks.  Back-to-back calls pipeline as a program's
  do, and the barrier's skew is spread over the block.
- ``barrier``: a barrier before every call, each call timed alone; a
  record's ``time_us`` is the median over calls of the slowest rank's time.
  Every call then pays the skew the barrier leaves between the ranks, a
  few µs that dominate small messages.  ``collectives.alphabeta`` measures
  its profile this way, and checks its predictions against it.

Algorithms are interleaved within a size (a call or a block each), in a new
order every repeat (the same on every rank), so that drift of the machine
hits them all alike and none always runs in the cache state one neighbour
leaves.  ``--passes N`` splits each size's repeats over N passes through
the sizes, so that a slow spell hits one pass of a size rather than its
whole median.  Bandwidths follow nccl-tests: all-reduce busbw = size/t *
2(P-1)/P; all-gather and reduce-scatter busbw = size/t * (P-1)/P, where
size is the full vector; broadcast busbw = algbw.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time

import numpy as np
from mpi4py import MPI

from . import cli
from .passes import drain, share, visits
from .progress import Progress
from .runtime import api
from .runtime.buffers import at_page_offset
from .runtime.communicator import check_enabled, library_comm, unchecked
from .runtime.registry import ALGORITHMS

#: ``_RUN[collective](algorithm, comm)``: one of our algorithms' call ``f(x, y)`` on :func:`_buffers`' buffers.
_RUN = {
    "allreduce": lambda alg, comm: lambda x, y: api.allreduce(x, y, algorithm=alg, comm=comm),
    "allgather": lambda alg, comm: lambda x, y: api.allgather(x, y, algorithm=alg, comm=comm),
    "reduce_scatter": lambda alg, comm: lambda x, y: api.reduce_scatter(x, y, algorithm=alg, comm=comm),
    "broadcast": lambda alg, comm: lambda x, y: api.broadcast(x, 0, algorithm=alg, comm=comm),
}


#: What the ``mpi`` row times, for the output's header.
MPI_ROW = "the library's own collective called through mpi4py (as OSU times it), on our duplicate communicator"
#: ... with ``--memory cuda``: through our ``algorithm="mpi"``, which stages device memory where the MPI is not
#: CUDA-aware (mpi4py would hand the library a device pointer).
MPI_ROW_DEVICE = "the library's own collective through our algorithm='mpi' (device memory staged unless CUDA-aware)"


def library_call(collective: str, lib: MPI.Comm, n: int):
    """The ``mpi`` row's call ``f(x, y)``: the library's own collective through mpi4py, as OSU times it.

    On ``lib`` (the library's duplicate of the communicator), the sum of
    :func:`_buffers`' buffers for a vector of ``n`` elements, with none of
    our wrapper around it: ``api``'s ``algorithm="mpi"`` adds our checks
    and dispatch (timed by ``scripts/timing_methods.py``).
    """
    if collective == "allreduce":
        return lambda x, y: lib.Allreduce(x, y)
    if collective == "allgather":
        return lambda x, y: lib.Allgather(x, y)
    if collective == "reduce_scatter":
        from .algorithms.schedule import partition

        off = partition(n, lib.Get_size())
        counts = [off[i + 1] - off[i] for i in range(len(off) - 1)]
        return lambda x, y: lib.Reduce_scatter(x, y, counts)
    return lambda x, y: lib.Bcast(x, root=0)


def bus_factor(collective: str, p: int) -> float:
    """nccl-tests' busbw / algbw ratio for ``collective`` on ``p`` ranks."""
    if collective == "allreduce":
        return 2 * (p - 1) / p
    if collective in ("allgather", "reduce_scatter"):
        return (p - 1) / p
    return 1.0


def format_size(n: int) -> str:
    """67108864 -> ``"64M"``: the inverse of :func:`collectives.cli.parse_size` for whole units."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n // scale}{unit}"
    return str(n)


def sizes(lo: int, hi: int) -> list[int]:
    """Doubling sizes from ``lo`` to ``hi`` bytes inclusive.

    Raises
    ------
    ValueError
        If ``lo`` is below 1 byte (doubling 0 never reaches ``hi``).
    """
    if lo < 1:
        raise ValueError(f"the first size must be at least 1 byte, got {lo}")
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 2
    return out


def write_record(path: str, env: dict, records: list, args, **extra) -> None:
    """Write a benchmark's JSON record: its environment, records, ``extra`` fields and options (not the outputs)."""
    outputs = ("json", "plot", "trace_dir")
    with open(path, "w") as f:
        json.dump({"environment": env, "records": records, **extra,
                   "options": {k: v for k, v in vars(args).items() if k not in outputs}}, f, indent=1)


def environment(comm: MPI.Comm) -> dict:
    """Machine, MPI library and versions, for the output header."""
    import mpi4py
    import numba

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    hosts = sorted(set(comm.allgather(socket.gethostname())))
    return {
        "hosts": hosts,
        "cpu": cpu,
        "cores_per_host": os.cpu_count(),
        "ranks": comm.Get_size(),
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
        "mpi_standard": "%d.%d" % MPI.Get_version(),
        "mpi4py": mpi4py.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "numba_threads": numba.get_num_threads(),
        "check_mode": "on" if check_enabled() else "off",
        "cuda_aware": f"{library_comm(comm).cuda_aware} ({library_comm(comm).cuda_aware_why})",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _buffers(collective: str, nbytes: int, dtype: np.dtype, p: int, rank: int, memory: str = "host"):
    """Send and receive buffers, all at one offset in their pages (numpy's usual); on the GPU for ``"cuda"``.

    So that malloc's placement does not decide copy speeds (see
    :func:`collectives.runtime.buffers.at_page_offset`).
    """
    if memory == "cuda":
        import cupy

        x, y, n = _buffers(collective, nbytes, dtype, p, rank)
        gx = cupy.asarray(x)
        return gx, (gx if y is x else cupy.asarray(y)), n
    n = max(nbytes // dtype.itemsize, 1)
    rng = np.random.default_rng(rank)

    def filled(count):
        a = at_page_offset(count, dtype)
        a[...] = rng.random(count)
        return a

    if collective == "allgather":
        m = max(n // p, 1)
        return filled(m), at_page_offset(m * p, dtype), m * p
    if collective == "reduce_scatter":
        from .algorithms.schedule import partition

        off = partition(n, p)
        return filled(n), at_page_offset(off[rank + 1] - off[rank], dtype), n
    x = filled(n)
    return x, (x if collective == "broadcast" else at_page_offset(n, dtype)), n


#: Blocks a size's calls are cut into with ``--timing loop`` (the median is over them), when there are as many calls.
BLOCKS = 5

#: The ``--timing`` methods, described for the output's header.
TIMINGS = {
    "loop": "a barrier, then blocks of back-to-back calls; per call, averaged over the ranks (min, max), median "
            "over blocks",
    "barrier": "a barrier before every call; per call, the slowest rank, median over calls",
}


def _repeats(nbytes: int, budget: float) -> int:
    """Timed calls per algorithm: ``budget`` GB over the size, from 11 (a median of 5
    moved by 15 % between runs on a shared VM) to 200."""
    return int(min(200, max(11, budget * 1e9 / max(nbytes, 1))))


def algorithms(collective: str, names: str) -> list[str]:
    """The algorithms ``--algorithms`` names (all of ``collective``'s when empty), with ``mpi`` added.

    Raises
    ------
    ValueError
        If a name is not an algorithm of ``collective``.
    """
    algs = [a for a in names.split(",") if a] or list(ALGORITHMS[collective])
    unknown = [a for a in algs if a not in ALGORITHMS[collective]]
    if unknown:
        raise ValueError(f"unknown {collective} algorithm(s) {', '.join(unknown)}; "
                         f"have {', '.join(ALGORITHMS[collective])}")
    return algs + ["mpi"] * ("mpi" not in algs)


def run(args, comm: MPI.Comm, progress=None) -> list[dict]:
    """Sweep and return one record per (size, algorithm): :func:`sweep` to the end."""
    return drain(sweep(args, comm, progress))


def steps(args) -> int:
    """Size visits of a sweep: its sizes times its passes (what ``progress`` counts)."""
    return len(sizes(args.min_bytes, args.max_bytes)) * args.passes


def sweep(args, comm: MPI.Comm, progress=None):
    """The sweep as a pass generator (see :mod:`collectives.passes`); returns the records.

    With ``args.passes`` > 1 the repeats of each size are split over that
    many passes through the sizes, so that a slow spell of a shared machine
    hits one pass of a size, not its whole median; each size's rows are
    printed after its last pass.  ``progress``, if given, is called after
    every size of every pass (see :class:`collectives.progress.Progress`).
    """
    p, rank = comm.Get_size(), comm.Get_rank()
    dtype = np.dtype(args.dtype)
    algs = algorithms(args.collective, args.algorithms)
    ours, lib = {a: _RUN[args.collective](a, comm) for a in algs}, library_comm(comm)
    plan = sizes(args.min_bytes, args.max_bytes)
    if not plan:
        return []
    # each size its own arrays, as a user's would be (numpy asks for huge pages
    # from 4 MiB), kept from pass to pass
    bufs = {}
    times = {nb: {a: [] for a in algs} for nb in plan}  # this rank's seconds per call, per call or block
    counts = {nb: 0 for nb in plan}  # calls timed per algorithm
    # a fresh order every repeat, the same on every rank: each algorithm follows
    # each other one alike, so none always inherits one neighbour's cache state
    orders = {nb: np.random.default_rng(nb) for nb in plan}
    records = []
    for k, one_pass in enumerate(visits(plan, args.passes, args.warmup), 1):
        for nbytes, warm, last in one_pass:
            if nbytes not in bufs:
                bufs[nbytes] = _buffers(args.collective, nbytes, dtype, p, rank, args.memory)
            x, y, n = bufs.pop(nbytes) if last else bufs[nbytes]
            library = library_call(args.collective, lib, n) if args.memory == "host" else ours["mpi"]
            runs = {a: library if a == "mpi" else ours[a] for a in algs}
            for a in algs:
                for _ in range(warm):
                    runs[a](x, y)
            count = share(args.repeats or _repeats(nbytes, args.budget), args.passes)
            blocks, calls = (count, 1) if args.timing == "barrier" else (min(count, BLOCKS), max(1, count // BLOCKS))
            for _ in range(blocks):
                for i in orders[nbytes].permutation(len(algs)):
                    a = algs[i]
                    run_ = runs[a]
                    comm.Barrier()
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        run_(x, y)
                    times[nbytes][a].append((time.perf_counter() - t0) / calls)
            counts[nbytes] += blocks * calls
            if last:
                records += _summarise(args.collective, times[nbytes], n * dtype.itemsize, p, comm, args.timing,
                                      counts[nbytes])
                if rank == 0 and not args.quiet:
                    for rec in records[-len(algs) :]:
                        print(_row(rec), flush=True)
            if progress is not None:
                progress(f"{format_size(nbytes)}, pass {k}/{args.passes}")
        yield
    return records


def _summarise(collective: str, times: dict, size: int, p: int, comm: MPI.Comm, timing: str, calls: int) -> list[dict]:
    """Records of one size: the median over calls (``barrier``) or blocks (``loop``) of the ranks' time per call.

    ``time_us`` is the slowest rank's (``barrier``) or the ranks' average
    (``loop``); ``min_us``, ``avg_us`` and ``max_us`` are over the ranks,
    each the median over the calls or blocks.
    """
    per_rank = {a: np.array(comm.allgather(t)) for a, t in times.items()}  # (ranks, samples)
    spread = {a: {k: float(np.median(f(t, axis=0))) for k, f in (("min", np.min), ("avg", np.mean), ("max", np.max))}
              for a, t in per_rank.items()}
    headline = {a: s["max" if timing == "barrier" else "avg"] for a, s in spread.items()}
    out = []
    for a in times:
        t = headline[a]
        algbw = size / t / 1e9
        out.append(
            {
                "collective": collective,
                "bytes": size,
                "algorithm": a,
                "time_us": t * 1e6,
                "min_us": spread[a]["min"] * 1e6,
                "avg_us": spread[a]["avg"] * 1e6,
                "max_us": spread[a]["max"] * 1e6,
                "algbw_GBps": algbw,
                "busbw_GBps": algbw * bus_factor(collective, p),
                "ratio_to_mpi": t / headline["mpi"],
                "timing": timing,
                "repeats": calls,
                "samples": per_rank[a].shape[1],
            }
        )
    return out


_HEAD = (f"{'bytes':>10} {'algorithm':>20} {'time_us':>12} {'min_us':>10} {'max_us':>10} {'algbw_GB/s':>11} "
         f"{'busbw_GB/s':>11} {'vs_mpi':>7}")


def _row(r: dict) -> str:
    return (
        f"{r['bytes']:>10} {r['algorithm']:>20} {r['time_us']:>12.2f} {r['min_us']:>10.2f} {r['max_us']:>10.2f} "
        f"{r['algbw_GBps']:>11.3f} {r['busbw_GBps']:>11.3f} {r['ratio_to_mpi']:>7.2f}"
    )


def write_hdf5(path: str, env: dict, records: list[dict]) -> None:
    """Records as columns of an HDF5 group, the environment as attributes."""
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in env.items():
            f.attrs[k] = v if not isinstance(v, list) else ",".join(map(str, v))
        for key in records[0]:
            col = [r[key] for r in records]
            f[key] = np.array(col, dtype=h5py.string_dtype()) if isinstance(col[0], str) else np.array(col)


PROG = "python -m collectives.bench"


def parser() -> cli.ArgumentParser:
    """The command line's options, each checked by its type (see :mod:`collectives.cli`)."""
    ap = cli.ArgumentParser(
        prog=PROG,
        description="OSU-style sweep of our collectives against the MPI library's own.",
    )
    ap.add_argument("--collective", default="allreduce", choices=sorted(ALGORITHMS))
    ap.add_argument("--algorithms", default="", help="comma-separated names (default: all); 'mpi' is always added")
    ap.add_argument("--min-bytes", type=cli.size_arg, metavar="BYTES", default=4,
                    help="smallest size, e.g. 4, 1K (default 4)")
    ap.add_argument("--max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest size, e.g. 64M (default)")
    ap.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64", "int32", "int64"])
    ap.add_argument("--memory", choices=["host", "cuda"], default="host",
                    help="numpy buffers, or cupy buffers on this rank's GPU (messages straight from the device "
                         "where the MPI is CUDA-aware, else staged; see collectives.cuda_aware)")
    ap.add_argument("--timing", choices=sorted(TIMINGS), default="loop",
                    help="loop: blocks of back-to-back calls after a barrier (default, as nccl-tests and OSU); "
                         "barrier: a barrier before every call")
    ap.add_argument("--warmup", type=cli.nonnegative_int, default=3, help="untimed calls per algorithm and size")
    ap.add_argument("--repeats", type=cli.positive_int,
                    help="timed calls per algorithm and size (default: scaled with size, see --budget)")
    ap.add_argument("--budget", type=cli.positive_seconds, metavar="SECONDS", default=0.2,
                    help="seconds of traffic per size at 1 GB/s, which sets the default repeats (default 0.2)")
    ap.add_argument("--passes", type=cli.positive_int, default=1,
                    help="split each size's repeats over this many passes through the sizes (default 1)")
    ap.add_argument("--json", metavar="PATH", help="write header and records as JSON")
    ap.add_argument("--output", metavar="PATH.h5", help="write records to HDF5")
    ap.add_argument("--quiet", action="store_true",
                    help="print only the header (and no progress lines on a terminal's stderr)")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and cross-check the options: :class:`collectives.cli.AgreedExit` (2) on every rank if bad.

    Every rank parses the same command line, so all of them stop here alike,
    before any message is sent.
    """
    ap = parser()
    args = ap.parse_args(argv)
    if args.max_bytes < args.min_bytes:
        ap.error(f"--max-bytes ({args.max_bytes} bytes) is below --min-bytes ({args.min_bytes} bytes)")
    try:
        algorithms(args.collective, args.algorithms)
    except ValueError as e:
        ap.error(f"--algorithms: {e}")
    if args.memory == "cuda":
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # no cupy, no driver, no device: all the same to the user
            ap.error(f"--memory cuda needs cupy and a usable GPU: {type(e).__name__}: {e}")
    return args


def main(argv=None) -> int:
    """Run the sweep; options as :func:`parser` describes.  Bad input: an agreed exit 2."""
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    cli.check_outputs(comm, {"--json": args.json, "--output": args.output}, PROG)
    with unchecked():  # time the collectives, not the cross-rank check of their arguments
        library_comm(comm)  # sets threads per rank, so the header reports what runs
        env = environment(comm)
        if comm.Get_rank() == 0:
            print(f"# collectives.bench {args.collective}, {args.dtype}, P={env['ranks']}")
            print(f"# timing: {args.timing} ({TIMINGS[args.timing]})")
            print(f"# memory: {args.memory}")
            print(f"# mpi: {MPI_ROW if args.memory == 'host' else MPI_ROW_DEVICE}")
            for k, v in env.items():
                print(f"# {k}: {v}")
            print(_HEAD, flush=True)
        records = run(args, comm, Progress.for_terminal(PROG, steps(args), args.quiet, comm))
    if comm.Get_rank() == 0:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"environment": env, "timing": args.timing, "memory": args.memory,
                           "mpi": MPI_ROW if args.memory == "host" else MPI_ROW_DEVICE, "records": records}, f,
                          indent=1)
        if args.output:
            write_hdf5(args.output, env, records)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
