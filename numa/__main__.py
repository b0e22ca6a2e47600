"""``mpiexec -n P python -m mpi4py -m numa``: bind (optionally) and print every rank's binding.

    mpiexec -n 2 python -m mpi4py -m numa                         # report only
    mpiexec -n 2 python -m mpi4py -m numa --bind compact --mem preferred
    mpiexec -n 2 python -m mpi4py -m numa --flags spread          # launcher flags for this shape
    srun --mpi=pmi2 -n 4 python -m numa --expect-ranks 4          # fail if the world is not 4 ranks

Bad input exits 2 on every rank, a world of the wrong size 3, with one
message from rank 0; MPI is finalized, not aborted (see :mod:`collectives.cli`).
"""

from __future__ import annotations

import argparse
import json
import os

from mpi4py import MPI

from collectives import cli

from . import binding, launcher, topology
from .placement import POLICIES

PROG = "python -m numa"


def parser() -> cli.ArgumentParser:
    """The command line's options, each checked by its type (see :mod:`collectives.cli`)."""
    ap = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--bind", choices=POLICIES, help="pin the ranks first")
    ap.add_argument("--threads", type=cli.positive_int, help="cores per rank (default: as many as fit)")
    ap.add_argument("--mem", choices=["local", "preferred", "bind"], default="preferred",
                    help="memory policy set with --bind (default preferred: the rank's node)")
    ap.add_argument("--flags", choices=POLICIES, help="print MPICH, Open MPI and Slurm flags for that placement")
    ap.add_argument("--expect-ranks", type=cli.positive_int, help="exit 3 unless the MPI world has this many ranks")
    ap.add_argument("--json", metavar="PATH", help="write every rank's binding as JSON")
    return ap


def main(argv=None) -> int:
    """Bind (with ``--bind``) and report every rank; bad input: an agreed exit 2, a wrong world 3."""
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    wrong_world = None
    if args.expect_ranks is not None and size != args.expect_ranks:
        wrong_world = (f"the MPI world has {size} rank(s), expected {args.expect_ranks}: wrong --mpi "
                       "plugin for this MPI (PyPI MPICH under srun needs --mpi=pmi2)?")
    cli.agree_or_exit(comm, wrong_world, PROG, code=3)
    cli.check_outputs(comm, {"--json": args.json}, PROG)
    topo = topology.read(allowed=range(os.cpu_count() or 1))  # the machine, not just this rank's mask
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local = node.Get_rank()
    node.Free()
    error = None
    try:
        b = binding.bind(args.bind, comm, args.threads, args.mem) if args.bind else binding.current(rank, local, topo)
    except (ValueError, OSError) as e:
        error = str(e)
    cli.agree_or_exit(comm, error, PROG)
    everyone = comm.gather(b, root=0)
    flags, error = {}, None
    if rank == 0 and args.flags:
        ranks_here = sum(1 for x in everyone if x.host == everyone[0].host)
        try:
            flags = launcher.flags(topo, ranks_here, args.flags, args.threads)
        except ValueError as e:
            error = f"--flags {args.flags}: {e}"
    cli.agree_or_exit(comm, error, PROG)
    if rank == 0:
        print(f"# {topo.describe()}, {size} rank(s)")
        for x in everyone:
            print(x.line())
        for name, value in flags.items():
            print(f"{name:>8}: {value}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump([vars(x) for x in everyone], f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
