"""A repeated all-reduce skips what its first call already settled: the small-message fast path.

A training step all-reduces the same gradient buffers, of the same sizes,
with the same op and algorithm, thousands of times.  With the check mode
off, the first such call on a communicator runs the whole path
(validation, ``auto``'s choice, the schedule, its compiled plan) and leaves
a :class:`Runner` in :data:`~collectives.runtime.communicator.REPEATS`
under the call's *signature*: communicator, dtype, size, op and algorithm
name.  A later call with that signature goes straight into compiled code
(:func:`collectives.runtime.compiled.allreduce_repeat`) with the two
buffers' ``id()``: it checks there what may differ between two arrays of
one signature (numpy, the dtype object, C-contiguous, aligned, the receive
buffer writeable and of the size, no overlap; see
:mod:`collectives.runtime.array_layout`), copies, and runs the plan
packed at the first call, or the library's own ``MPI_Allreduce``.  On the
dev VM (P = 1, float32, 4 bytes) that call costs about 0.9 us of Python
and compiled checks around the all-reduce, as mpi4py's own
``comm.Allreduce`` does (docs/bench.md).

Buffers the compiled checks refuse take the whole path, and so raise what
they raise there (or run, misaligned ones for instance).  A table entry is
dropped when its communicator is freed, all of them when ``auto``'s
profile changes (:func:`collectives.runtime.auto.set_profile`); at most
:data:`KEPT` are kept, and our algorithms' messages of :data:`LARGEST`
bytes or more are not (there the checks cost nothing beside the transfer,
and the reductions may run on several threads).  The registry's
chunk sizes (``RING_SEGMENT_BYTES``, ``TREE_CHUNK_BYTES``) are read at a
signature's first call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from mpi4py import MPI
from numba import types

from . import array_layout, mpi_native, native, traffic
from .communicator import REPEATS
from .compiled import (LIBRARY, OP_CODES, PLAN, REFUSED, REPEAT_DTYPES, S_ARRAY, S_CALLS, S_DESCR, S_DIVIDE,
                       S_HANDLES, S_KIND, S_N, S_OP, S_PLAN, S_PLAN_N, S_REQS, S_REQS_N, S_TMP, S_TMP_N,
                       STATE_SLOTS, allreduce_repeat)
from .engine import compile_rounds
from .registry import ALLREDUCE_ROUNDS

__all__ = ["Runner", "runner", "attempt", "signature", "keep", "kept", "KEPT", "LARGEST", "REFUSED"]

#: Signatures kept, over all communicators; the oldest is dropped beyond this.
KEPT = 1024
#: Calls of our algorithms of this many bytes or more are not kept (the library's are, below 2**31 elements).
LARGEST = 1 << 20


class Runner(NamedTuple):
    """A compiled all-reduce of one signature: ``enter(id(send), id(recv), at, token)`` runs it.

    It returns 0, an MPI error code, or :data:`REFUSED` (nothing sent).
    """

    #: :func:`~collectives.runtime.compiled.allreduce_repeat`'s entry point for ``token``
    enter: Callable[[int, int, int, int], int]
    #: the address of its state
    at: int
    #: the literal selecting its dtype and handle width
    token: int
    #: a call's ``(sent, received, bytes sent, bytes received, rounds)``; None for the library's call
    traffic: tuple | None
    #: the arrays (and dtype) the state's addresses point into, kept alive with it
    held: tuple


def runner(algorithm: str, op: str, work: np.ndarray, lib: MPI.Comm, dtype: np.dtype) -> Runner | None:
    """The :class:`Runner` for all-reduces like this one (``algorithm`` already resolved), or None.

    ``dtype``: the send buffer's dtype object, which later buffers' must be.
    None where a repeat would gain nothing or cannot be compiled: our
    algorithms on :data:`LARGEST` bytes or more (where the parallel
    reduction kernels may run), the library's on 2**31 elements or more (a
    C ``int`` count), a dtype outside :data:`~collectives.runtime.compiled.REPEAT_DTYPES`
    (float16), an MPI without a binding, arrays laid out otherwise than
    :mod:`~collectives.runtime.array_layout` reads them, a plan the compiled
    engine does not take, ``"mpi"`` with a NaN-propagating ``min``/``max``
    (a user op).
    """
    bind = native.binding()
    if (work.dtype not in REPEAT_DTYPES or bind is None or lib.native_handles is None
            or (work.size >= 1 << 31 if algorithm == "mpi" else work.nbytes >= LARGEST)
            or not array_layout.verified()):
        return None
    state = np.zeros(STATE_SLOTS, np.int64)
    divide = lib.Get_size() if op == "avg" else 0
    op = "sum" if divide else op
    if algorithm == "mpi":
        mpi_op = mpi_native.mpi_op(op, work)
        if not mpi_op.is_predefined:
            return None
        handles = native.handles(lib, bind, MPI._typedict[work.dtype.char], mpi_op)
        held, totals = (), None
        state[S_KIND] = LIBRARY
    else:
        plan = compile_rounds(ALLREDUCE_ROUNDS[algorithm](work, lib), work.itemsize)
        if plan.packed is None:
            return None
        # its own scratch and requests: one call at a time holds the communicator
        tmp, reqs = np.empty(max(plan.scratch, 1), work.dtype), np.empty(max(plan.packed[1], 1), bind.handle)
        handles = np.zeros(4, bind.handle)
        handles[:2] = lib.native_handles
        held, totals = (tmp, reqs, plan.packed), plan.traffic
        state[[S_KIND, S_OP, S_TMP, S_TMP_N, S_REQS, S_REQS_N, S_PLAN, S_PLAN_N]] = (
            PLAN, OP_CODES[op], tmp.ctypes.data, tmp.size, reqs.ctypes.data, reqs.size, plan.packed.ctypes.data,
            plan.packed.size)
    state[[S_N, S_ARRAY, S_DESCR, S_DIVIDE, S_HANDLES, S_CALLS]] = (
        work.size, id(np.ndarray), id(dtype), divide, handles.ctypes.data, bind.calls.ctypes.data)
    token = 2 * REPEAT_DTYPES.index(work.dtype) + (bind.handle.itemsize == 8)
    return Runner(_entry(token), state.ctypes.data, token, totals, held + (state, handles, bind.calls, dtype))


def _entry(token: int):
    """:func:`~collectives.runtime.compiled.allreduce_repeat` compiled for ``token``, entered past the dispatcher.

    Numba's dispatcher resolves the types of every call; its arguments
    are integers here, their types known, so the compiled overload's entry
    point is called directly (0.1 us a call on the dev VM).
    """
    signature = (types.int64, types.int64, types.int64, types.IntegerLiteral(token))
    if signature not in allreduce_repeat.overloads:
        allreduce_repeat.compile(signature)
    return allreduce_repeat.overloads[signature].entry_point


def attempt(sendbuf: np.ndarray, recvbuf, op, algorithm, comm) -> np.ndarray | None:
    """An all-reduce like an earlier one on ``comm``, run by its :class:`Runner`: the result, or None.

    None (nothing sent) when the call needs the whole path: no earlier call
    with this signature, or buffers the compiled checks refuse.
    ``sendbuf`` is a numpy array and the check mode is off (the caller
    tested both).  One function, with what it can inline: every Python
    call costs 0.05-0.1 us here.
    """
    try:
        kept = REPEATS.get((id(comm), sendbuf.dtype.num, sendbuf.size, op, algorithm))  # signature(), inline
    except TypeError:  # an unhashable op or algorithm: the whole path says what is wrong
        return None
    if kept is None or kept[0] is not comm:
        return None
    _, lib, enter, at, token, totals, _ = kept
    if recvbuf is None:
        recvbuf = np.empty(sendbuf.shape, sendbuf.dtype)
    lock = lib.lock
    if not lock.acquire(False):
        lib.in_use.acquire()  # raises: another thread holds the communicator
    try:
        err = enter(id(sendbuf), id(recvbuf), at, token)
    finally:
        lock.release()
    if err:
        if err == REFUSED:
            return None
        raise MPI.Exception(err)
    if totals is not None and traffic.OPEN.active:
        traffic.record(*totals)
    return recvbuf


def signature(comm, sendbuf: np.ndarray, op: str, algorithm: str) -> tuple:
    """A call's key in :data:`~collectives.runtime.communicator.REPEATS` (``comm`` as the caller passed it)."""
    return id(comm), sendbuf.dtype.num, sendbuf.size, op, algorithm


def keep(comm, lib: MPI.Comm, sendbuf: np.ndarray, op: str, algorithm: str, run_: Runner | None) -> None:
    """Keep ``run_`` for later calls like this one, dropping the oldest beyond :data:`KEPT`."""
    if run_ is None:
        return
    if len(REPEATS) >= KEPT:
        try:  # another thread may drop the same entry, or insert while we look
            REPEATS.pop(next(iter(REPEATS)), None)
        except (RuntimeError, StopIteration):
            pass
    REPEATS[signature(comm, sendbuf, op, algorithm)] = (comm, lib) + tuple(run_)


def kept(comm, sendbuf: np.ndarray, op: str, algorithm: str) -> Runner | None:
    """The :class:`Runner` kept for calls like this one, or None."""
    entry = REPEATS.get(signature(comm, sendbuf, op, algorithm))
    return None if entry is None or entry[0] is not comm else Runner(*entry[2:])
