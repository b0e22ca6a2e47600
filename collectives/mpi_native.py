"""The MPI library's own collectives, behind the same signatures as ours.

All-gather and broadcast move raw bytes, so they take every dtype.  The
reductions need the library to know the element type: Open MPI 4.1 has no
float16, and there ``"mpi"`` refuses float16 with a :class:`CollectiveError`
(see :func:`unsupported`) instead of failing inside the library.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from mpi4py import MPI

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}


@lru_cache(maxsize=None)
def _reduces(dtype: np.dtype) -> bool:
    """Whether the library can reduce ``dtype`` (probed locally, on COMM_SELF)."""
    x = np.ones(1, dtype)
    y = np.zeros(1, dtype)
    try:
        MPI.COMM_SELF.Allreduce(x, y, op=MPI.SUM)
    except (MPI.Exception, KeyError, ValueError, TypeError):
        return False
    return bool(y[0] == 1)


def unsupported(dtype: np.dtype) -> str | None:
    """Why the library's own reductions cannot take ``dtype``, or None if they can."""
    if _reduces(np.dtype(dtype)):
        return None
    return (
        f"this MPI library ({MPI.Get_library_version().splitlines()[0].strip()}) cannot reduce "
        f"{np.dtype(dtype)}; use one of our algorithms, or convert to float32"
    )


def _bytes(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8)


def allreduce(work: np.ndarray, op: str, comm: MPI.Comm) -> None:
    """``MPI_Allreduce`` in place on ``work``."""
    comm.Allreduce(MPI.IN_PLACE, work, op=_OPS[op])


def allreduce_start(work: np.ndarray, op: str, comm: MPI.Comm) -> MPI.Request:
    """``MPI_Iallreduce`` in place on ``work``."""
    return comm.Iallreduce(MPI.IN_PLACE, work, op=_OPS[op])


def allgather(work: np.ndarray, offsets: tuple[int, ...], comm: MPI.Comm) -> None:
    """``MPI_Allgather`` (or ``Allgatherv`` for unequal blocks) in place, on bytes."""
    item = work.itemsize
    counts = [(offsets[i + 1] - offsets[i]) * item for i in range(len(offsets) - 1)]
    if len(set(counts)) == 1:
        comm.Allgather(MPI.IN_PLACE, [_bytes(work), MPI.BYTE])
    else:
        displs = [o * item for o in offsets[:-1]]
        comm.Allgatherv(MPI.IN_PLACE, [_bytes(work), (counts, displs), MPI.BYTE])


def reduce_scatter(
    send: np.ndarray, recv: np.ndarray, offsets: tuple[int, ...], op: str, comm: MPI.Comm
) -> None:
    """``MPI_Reduce_scatter`` with the counts given by ``offsets``."""
    counts = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    comm.Reduce_scatter(send, recv, counts, op=_OPS[op])


def broadcast(buf: np.ndarray, root: int, comm: MPI.Comm) -> None:
    """``MPI_Bcast`` of the raw bytes."""
    comm.Bcast([_bytes(buf), MPI.BYTE], root=root)
