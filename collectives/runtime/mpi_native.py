"""The MPI library's own collectives, behind the same signatures as ours.

All-gather and broadcast move raw bytes, so they take every dtype.  Floating
``min`` and ``max`` run as user ops that propagate NaN, as our algorithms do.
The reductions need the library to know the element type: Open MPI 4.1 has no
float16, and there ``"mpi"`` refuses float16 with a :class:`CollectiveError`
(see :func:`unsupported`) instead of failing inside the library.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from mpi4py import MPI

from . import device_engine
from .device import backend_of

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}
_PROPAGATING = {"min": np.minimum, "max": np.maximum}


@lru_cache(maxsize=None)
def _nan_propagating(op: str, dtype: np.dtype) -> MPI.Op:
    """A commutative user op: ``op`` by numpy's ``minimum``/``maximum``, which propagate NaN.

    MPI's own ``MPI_MIN``/``MPI_MAX`` follow C's comparisons, so a NaN
    survives or vanishes depending on where it meets the other operand
    (MPICH dropped it); ours keep it, and so does ``"mpi"`` with this op.
    """
    ufunc = _PROPAGATING[op]

    def reduce(inbuf, inoutbuf, datatype):
        into = np.frombuffer(inoutbuf, dtype)
        ufunc(np.frombuffer(inbuf, dtype), into, out=into)

    return MPI.Op.Create(reduce, commute=True)


def mpi_op(op: str, work: np.ndarray) -> MPI.Op:
    """The MPI op for ``op`` on ``work``: the built-in one, or a NaN-propagating min/max on floats."""
    if op in _PROPAGATING and work.dtype.kind == "f":
        return _nan_propagating(op, work.dtype)
    return _OPS[op]


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


def _call(call, buffers, comm: MPI.Comm, reads, writes, predefined: bool = True) -> None:
    """``call(*buffers)``; on device arrays straight where ``comm`` is CUDA-aware, else staged.

    A user op (NaN-propagating min/max) reads its buffers in Python, so on
    device arrays it always runs on staged host copies.
    """
    backend = backend_of(buffers[0])
    if backend is None:
        call(*buffers)
        return
    direct = getattr(comm, "cuda_aware", False) and predefined
    device_engine.library(call, buffers, backend, direct, reads, writes)


def allreduce(work: np.ndarray, op: str, comm: MPI.Comm) -> None:
    """``MPI_Allreduce`` in place on ``work``."""
    mpi = mpi_op(op, work)
    _call(lambda w: comm.Allreduce(MPI.IN_PLACE, w, op=mpi), (work,), comm, (True,), (True,), mpi.is_predefined)


def allreduce_start(work: np.ndarray, op: str, comm: MPI.Comm) -> MPI.Request:
    """``MPI_Iallreduce`` in place on ``work`` (a host array)."""
    return comm.Iallreduce(MPI.IN_PLACE, work, op=mpi_op(op, work))


def allgather(work: np.ndarray, offsets: tuple[int, ...], comm: MPI.Comm) -> None:
    """``MPI_Allgather`` (or ``Allgatherv`` for unequal blocks) in place, on bytes."""
    item = work.itemsize
    counts = [(offsets[i + 1] - offsets[i]) * item for i in range(len(offsets) - 1)]
    if len(set(counts)) == 1:
        def call(w):
            comm.Allgather(MPI.IN_PLACE, [_bytes(w), MPI.BYTE])
    else:
        displs = [o * item for o in offsets[:-1]]

        def call(w):
            comm.Allgatherv(MPI.IN_PLACE, [_bytes(w), (counts, displs), MPI.BYTE])
    _call(call, (work,), comm, (True,), (True,))


def reduce_scatter(
    send: np.ndarray, recv: np.ndarray, offsets: tuple[int, ...], op: str, comm: MPI.Comm
) -> None:
    """``MPI_Reduce_scatter`` with the counts given by ``offsets``."""
    counts = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    mpi = mpi_op(op, send)
    _call(lambda s, r: comm.Reduce_scatter(s, r, counts, op=mpi), (send, recv), comm, (True, False), (False, True),
          mpi.is_predefined)


def broadcast(buf: np.ndarray, root: int, comm: MPI.Comm) -> None:
    """``MPI_Bcast`` of the raw bytes."""
    _call(lambda b: comm.Bcast([_bytes(b), MPI.BYTE], root=root), (buf,), comm, (True,), (True,))
