"""The MPI library's own collectives, behind the same signatures as ours."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}


def allreduce(work: np.ndarray, op: str, comm: MPI.Comm) -> None:
    """``MPI_Allreduce`` in place on ``work``."""
    comm.Allreduce(MPI.IN_PLACE, work, op=_OPS[op])


def allgather(work: np.ndarray, offsets: tuple[int, ...], comm: MPI.Comm) -> None:
    """``MPI_Allgather`` (or ``Allgatherv`` for unequal blocks) in place on ``work``."""
    counts = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    if len(set(counts)) == 1:
        comm.Allgather(MPI.IN_PLACE, work)
    else:
        comm.Allgatherv(MPI.IN_PLACE, [work, (counts, list(offsets[:-1]))])


def reduce_scatter(
    send: np.ndarray, recv: np.ndarray, offsets: tuple[int, ...], op: str, comm: MPI.Comm
) -> None:
    """``MPI_Reduce_scatter`` with the counts given by ``offsets``."""
    counts = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    comm.Reduce_scatter(send, recv, counts, op=_OPS[op])


def broadcast(buf: np.ndarray, root: int, comm: MPI.Comm) -> None:
    """``MPI_Bcast``."""
    comm.Bcast(buf, root=root)
