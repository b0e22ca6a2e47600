"""A persistent all-reduce: buffers, op and algorithm settled once, then run as often as wanted.

As MPI 4's ``MPI_Allreduce_init``: :func:`allreduce_init` does everything
a call does before its first message (the checks, collectively under the
check mode; ``auto``'s choice; the schedule and its compiled plan) and
returns a :class:`PersistentAllreduce` bound to its buffers.  Each
:meth:`~PersistentAllreduce.run` then all-reduces whatever the send buffer
holds now, entering the compiled engine (or the library's ``MPI_Allreduce``
for ``"mpi"``) with none of a call's Python around it; under the check mode
it first agrees with the other ranks that they run the same operation.
Where nothing is compiled (cupy arrays, float16, our algorithms on 1 MiB
or more, misaligned buffers, an MPI without a binding) a run is the
ordinary call, with the settled algorithm.

The buffers must stay as they were at the init (same arrays, not resized,
not re-typed, the receive buffer writeable), as MPI asks of a persistent
operation's buffers; only their contents change between runs.  A run
checks that they did not (in compiled code, as a repeated call does) and
raises :class:`~collectives.CollectiveError` where they did.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..errors import CollectiveError
from . import repeat, traffic
from .api import _prepare, _settle, allreduce
from .communicator import check_enabled, hold, library_comm

__all__ = ["allreduce_init", "PersistentAllreduce"]


class PersistentAllreduce:
    """An all-reduce of fixed buffers (see :func:`allreduce_init`); :meth:`run` runs it once."""

    __slots__ = ("sendbuf", "recvbuf", "op", "algorithm", "_comm", "_lib", "_run", "_dtype", "_size")

    def __init__(self, comm, lib, sendbuf, recvbuf, op: str, algorithm: str, run_: repeat.Runner | None):
        self.sendbuf, self.recvbuf, self.op, self.algorithm = sendbuf, recvbuf, op, algorithm
        self._comm, self._lib, self._run = comm, lib, run_
        self._dtype, self._size = getattr(sendbuf, "dtype", None), getattr(sendbuf, "size", 0)

    def run(self):
        """All-reduce the send buffer's current contents into the receive buffer; return it.

        Collective: every rank runs its matching operation, in the same
        order.  Raises :class:`~collectives.CollectiveError` (every rank,
        under the check mode) where they differ, where the buffers changed
        since the init (dtype, size, contiguity, alignment, writeability),
        or where another thread holds the communicator.
        """
        if self._run is None:  # nothing compiled: the ordinary call, which checks itself
            return allreduce(self.sendbuf, self.recvbuf, op=self.op, algorithm=self.algorithm, comm=self._comm)
        lib = self._lib
        lock = lib.lock
        if not lock.acquire(False):
            lib.in_use.acquire()  # raises: another thread holds the communicator
        try:
            if check_enabled():
                send = self.sendbuf
                _settle(lib, "allreduce_run", send.size, send, self.op, self.algorithm, self._changed(),
                        in_place=self.recvbuf is send)
            enter, at, token, totals, _ = self._run
            err = enter(id(self.sendbuf), id(self.recvbuf), at, token)
        finally:
            lock.release()
        if err:
            if err == repeat.REFUSED:
                raise CollectiveError(self._changed() or "the buffers of a persistent all-reduce changed since "
                                      "allreduce_init")
            raise MPI.Exception(err)
        if totals is not None and traffic.OPEN.active:
            traffic.record(*totals)
        return self.recvbuf

    def _changed(self) -> str | None:
        """What no longer holds of the buffers as :func:`allreduce_init` settled them, or None."""
        dtype, size = self._dtype, self._size
        for name, buf, writes in (("sendbuf", self.sendbuf, False), ("recvbuf", self.recvbuf, True)):
            flags = buf.flags
            if (buf.dtype is not dtype or buf.size != size or not (flags.c_contiguous and flags.aligned)
                    or writes and not flags.writeable):
                return (f"the {name} of a persistent all-reduce changed since allreduce_init: it must stay "
                        f"{size} elements of {dtype}, C-contiguous, aligned{', writeable' if writes else ''}")
        return None


def allreduce_init(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None) -> PersistentAllreduce:
    """Settle an all-reduce of these buffers once; its :meth:`~PersistentAllreduce.run` all-reduces them.

    Parameters are those of :func:`collectives.allreduce`, with the same
    checks, made here (collectively under the check mode).  ``recvbuf=None``
    allocates the receive buffer once: ``.recvbuf``.

    Returns
    -------
    PersistentAllreduce
        ``.algorithm`` is the algorithm it runs (``auto`` resolved).

    Examples
    --------
    >>> step = collectives.allreduce_init(grad, grad, op="avg")   # doctest: +SKIP
    >>> for batch in batches:                                      # doctest: +SKIP
    ...     backward(batch, out=grad)
    ...     step.run()
    """
    lib = library_comm(comm)
    with hold(lib):
        chosen, work, recvbuf = _prepare("allreduce_init", sendbuf, recvbuf, op, algorithm, lib)
    run_ = None  # zero elements, cupy, misaligned buffers: the ordinary call
    if (work is not None and type(sendbuf) is np.ndarray and type(recvbuf) is np.ndarray
            and recvbuf.dtype is sendbuf.dtype and sendbuf.flags.aligned and recvbuf.flags.aligned):
        run_ = repeat.runner(chosen, op, work, lib, sendbuf.dtype)
    return PersistentAllreduce(comm, lib, sendbuf, recvbuf, op, chosen, run_)
