"""``mpiexec -n P python -m mpi4py -m numa``: bind (optionally) and print every rank's binding.

    mpiexec -n 2 python -m mpi4py -m numa                         # report only
    mpiexec -n 2 python -m mpi4py -m numa --bind compact --mem preferred
    mpiexec -n 2 python -m mpi4py -m numa --flags spread          # launcher flags for this shape
    srun --mpi=pmi2 -n 4 python -m numa --expect-ranks 4          # fail if the world is not 4 ranks
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mpi4py import MPI

from . import binding, launcher, topology
from .placement import POLICIES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m numa", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--bind", choices=POLICIES, help="pin the ranks first")
    ap.add_argument("--threads", type=int, help="cores per rank (default: as many as fit)")
    ap.add_argument("--mem", choices=["local", "preferred", "bind"], default="preferred",
                    help="memory policy set with --bind (default preferred: the rank's node)")
    ap.add_argument("--flags", choices=POLICIES, help="print MPICH, Open MPI and Slurm flags for that placement")
    ap.add_argument("--expect-ranks", type=int, help="exit 3 unless the MPI world has this many ranks")
    ap.add_argument("--json", metavar="PATH", help="write every rank's binding as JSON")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if args.expect_ranks is not None and size != args.expect_ranks:
        if rank == 0:
            print(f"numa: the MPI world has {size} rank(s), expected {args.expect_ranks}: wrong --mpi "
                  "plugin for this MPI (PyPI MPICH under srun needs --mpi=pmi2)?", file=sys.stderr, flush=True)
        return 3
    topo = topology.read(allowed=range(os.cpu_count() or 1))  # the machine, not just this rank's mask
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local = node.Get_rank()
    node.Free()
    try:
        b = binding.bind(args.bind, comm, args.threads, args.mem) if args.bind else binding.current(rank, local, topo)
    except ValueError as e:
        if rank == 0:
            print(f"numa: {e}", file=sys.stderr, flush=True)
        return 2
    everyone = comm.gather(b, root=0)
    if rank == 0:
        print(f"# {topo.describe()}, {size} rank(s)")
        for x in everyone:
            print(x.line())
        if args.flags:
            ranks_here = sum(1 for x in everyone if x.host == everyone[0].host)
            for name, value in launcher.flags(topo, ranks_here, args.flags, args.threads).items():
                print(f"{name:>8}: {value}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump([vars(x) for x in everyone], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
