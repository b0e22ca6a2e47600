"""The engine's compiled loop: a whole plan posted, waited and reduced in one Numba function.

A :class:`~collectives.runtime.engine.Plan` is packed once into one int64
array (:func:`pack`), and :func:`run` walks it with no Python between the
messages: per step, post the receives then the sends through
:mod:`collectives.runtime.native`, wait each reducing receive in schedule
order and reduce it (while the step's other messages are in flight), then
wait the rest.  It is the Python loop of
:func:`collectives.runtime.engine.rounds_posted`, message for message, and
gives the same bits (tested).

Layout of the packed plan, one record after another::

    [0:3]                   steps S, the most messages one step posts, messages M
    [3 + 6 s ...]           step s: first message, end, first reduce, end,
                            sends first (0/1), receives
    [3 + 6 S + 6 k ...]     message k: send (0/1), peer, tag, byte lo, byte hi,
                            into the scratch (0/1)
    [3 + 6 S + 6 M + 5 j]   reduce j: its message's index in its step, work
                            element lo, scratch element lo, elements,
                            incoming first (0/1)
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.extending import overload

from .array_layout import ALIGNED, C_CONTIGUOUS, WRITEABLE, address
from .native import (ALLREDUCE, IN_PLACE, IRECV, ISEND, STATUS_IGNORE, WAIT, WAITALL, call2, call3, call6,
                     call7, pointer)

__all__ = ["pack", "run", "allreduce_repeat", "OP_CODES", "REPEAT_DTYPES", "PLAN", "LIBRARY", "REFUSED",
           "STATE_SLOTS"]

#: Op name -> the code :func:`run` takes.
OP_CODES = {"sum": 0, "prod": 1, "min": 2, "max": 3}
_HEAD, _STEP, _MSG, _RED = 3, 6, 6, 5


def pack(steps) -> np.ndarray:
    """The int64 array :func:`run` executes, from a plan's compiled steps."""
    msgs, reds, heads = [], [], []
    for step in steps:
        first, red = len(msgs), len(reds)
        msgs += [(0, peer, tag, lo, hi, int(into)) for peer, tag, lo, hi, into in step.recvs]
        msgs += [(1, peer, tag, lo, hi, 0) for peer, tag, lo, hi in step.sends]
        reds += [(i, lo, at, count, int(first_in)) for i, lo, at, count, first_in in step.reduces]
        heads.append((first, len(msgs), red, len(reds), int(step.sends_first), len(step.recvs)))
    most = max((h[1] - h[0] for h in heads), default=0)
    out = [len(heads), most, len(msgs)]
    for rows in (heads, msgs, reds):
        for row in rows:
            out.extend(row)
    return np.array(out, np.int64)


@njit(nogil=True, cache=True)
def _reduce(a, b, op, incoming_first):
    """``a = a (op) b`` (``b (op) a`` with ``incoming_first``), as :func:`collectives.runtime.reduce_ops.combine`."""
    n = a.size
    if op == 0:
        for i in range(n):
            a[i] += b[i]
    elif op == 1:
        for i in range(n):
            a[i] *= b[i]
    elif op == 2:
        if incoming_first:
            for i in range(n):
                x, y = a[i], b[i]
                a[i] = y if (y <= x) | (y != y) else x
        else:
            for i in range(n):
                x, y = a[i], b[i]
                a[i] = y if (y < x) | (y != y) else x
    elif incoming_first:
        for i in range(n):
            x, y = a[i], b[i]
            a[i] = y if (y >= x) | (y != y) else x
    else:
        for i in range(n):
            x, y = a[i], b[i]
            a[i] = y if (y > x) | (y != y) else x


@njit(nogil=True, cache=True)
def run(work, tmp, reqs, plan, op, handles, calls):
    """Execute the packed ``plan`` on ``work``; 0, or the first MPI error code.

    ``tmp``: the scratch of the reducing receives; ``reqs``: room for the
    most requests a step posts (``plan[1]``), of the handles' dtype;
    ``handles``: ``[communicator, MPI_BYTE]`` (:func:`collectives.runtime.native.handles`);
    ``calls``: :attr:`collectives.runtime.native.Binding.calls`.  Counts are
    C ``int``: the caller keeps messages below 2 GiB.
    """
    steps = plan[0]
    msg_base = _HEAD + _STEP * steps
    red_base = msg_base + _MSG * plan[2]
    width = reqs.itemsize
    ignore = calls[STATUS_IGNORE]
    wbase, tbase = work.ctypes.data, tmp.ctypes.data
    comm, byte = handles[0], handles[1]
    for s in range(steps):
        h = _HEAD + _STEP * s
        m0, m1, r0, r1 = plan[h], plan[h + 1], plan[h + 2], plan[h + 3]
        for k in range(m0, m1):
            m = msg_base + _MSG * k
            base = tbase if plan[m + 5] else wbase
            fn = calls[ISEND] if plan[m] else calls[IRECV]
            err = call7(fn, base + plan[m + 3], np.int32(plan[m + 4] - plan[m + 3]), byte,
                        np.int32(plan[m + 1]), np.int32(plan[m + 2]), comm,
                        reqs.ctypes.data + width * (k - m0))
            if err:
                return err
        posted = np.int32(m1 - m0)
        if r1 > r0:
            if plan[h + 4]:  # a reducing receive writes what this step sends: sends first
                recvs = plan[h + 5]
                err = call3(calls[WAITALL], np.int32(posted - recvs), reqs.ctypes.data + width * recvs, ignore)
                if err:
                    return err
            for j in range(r0, r1):
                r = red_base + _RED * j
                err = call2(calls[WAIT], reqs.ctypes.data + width * plan[r], ignore)
                if err:
                    return err
                lo, at, count = plan[r + 1], plan[r + 2], plan[r + 3]
                _reduce(work[lo : lo + count], tmp[at : at + count], op, plan[r + 4])
        err = call3(calls[WAITALL], posted, reqs.ctypes.data, ignore)
        if err:
            return err
    return 0


@njit(nogil=True, cache=True)
def _start(send, recv):
    """Copy ``send`` into ``recv`` unless they are the same memory."""
    if send.ctypes.data != recv.ctypes.data:
        recv[:] = send


@njit(nogil=True, cache=True)
def _divide(recv, divide):
    """``recv /= divide`` for ``avg`` (float32 through float64 rounds the same, as 53 >= 2 * 24 + 2)."""
    for i in range(recv.size):
        recv[i] = recv[i] / divide


#: The dtypes a repeated all-reduce is compiled for; its token is ``2 * index + (8-byte handles)``.
REPEAT_DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "int32", "int64"))
#: What :func:`allreduce_repeat` runs: a packed plan, or the library's ``MPI_Allreduce``.
PLAN, LIBRARY = 0, 1
#: :func:`allreduce_repeat`'s answer for buffers it will not run on (MPI's error codes are not negative).
REFUSED = -1
#: Slots of a repeat's state (int64): what, elements, ``id(np.ndarray)``, ``id(dtype)``, op code, divisor
#: (0: none), then addresses: scratch (and its elements), requests (and their count), packed plan (and its
#: length), ``[communicator, MPI_BYTE, datatype, op]`` handles, :attr:`~collectives.runtime.native.Binding.calls`.
(S_KIND, S_N, S_ARRAY, S_DESCR, S_OP, S_DIVIDE, S_TMP, S_TMP_N, S_REQS, S_REQS_N, S_PLAN, S_PLAN_N, S_HANDLES,
 S_CALLS, STATE_SLOTS) = range(15)


def _elements(at, n, token):
    """``n`` elements of the token's dtype at address ``at`` (compiled only)."""


@overload(_elements, inline="always")
def _elements_typed(at, n, token):
    if isinstance(token, types.IntegerLiteral):
        kind = REPEAT_DTYPES[token.literal_value // 2].type
        return lambda at, n, token: carray(pointer(at, kind), n)
    return None


def _handle_array(at, n, token):
    """``n`` handles of the token's width at address ``at`` (compiled only)."""


@overload(_handle_array, inline="always")
def _handle_array_typed(at, n, token):
    if isinstance(token, types.IntegerLiteral):
        kind = np.int64 if token.literal_value % 2 else np.int32
        return lambda at, n, token: carray(pointer(at, kind), n)
    return None


@njit(nogil=True, cache=True)
def allreduce_repeat(send_obj, recv_obj, at, token):
    """A repeated all-reduce from ``id(sendbuf)`` into ``id(recvbuf)``, by the state at address ``at``.

    :data:`REFUSED`, with nothing sent, unless both are numpy arrays of the
    state's dtype object and size, C-contiguous and aligned, ``recvbuf``
    writeable, and they are one array or do not overlap
    (:func:`collectives.runtime.array_layout.address`).  Else it runs the
    library's ``MPI_Allreduce`` (out of place, as mpi4py's
    ``comm.Allreduce``), or copies the send buffer into the receive buffer
    and runs the packed plan on it; then divides for ``avg``.  It returns
    0, or the first MPI error code.  ``token``, a literal, selects
    the dtype and handle width the state was made for.
    """
    state = carray(pointer(at, np.int64), STATE_SLOTS)
    n, kind, descr = state[S_N], state[S_ARRAY], state[S_DESCR]
    recv_at = address(recv_obj, kind, descr, n, C_CONTIGUOUS | ALIGNED | WRITEABLE)
    if recv_at == 0:
        return REFUSED
    recv = _elements(recv_at, n, token)
    send_at = recv_at
    if send_obj != recv_obj:
        send_at = address(send_obj, kind, descr, n, C_CONTIGUOUS | ALIGNED)
        nbytes = n * recv.itemsize
        if send_at == 0 or send_at < recv_at + nbytes and recv_at < send_at + nbytes:
            return REFUSED
    handles = _handle_array(state[S_HANDLES], 4, token)
    calls = carray(pointer(state[S_CALLS], np.int64), IN_PLACE + 1)
    if state[S_KIND] == LIBRARY:  # out of place as mpi4py's comm.Allreduce: the library copies as it likes
        err = call6(calls[ALLREDUCE], calls[IN_PLACE] if send_at == recv_at else send_at, recv_at, np.int32(n),
                    handles[2], handles[3], handles[0])
    else:
        _start(_elements(send_at, n, token), recv)
        err = run(recv, _elements(state[S_TMP], state[S_TMP_N], token),
                  _handle_array(state[S_REQS], state[S_REQS_N], token),
                  carray(pointer(state[S_PLAN], np.int64), state[S_PLAN_N]), state[S_OP], handles, calls)
    divide = state[S_DIVIDE]
    if err == 0 and divide:
        _divide(recv, divide)
    return err
