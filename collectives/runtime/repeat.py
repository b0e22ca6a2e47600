"""A repeated all-reduce skips what its first call already settled: the small-message fast path.

A training step all-reduces the same gradient buffers, of the same sizes,
with the same op and algorithm, thousands of times.  With the check mode
off, the first such call on a communicator runs the whole path
(validation, ``auto``'s choice, the schedule, its compiled plan) and leaves
a :class:`Runner` in the communicator's table under the call's
*signature*: dtype, size, op and algorithm name.  A later call with the
same signature checks only what may differ between two arrays of that
signature (numpy, C-contiguous, writeable, the receive buffer's size and
dtype, no overlap), then hands the buffer to the runner: the compiled
engine on a plan packed at the first call, or the library's own
``MPI_Allreduce``.  On the dev VM (P = 2, float32, out of place, back to
back) our ``"mpi"`` all-reduce of 4 bytes took 17 us through the whole path
and takes 4.5 us this way, where mpi4py's own ``comm.Allreduce`` takes 3.3
(docs/bench.md).

Anything that fails those checks takes the whole path, and so raises what
it raises there.  A table is emptied when ``auto``'s profile changes
(:func:`collectives.runtime.auto.set_profile`), and keeps at most
:data:`KEPT` signatures; messages of :data:`LARGEST` bytes or more are not
kept (there the checks cost nothing beside the transfer).  The registry's
chunk sizes (``RING_SEGMENT_BYTES``, ``TREE_CHUNK_BYTES``) are read at a
signature's first call.
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from mpi4py import MPI

from . import mpi_native, native, traffic
from .communicator import KNOWN
from .compiled import OP_CODES, allreduce_library, allreduce_plan
from .engine import compile_rounds
from .registry import ALLREDUCE_ROUNDS

__all__ = ["Runner", "runner", "attempt", "keep", "KEPT", "LARGEST"]

#: Signatures kept per communicator; the oldest is dropped beyond this.
KEPT = 256
#: Calls of this many bytes or more are not kept.
LARGEST = 1 << 20

#: ``runner(send, recv)``: all-reduce the flat ``send`` into the flat ``recv`` (the same array for in place).
Runner = Callable[[np.ndarray, np.ndarray], None]


def runner(algorithm: str, op: str, work: np.ndarray, lib: MPI.Comm) -> Runner | None:
    """The :data:`Runner` for all-reduces like this one (``algorithm`` already resolved), or None.

    None where a repeat would gain nothing or cannot be compiled: large
    messages, float16, an MPI without a binding, a plan the compiled engine
    does not take, ``"mpi"`` with a NaN-propagating ``min``/``max`` (a user op).
    """
    bind = native.binding()
    if work.nbytes >= LARGEST or work.dtype.char == "e" or bind is None or lib.native_handles is None:
        return None
    divide = lib.Get_size() if op == "avg" else 0
    op = "sum" if divide else op
    if algorithm == "mpi":
        mpi_op = mpi_native.mpi_op(op, work)
        if not mpi_op.is_predefined:
            return None
        handles = native.handles(lib, bind, MPI._typedict[work.dtype.char], mpi_op)
        calls = bind.calls
        enter = _entry(allreduce_library, work, (divide, handles, calls))

        def library(send, recv):
            err = enter(send, recv, divide, handles, calls)
            if err:
                raise MPI.Exception(err)

        return library
    plan = compile_rounds(ALLREDUCE_ROUNDS[algorithm](work, lib), work.itemsize)
    if plan.packed is None:
        return None
    # its own scratch and requests: one call at a time holds the communicator
    tmp, reqs = np.empty(plan.scratch, work.dtype), np.empty(max(plan.packed[1], 1), bind.handle)
    packed, code, handles, calls, totals = plan.packed, OP_CODES[op], lib.native_handles, bind.calls, plan.traffic
    enter = _entry(allreduce_plan, work, (tmp, reqs, packed, code, divide, handles, calls))
    counters = traffic.OPEN

    def ours(send, recv):
        err = enter(send, recv, tmp, reqs, packed, code, divide, handles, calls)
        if err:
            raise MPI.Exception(err)
        if counters.active:
            traffic.record(*totals)

    return ours


def _entry(function, work: np.ndarray, rest: tuple):
    """The compiled ``function(send, recv, *rest)`` for exactly these argument types, entered past the dispatcher.

    Numba's dispatcher resolves the types of every call (0.8 us a call on
    the dev VM, against 0.4 entered directly).  The caller stands in for
    it: :func:`attempt` has checked that ``send`` and ``recv`` are
    one-dimensional, C-contiguous, aligned arrays of ``work``'s dtype, and
    ``recv`` writeable.
    """
    array = numba.types.Array(numba.from_dtype(work.dtype), 1, "C")
    signature = (array.copy(readonly=True), array) + tuple(numba.typeof(a) for a in rest)
    if signature not in function.overloads:
        function.compile(signature)
    return function.overloads[signature].entry_point


def attempt(sendbuf: np.ndarray, recvbuf, op, algorithm, comm) -> np.ndarray | None:
    """An all-reduce like an earlier one on ``comm``, run by its :data:`Runner`: the result, or None.

    None (nothing sent) when the call needs the whole path: no earlier call
    with this signature, or buffers that differ from it in what two arrays
    of one signature may differ in (contiguity, alignment, writeability,
    the receive buffer's dtype and size, overlap).  That two arrays do not
    overlap is remembered for the last pair (``np.may_share_memory`` costs
    0.55 us on the dev VM): an array's memory cannot move while it is
    referenced (numpy's ``resize`` refuses), and ``lib.disjoint`` holds both.
    ``sendbuf`` is a numpy array and the check mode is off (the caller
    tested both).  One function, with the checks inline: every call it
    makes costs 0.1 us here.
    """
    if comm is None:
        comm = MPI.COMM_WORLD
    known = KNOWN.get(id(comm))
    if known is None or known[0] is not comm:
        return None
    lib = known[1]
    try:
        run_ = lib.repeats.get((sendbuf.dtype, sendbuf.size, op, algorithm))
    except TypeError:  # an unhashable op or algorithm: the whole path says what is wrong
        return None
    if run_ is None:
        return None
    flags = sendbuf.flags
    if not (flags.c_contiguous and flags.aligned):
        return None
    if recvbuf is sendbuf:
        if not flags.writeable:
            return None
    elif recvbuf is None:
        recvbuf = np.empty(sendbuf.shape, sendbuf.dtype)
    else:
        if type(recvbuf) is not np.ndarray or recvbuf.dtype != sendbuf.dtype or recvbuf.size != sendbuf.size:
            return None
        flags = recvbuf.flags
        if not (flags.c_contiguous and flags.writeable and flags.aligned):
            return None
        pair = lib.disjoint
        if pair[0] is not sendbuf or pair[1] is not recvbuf:
            if np.may_share_memory(sendbuf, recvbuf):
                return None
            lib.disjoint = (sendbuf, recvbuf)
    lock = lib.lock
    if not lock.acquire(False):
        lib.in_use.acquire()  # raises: another thread holds the communicator
    try:
        run_(sendbuf if sendbuf.ndim == 1 else sendbuf.reshape(-1),
             recvbuf if recvbuf.ndim == 1 else recvbuf.reshape(-1))
    finally:
        lock.release()
    return recvbuf


def keep(table: dict, key: tuple, run_: Runner | None) -> None:
    """Put ``run_`` in a communicator's ``table`` under ``key``, dropping the oldest beyond :data:`KEPT`."""
    if run_ is None:
        return
    if len(table) >= KEPT:
        table.pop(next(iter(table)))
    table[key] = run_
