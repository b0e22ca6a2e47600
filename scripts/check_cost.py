"""What the cross-rank argument check costs a call: the same calls timed with it on and off, side by side.

    mpiexec -n 2 python -m mpi4py scripts/check_cost.py --json check_cost.json

OSU's method: a barrier, then ``--calls`` back-to-back calls timed together,
the average per call, the slowest rank's.  Blocks with the check on and off
alternate ``--blocks`` times per (size, algorithm), so drift hits both alike;
each row is the median over blocks, and ``extra_us`` their difference.
"""

from __future__ import annotations

import json
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.bench import environment, format_size
from collectives import cli


def _block(x, algorithm, calls, comm) -> float:
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        collectives.allreduce(x, x, algorithm=algorithm, comm=comm)
    return comm.allreduce((time.perf_counter() - t0) / calls, op=MPI.MAX)


def parser() -> cli.ArgumentParser:
    """The command line's options."""
    ap = cli.ArgumentParser(prog="scripts/check_cost.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=cli.size_list, default=[4, 4096, 65536, 1 << 20], help="bytes, comma-separated")
    ap.add_argument("--algorithms", default="mpi,recursive_doubling,ring")
    ap.add_argument("--calls", type=cli.positive_int, default=200, help="calls per block (fewer from 64 KiB)")
    ap.add_argument("--blocks", type=cli.positive_int, default=7, help="on/off block pairs per row")
    ap.add_argument("--json", metavar="PATH")
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    unknown = set(args.algorithms.split(",")) - set(collectives.ALGORITHMS["allreduce"])
    if unknown:
        ap.error(f"--algorithms: unknown all-reduce algorithm(s) {', '.join(sorted(unknown))}")
    comm = MPI.COMM_WORLD
    cli.check_outputs(comm, {"--json": args.json}, ap.prog)
    rows = []
    for nbytes in args.sizes:
        x = np.ones(max(nbytes // 4, 1), np.float32)
        calls = max(10, min(args.calls, int(args.calls * 16384 / nbytes)))
        for algorithm in args.algorithms.split(","):
            times = {True: [], False: []}
            for checked in (True, False):  # warm both
                collectives.set_check(checked)
                _block(x, algorithm, 5, comm)
            for _ in range(args.blocks):
                for checked in (True, False):
                    collectives.set_check(checked)
                    times[checked].append(_block(x, algorithm, calls, comm))
            collectives.set_check(True)
            on, off = (float(np.median(times[c])) * 1e6 for c in (True, False))
            rows.append({"bytes": nbytes, "algorithm": algorithm, "on_us": on, "off_us": off,
                         "extra_us": on - off, "ratio": on / off, "calls": calls, "blocks": args.blocks})
            if comm.Get_rank() == 0:
                print(f"{format_size(nbytes):>6} {algorithm:>20}  on {on:9.2f} us  off {off:9.2f} us  "
                      f"extra {on - off:7.2f} us  x{on / off:5.3f}", flush=True)
    env = environment(comm)
    if comm.Get_rank() == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "records": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
