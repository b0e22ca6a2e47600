"""Nonblocking all-reduce: :func:`allreduce_start` posts the first round, :class:`Pending` moves the rest.

A started all-reduce must be waited.  One that is not leaves its buffer
unreduced and the ranks that do wait hanging, so at exit the library warns
(``RuntimeWarning``, one line naming each) about every one still pending.
None can be garbage-collected before that: its communicator's slot keeps
it until the next start on that slot waits it (see
:func:`collectives.runtime.communicator.pending_comm`).
"""

from __future__ import annotations

import atexit
import warnings

import numpy as np
from mpi4py import MPI

from . import mpi_native
from .device import is_device
from .api import _finish, _prepare
from .communicator import hold, library_comm, pending_comm, pending_slots
from .engine import compile_rounds, rounds_posted
from .reduce_ops import arithmetic_op
from .registry import ALLREDUCE_ROUNDS, FAMILIES

__all__ = ["allreduce_start", "Pending"]


def allreduce_start(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None,
                    name: str | None = None) -> "Pending":
    """Start an all-reduce and return at once: :meth:`Pending.progress` moves it, :meth:`Pending.wait` ends it.

    Same arguments, checks and result as :func:`collectives.allreduce`; the
    buffers must not be touched until :meth:`Pending.wait` returns.  Several
    may be in flight at once (each has its own scratch and its own duplicate
    of the communicator, :data:`collectives.runtime.communicator.PENDING_SLOTS` of them;
    the start that would reuse one waits for its previous user first),
    started in the same order on every rank.  Our algorithms post one round
    of messages at a time: ``progress()`` tests the round in flight and,
    when it is complete, reduces it and posts the next, so calling it
    between pieces of computation (the layers of a backward pass) lets
    communication overlap computation even without an asynchronous-progress
    thread in MPI.  ``"mpi"`` uses ``MPI_Iallreduce``.  Device (cupy) buffers are
    all-reduced before this returns.

    Parameters
    ----------
    name : str, optional
        Names the operation, the same on every rank (as Horovod names its
        tensors).  The check mode compares it, so operations of the same
        size and dtype started in a different order on different ranks
        raise instead of swapping their results; without names such a swap
        cannot be seen (nothing else tells two equal-shaped buffers apart).
    """
    lib = library_comm(comm)
    with hold(lib):
        return _start(sendbuf, recvbuf, op, algorithm, lib, name)


class Pending:
    """An all-reduce in flight (see :func:`allreduce_start`)."""

    def __init__(self, recvbuf, finish, steps=None, request=None, name=None):
        self._recvbuf, self._finish = recvbuf, finish
        self._steps, self._request = steps, request
        self.name = name
        self._reqs = next(steps, None) if steps is not None else None
        self.done = steps is None and request is None
        if self.done:
            finish()

    def progress(self) -> bool:
        """Advance without blocking as far as the messages allow; True once complete."""
        if self.done:
            return True
        if self._request is not None:
            if self._request.Test():
                self._complete()
            return self.done
        while self._reqs is not None and MPI.Request.Testall(self._reqs):
            self._reqs = next(self._steps, None)
        if self._reqs is None:
            self._complete()
        return self.done

    def wait(self):
        """Block until complete; return the receive buffer."""
        if not self.done:
            if self._request is not None:
                self._request.Wait()
            else:
                while self._reqs is not None:
                    self._reqs = next(self._steps, None)
            self._complete()
        return self._recvbuf

    def _complete(self):
        self.done = True
        self._finish()

    def describe(self) -> str:
        """``"all-reduce 'name' of N float32"``, for warnings."""
        what = f" {self.name!r}" if self.name is not None else ""
        return f"all-reduce{what} of {self._recvbuf.size} {self._recvbuf.dtype}"


def _start(sendbuf, recvbuf, op, algorithm, lib, name) -> Pending:
    """:func:`allreduce_start` on the held library communicator ``lib``."""
    chosen, work, recvbuf = _prepare("allreduce_start", sendbuf, recvbuf, op, algorithm, lib, name)
    if work is None:
        return Pending(recvbuf, lambda: None, name=name)
    reduce_op = arithmetic_op(op)

    def done():
        _finish(work, recvbuf, op, lib.Get_size())

    if is_device(sendbuf):  # device arrays: all-reduced now, by the blocking call
        FAMILIES["allreduce"][chosen](work, reduce_op, lib)
        return Pending(recvbuf, done, name=name)
    own, slot = pending_comm(lib)
    if slot[0] is not None and not slot[0].done:
        slot[0].wait()  # PENDING_SLOTS starts ago, on the same communicator
    if chosen == "mpi":
        slot[0] = Pending(recvbuf, done, request=mpi_native.allreduce_start(work, reduce_op, own), name=name)
    else:
        rounds = ALLREDUCE_ROUNDS[chosen](work, own)
        tmp = np.empty(compile_rounds(rounds, work.itemsize).scratch, work.dtype)
        slot[0] = Pending(recvbuf, done, steps=rounds_posted(rounds, work, own, reduce_op, tmp), name=name)
    return slot[0]


def _warn_unwaited() -> None:
    """At exit: one warning naming the all-reduces started but never waited."""
    left = [slot[0] for slot in pending_slots() if slot[0] is not None and not slot[0].done]
    if left:
        warnings.warn(f"collectives: {len(left)} started all-reduce(s) never waited: "
                      + "; ".join(p.describe() for p in left)
                      + "; their buffers are not reduced, and ranks that wait for them hang",
                      RuntimeWarning, stacklevel=1)


atexit.register(_warn_unwaited)
