"""A persistent all-reduce: buffers, op and algorithm settled once, then run as often as wanted.

As MPI 4's ``MPI_Allreduce_init``: :func:`allreduce_init` does everything
a call does before its first message (the checks, collectively under the
check mode; ``auto``'s choice; the schedule and its compiled plan) and
returns a :class:`PersistentAllreduce` bound to its buffers.  Each
:meth:`~PersistentAllreduce.run` then all-reduces whatever the send buffer
holds now, entering the compiled engine (or the library's ``MPI_Allreduce``
for ``"mpi"``) with none of a call's Python around it; under the check mode
it first agrees with the other ranks that they run the same operation.
Where nothing is compiled (cupy arrays, float16, 1 MiB or more, misaligned
buffers, an MPI without a binding) a run is the ordinary call, with the
settled algorithm.

The buffers must stay as they were at the init (same arrays, not resized,
not re-typed, the receive buffer writeable), as MPI asks of a persistent
operation's buffers; only their contents change between runs.
"""

from __future__ import annotations

import numpy as np

from . import buffers as B
from . import repeat
from .api import _prepare, _settle, allreduce
from .communicator import check_enabled, hold, library_comm

__all__ = ["allreduce_init", "PersistentAllreduce"]


class PersistentAllreduce:
    """An all-reduce of fixed buffers (see :func:`allreduce_init`); :meth:`run` runs it once."""

    __slots__ = ("sendbuf", "recvbuf", "op", "algorithm", "_comm", "_lib", "_run", "_send", "_recv")

    def __init__(self, comm, lib, sendbuf, recvbuf, op: str, algorithm: str, run_):
        self.sendbuf, self.recvbuf, self.op, self.algorithm = sendbuf, recvbuf, op, algorithm
        self._comm, self._lib, self._run = comm, lib, run_
        self._send, self._recv = B.flat(sendbuf), B.flat(recvbuf)

    def run(self):
        """All-reduce the send buffer's current contents into the receive buffer; return it.

        Collective: every rank runs its matching operation, in the same
        order.  Raises :class:`~collectives.CollectiveError` (every rank,
        under the check mode) where they differ, or where another thread
        holds the communicator.
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
                _settle(lib, "allreduce_run", send.size, send, self.op, self.algorithm, None,
                        in_place=self.recvbuf is send)
            self._run(self._send, self._recv)
        finally:
            lock.release()
        return self.recvbuf


def _nothing(send, recv) -> None:
    """The run of an all-reduce of zero elements."""


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
    if work is None:
        run_ = _nothing
    elif type(sendbuf) is np.ndarray and sendbuf.flags.aligned and recvbuf.flags.aligned:
        run_ = repeat.runner(chosen, op, work, lib)
    else:
        run_ = None
    return PersistentAllreduce(comm, lib, sendbuf, recvbuf, op, chosen, run_)
