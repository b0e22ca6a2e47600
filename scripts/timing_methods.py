"""The library's all-reduce timed four ways in one run, and ``auto`` beside it: bench methods and plain loops.

    mpiexec -n 2 python -m mpi4py scripts/timing_methods.py --json timing_methods.json

For each size, interleaved in rounds so that drift hits all alike:

- ``raw``: a plain loop of back-to-back ``comm.Allreduce`` calls (mpi4py, a duplicate of the world);
- ``ours``: a plain loop of back-to-back ``collectives.allreduce(algorithm="mpi")`` calls (our wrapper
  around the same call: argument checks, dispatch);
- ``auto``: the same loop of ``collectives.allreduce(algorithm="auto")``: our hand-written algorithms;
- ``persistent``, ``persistent_auto`` and ``raw_persistent``: loops of ``run()`` of our
  ``collectives.allreduce_init`` (``"mpi"`` and ``auto``), and of mpi4py's own persistent
  ``comm.Allreduce_init`` (``Start`` then ``Wait``, MPI 4; NaN where the library lacks it);
- ``bench loop`` and ``bench barrier``: ``collectives.bench``'s ``mpi`` row (the library's call through
  mpi4py, as ``raw``) with ``--timing loop`` and ``--timing barrier`` (its own calls, warm-up and blocks).

A plain loop's block is a barrier then ``--calls`` calls (fewer from 16 KiB), each rank's time per call
averaged over the ranks, as the bench's ``loop`` does, on buffers placed as the bench places them
(:func:`collectives.runtime.buffers.at_page_offset`); its figure is the median over the rounds.
``bench loop`` should match ``raw`` (the same calls, timed the same way); ``ours / raw`` is our
wrapper's cost; ``auto / raw`` our algorithms against the library's, each called from Python;
``barrier / loop`` what a barrier before every call adds.  All calls are out of place, with the
check mode off, so ours repeat (:mod:`collectives.runtime.repeat`).
"""

from __future__ import annotations

import json
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives import bench, cli
from collectives.bench import environment, format_size
from collectives.runtime.buffers import at_page_offset
from collectives.runtime.communicator import library_comm, unchecked


def _plain(call, calls: int, comm) -> float:
    """A barrier, ``calls`` back-to-back calls; the ranks' average seconds per call."""
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    return comm.allreduce((time.perf_counter() - t0) / calls) / comm.Get_size()


def _library_persistent(comm, x, y):
    """mpi4py's persistent all-reduce of ``x`` into ``y``, or None where the MPI lacks it (before MPI 4)."""
    try:
        return comm.Allreduce_init(x, y)
    except (NotImplementedError, MPI.Exception):
        return None


def _bench(nbytes: int, timing: str, repeats: int, comm) -> float:
    args = bench.parse_args(["--min-bytes", str(nbytes), "--max-bytes", str(nbytes), "--algorithms", "mpi",
                             "--timing", timing, "--repeats", str(repeats), "--warmup", "2", "--quiet"])
    return next(r["time_us"] for r in bench.run(args, comm)) * 1e-6


def parser() -> cli.ArgumentParser:
    """The command line's options."""
    ap = cli.ArgumentParser(prog="scripts/timing_methods.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=cli.size_list, default=[4, 4096, 65536, 1 << 20], help="bytes, comma-separated")
    ap.add_argument("--calls", type=cli.positive_int, default=200, help="calls per block (fewer from 16 KiB)")
    ap.add_argument("--rounds", type=cli.positive_int, default=5, help="rounds of the four methods per size")
    ap.add_argument("--json", metavar="PATH")
    return ap


def main() -> int:
    args = parser().parse_args()
    world = MPI.COMM_WORLD
    cli.check_outputs(world, {"--json": args.json}, "scripts/timing_methods.py")
    raw = world.Dup()
    rows = []
    with unchecked():
        library_comm(world)  # threads per rank, as the bench sets them
        for nbytes in args.sizes:
            x = at_page_offset(max(nbytes // 4, 1), np.float32)  # the bench's buffers: same offsets in the page
            x[...] = 1.0
            y = at_page_offset(x.size, np.float32)
            calls = max(10, min(args.calls, int(args.calls * 16384 / nbytes)))
            ours_persistent = collectives.allreduce_init(x, y, algorithm="mpi", comm=world)
            auto_persistent = collectives.allreduce_init(x, y, comm=world)
            raw_persistent = _library_persistent(raw, x, y)
            methods = {
                "raw": lambda: _plain(lambda: raw.Allreduce(x, y), calls, world),
                "ours": lambda: _plain(lambda: collectives.allreduce(x, y, algorithm="mpi", comm=world), calls,
                                       world),
                "auto": lambda: _plain(lambda: collectives.allreduce(x, y, comm=world), calls, world),
                "persistent": lambda: _plain(ours_persistent.run, calls, world),
                "persistent_auto": lambda: _plain(auto_persistent.run, calls, world),
                **({} if raw_persistent is None else {
                    "raw_persistent": lambda: _plain(lambda: (raw_persistent.Start(), raw_persistent.Wait()),
                                                     calls, world)}),
                "bench_loop": lambda: _bench(nbytes, "loop", calls, world),
                "bench_barrier": lambda: _bench(nbytes, "barrier", calls, world),
            }
            for run in methods.values():  # warm-up
                run()
            times = {name: [] for name in methods}
            for _ in range(args.rounds):
                for name, run in methods.items():
                    times[name].append(run())
            if raw_persistent is not None:
                raw_persistent.Free()
            us = {name: float(np.median(t)) * 1e6 for name, t in times.items()}
            us.setdefault("raw_persistent", float("nan"))
            rows.append({"bytes": x.nbytes, "calls": calls, **{f"{k}_us": v for k, v in us.items()},
                         "ours_vs_raw": us["ours"] / us["raw"], "auto_vs_raw": us["auto"] / us["raw"],
                         "bench_loop_vs_raw": us["bench_loop"] / us["raw"],
                         "persistent_vs_raw": us["persistent"] / us["raw"],
                         "persistent_auto_vs_raw": us["persistent_auto"] / us["raw"],
                         "persistent_vs_raw_persistent": us["persistent"] / us["raw_persistent"],
                         "persistent_auto_vs_raw_persistent": us["persistent_auto"] / us["raw_persistent"],
                         "barrier_vs_loop": us["bench_barrier"] / us["bench_loop"]})
    raw.Free()
    env = environment(world)
    if world.Get_rank() == 0:
        print(f"# timing_methods: P={world.Get_size()}, {env['mpi_library']}, float32 all-reduce, median of "
              f"{args.rounds} rounds")
        print(f"{'bytes':>9} {'raw us':>8} {'ours us':>8} {'auto us':>8} {'loop us':>8} {'barrier us':>10} "
              f"{'ours/raw':>9} {'auto/raw':>9} {'loop/raw':>9} {'barrier/loop':>12}")
        for r in rows:
            print(f"{format_size(r['bytes']):>9} {r['raw_us']:>8.2f} {r['ours_us']:>8.2f} {r['auto_us']:>8.2f} "
                  f"{r['bench_loop_us']:>8.2f} {r['bench_barrier_us']:>10.2f} {r['ours_vs_raw']:>9.2f} "
                  f"{r['auto_vs_raw']:>9.2f} {r['bench_loop_vs_raw']:>9.2f} {r['barrier_vs_loop']:>12.2f}")
        print("# persistent: ours = allreduce_init(...).run(), raw = mpi4py's Allreduce_init Start + Wait")
        print(f"{'bytes':>9} {'raw us':>8} {'ours us':>8} {'auto us':>8} {'ours/raw':>9} {'auto/raw':>9} "
              f"{'ours/call raw':>13} {'auto/call raw':>13}")
        for r in rows:
            print(f"{format_size(r['bytes']):>9} {r['raw_persistent_us']:>8.2f} {r['persistent_us']:>8.2f} "
                  f"{r['persistent_auto_us']:>8.2f} {r['persistent_vs_raw_persistent']:>9.2f} "
                  f"{r['persistent_auto_vs_raw_persistent']:>9.2f} {r['persistent_vs_raw']:>13.2f} "
                  f"{r['persistent_auto_vs_raw']:>13.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"environment": env, "options": vars(args), "records": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
