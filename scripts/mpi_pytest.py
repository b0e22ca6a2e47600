"""Run pytest on every rank: rank 0 prints, the others log to files; exit code agreed by all.

Launched by scripts/run_tests.sh as
``mpiexec -n P python -m mpi4py scripts/mpi_pytest.py RESULTS_DIR [pytest args]``.
Each rank writes ``RESULTS_DIR/mpi-P{P}-rank{r}.xml``; ranks other than 0
write their terminal output to ``RESULTS_DIR/mpi-P{P}-rank{r}.log``.
A rank that dies leaves no XML: scripts/summarize_junit.py counts its run as failed.
A non-zero code (failed tests, or none collected) is agreed by every rank, so MPI
is finalized rather than aborted (:func:`collectives.cli.run_main`).
"""

import os
import sys

from mpi4py import MPI

from collectives.cli import AgreedExit, run_main


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    out_dir, args = sys.argv[1], sys.argv[2:]
    stem = os.path.join(out_dir, f"mpi-P{size}-rank{rank}")
    if rank:
        log = os.open(stem + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    import pytest

    code = pytest.main(["--with-mpi", f"--junitxml={stem}.xml", *args])
    code = comm.allreduce(int(code), op=MPI.MAX)
    if code:
        raise AgreedExit(code)
    return 0


if __name__ == "__main__":
    run_main(main)
