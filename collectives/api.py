"""The four public collectives: validate, then dispatch to the registry by name."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from . import _buffers as B
from . import mpi_native
from ._comm import agree, check_enabled, library_comm, pending_comm
from ._engine import compile_rounds, rounds_posted
from .auto import choose
from .errors import CollectiveError
from .reduce_ops import OPS, arithmetic_op, check_op
from .registry import ALGORITHMS, ALLREDUCE_ROUNDS, FAMILIES
from .schedule import partition

__all__ = ["allreduce", "allreduce_start", "Pending", "allgather", "reduce_scatter", "broadcast"]


def _resolve(family: str, algorithm: str, count: int, buf, lib) -> str:
    """The algorithm to run: ``algorithm`` itself, or ``auto``'s choice for ``count`` elements.

    ``auto`` is tested first, and looks up the communicator's earlier
    decisions before asking :func:`~collectives.auto.choose` (see
    :func:`collectives.auto.decisions`).
    """
    if algorithm == "auto":
        item = getattr(buf, "itemsize", 1) or 1
        nbytes = count * item
        return (lib.decisions.get((family, nbytes, item))
                or choose(family, nbytes, lib.Get_size(), ranks_per_node=lib.ranks_per_node,
                          itemsize=item))
    if algorithm not in ALGORITHMS[family]:
        raise CollectiveError(
            f"unknown {family} algorithm {algorithm!r}; "
            f"use one of {', '.join(ALGORITHMS[family])}"
        )
    return algorithm


def _settle(comm, signature, local_error: str | None) -> None:
    """Make every rank raise together (check mode) or raise here (no check).

    ``signature``: a function returning the call's signature, built only in
    check mode (``str`` of a dtype alone costs 3.5 us on the dev VM).
    """
    if check_enabled():
        agree(comm, signature(), local_error)
    elif local_error is not None:
        raise CollectiveError(local_error)


def _op_problem(op: str, sendbuf) -> str | None:
    """Why ``op`` cannot reduce ``sendbuf``'s dtype (``avg`` of integers), or None."""
    if op != "avg":  # every other op of OPS takes every dtype
        return None
    try:
        check_op(op, np.dtype(sendbuf.dtype))
    except CollectiveError as e:
        return str(e)
    return None


def _dtype(buf) -> str:
    return str(getattr(buf, "dtype", type(buf).__name__))


def allreduce(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None):
    """Reduce ``sendbuf`` element-wise over all ranks; every rank gets the result.

    Parameters
    ----------
    sendbuf : numpy.ndarray or cupy.ndarray
        C-contiguous, same size and dtype on every rank (float16/32/64, int32/64).
    recvbuf : array, optional
        Receives the result; same size and dtype.  ``None`` allocates one;
        ``recvbuf is sendbuf`` works in place.
    op : {"sum", "prod", "min", "max", "avg"}
        ``avg`` is the sum divided by the number of ranks (floating dtypes only).
    algorithm : str
        A name from ``collectives.ALGORITHMS["allreduce"]``.
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.  Messages travel on a duplicate.

    Returns
    -------
    array
        ``recvbuf``.  Its bits are identical on every rank.

    Raises
    ------
    CollectiveError
        Before any message is sent, for unknown names or unusable buffers
        (on every rank when the check mode is on).
    """
    lib, name, work, recvbuf = _prepare(sendbuf, recvbuf, op, algorithm, comm)
    if work is None:
        return recvbuf
    FAMILIES["allreduce"][name](work, arithmetic_op(op), lib)
    return _finish(work, recvbuf, op, lib.Get_size())


def allreduce_start(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None) -> "Pending":
    """Start an all-reduce and return at once: :meth:`Pending.progress` moves it, :meth:`Pending.wait` ends it.

    Same arguments, checks and result as :func:`allreduce`; the buffers
    must not be touched until :meth:`Pending.wait` returns.  Several may be
    in flight at once (each has its own scratch and its own duplicate of
    the communicator, :data:`collectives._comm.PENDING_SLOTS` of them; the
    start that would reuse one waits for its previous user first), started
    in the same order on every rank.  Our algorithms post one round of messages at a time:
    ``progress()`` tests the round in flight and, when it is complete,
    reduces it and posts the next, so calling it between pieces of
    computation (the layers of a backward pass) lets communication overlap
    computation even without an asynchronous-progress thread in MPI.
    ``"mpi"`` uses ``MPI_Iallreduce``.  cupy buffers are all-reduced before
    this returns.
    """
    return _start(sendbuf, recvbuf, op, algorithm, comm)


class Pending:
    """An all-reduce in flight (see :func:`allreduce_start`)."""

    def __init__(self, recvbuf, finish, steps=None, request=None):
        self._recvbuf, self._finish = recvbuf, finish
        self._steps, self._request = steps, request
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


def _prepare(sendbuf, recvbuf, op, algorithm, comm):
    """Validate (collectively), pick the algorithm, copy the send buffer into the work buffer.

    Returns ``(lib, name, work, recvbuf)``; ``work`` is None when there is
    nothing to reduce (zero elements).
    """
    if op not in OPS:
        raise CollectiveError(f"unknown op {op!r}; use one of {', '.join(OPS)}")
    lib = library_comm(comm)
    error = B.problem(sendbuf, "sendbuf") or _op_problem(op, sendbuf)
    n = getattr(sendbuf, "size", 0)
    if error is None:
        if recvbuf is None:
            recvbuf = B.empty(sendbuf, n).reshape(sendbuf.shape)
        elif recvbuf is not sendbuf:
            error = B.recv_problem(sendbuf, recvbuf, n)
    name = _resolve("allreduce", algorithm, n, sendbuf, lib)
    if error is None and name == "mpi":
        error = mpi_native.unsupported(sendbuf.dtype)
    _settle(lib, lambda: (("call", "allreduce"), ("count", n), ("dtype", _dtype(sendbuf)),
                          ("op", op), ("algorithm", algorithm)), error)
    if n == 0:
        return lib, name, None, recvbuf
    if B.is_cupy(sendbuf):
        work = B.to_host(sendbuf)
    else:
        work = B.flat(recvbuf)
        if recvbuf is not sendbuf:
            np.copyto(work, B.flat(sendbuf))
    return lib, name, work, recvbuf


def _finish(work, recvbuf, op: str, p: int):
    """The last step of an all-reduce: divide for ``avg``, copy back to a cupy ``recvbuf``."""
    if op == "avg":
        np.divide(work, p, out=work)
    B.from_host(work, recvbuf)
    return recvbuf


def _start(sendbuf, recvbuf, op, algorithm, comm) -> Pending:
    """:func:`allreduce_start`: post the first round on a private duplicate and scratch."""
    lib, name, work, recvbuf = _prepare(sendbuf, recvbuf, op, algorithm, comm)
    if work is None:
        return Pending(recvbuf, lambda: None)
    reduce_op = arithmetic_op(op)

    def finish():
        _finish(work, recvbuf, op, lib.Get_size())

    if B.is_cupy(sendbuf):  # staged through the host: all-reduced now
        FAMILIES["allreduce"][name](work, reduce_op, lib)
        return Pending(recvbuf, finish)
    own, slot = pending_comm(lib)
    if slot[0] is not None and not slot[0].done:
        slot[0].wait()  # PENDING_SLOTS starts ago, on the same communicator
    if name == "mpi":
        slot[0] = Pending(recvbuf, finish, request=mpi_native.allreduce_start(work, reduce_op, own))
    else:
        rounds = ALLREDUCE_ROUNDS[name](work, own)
        tmp = np.empty(compile_rounds(rounds, work.itemsize).scratch, work.dtype)
        slot[0] = Pending(recvbuf, finish, steps=rounds_posted(rounds, work, own, reduce_op, tmp))
    return slot[0]


def allgather(sendbuf, recvbuf=None, *, algorithm="auto", comm=None):
    """Gather every rank's ``sendbuf`` into ``recvbuf`` on every rank, in rank order.

    Parameters
    ----------
    sendbuf : array
        ``m`` elements, the same ``m`` and dtype on every rank.
    recvbuf : array, optional
        ``P * m`` elements; rank ``r``'s data lands at ``[r*m, (r+1)*m)``.
        ``recvbuf is sendbuf`` means in place: the buffer has ``P * m``
        elements and this rank's block is already in position.
    algorithm : str
        A name from ``collectives.ALGORITHMS["allgather"]``.
    comm : mpi4py.MPI.Intracomm, optional

    Returns
    -------
    array
        ``recvbuf``.
    """
    lib = library_comm(comm)
    p, rank = lib.Get_size(), lib.Get_rank()
    in_place = recvbuf is sendbuf and sendbuf is not None
    error = B.problem(sendbuf, "sendbuf")
    total = getattr(sendbuf, "size", 0)
    m = total // p if in_place else total
    if error is None:
        if in_place and total % p:
            error = f"in-place all-gather needs a buffer of P*m elements; {total} is not a multiple of {p}"
        elif recvbuf is None:
            recvbuf = B.empty(sendbuf, p * m)
        elif not in_place:
            error = B.recv_problem(sendbuf, recvbuf, p * m)
    name = _resolve("allgather", algorithm, p * m, sendbuf, lib)
    _settle(lib, lambda: (("call", "allgather"), ("count", m), ("dtype", _dtype(sendbuf)),
                          ("algorithm", algorithm), ("in_place", in_place)), error)
    if m == 0:
        return recvbuf
    offsets = tuple(range(0, (p + 1) * m, m))
    work = B.to_host(recvbuf) if B.is_cupy(recvbuf) else B.flat(recvbuf)
    if not in_place:
        work[offsets[rank] : offsets[rank + 1]] = B.to_host(sendbuf)
    FAMILIES["allgather"][name](work, offsets, lib)
    B.from_host(work, recvbuf)
    return recvbuf


def reduce_scatter(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None):
    """Reduce ``sendbuf`` over all ranks and leave block ``r`` of the result on rank ``r``.

    The ``n`` elements are cut into P blocks with
    ``collectives.schedule.partition(n, P)``: the first ``n % P`` blocks hold
    one element more, so any ``n`` works.

    Parameters
    ----------
    sendbuf : array
        ``n`` elements, the same ``n`` and dtype on every rank.
    recvbuf : array, optional
        This rank's block size.  ``recvbuf is sendbuf`` means in place: the
        result is left in ``sendbuf``'s own block, and that view is returned.
    op, algorithm, comm
        As for :func:`allreduce`; algorithms from
        ``collectives.ALGORITHMS["reduce_scatter"]``.

    Returns
    -------
    array
        This rank's reduced block.
    """
    if op not in OPS:
        raise CollectiveError(f"unknown op {op!r}; use one of {', '.join(OPS)}")
    lib = library_comm(comm)
    p, rank = lib.Get_size(), lib.Get_rank()
    in_place = recvbuf is sendbuf and sendbuf is not None
    error = B.problem(sendbuf, "sendbuf") or _op_problem(op, sendbuf)
    n = getattr(sendbuf, "size", 0)
    offsets = partition(n, p)
    mine = offsets[rank + 1] - offsets[rank]
    if error is None:
        if recvbuf is None:
            recvbuf = B.empty(sendbuf, mine)
        elif not in_place:
            error = B.recv_problem(sendbuf, recvbuf, mine)
    name = _resolve("reduce_scatter", algorithm, n, sendbuf, lib)
    if error is None and name == "mpi":
        error = mpi_native.unsupported(sendbuf.dtype)
    _settle(lib, lambda: (("call", "reduce_scatter"), ("count", n), ("dtype", _dtype(sendbuf)),
                          ("op", op), ("algorithm", algorithm), ("in_place", in_place)), error)
    if in_place:
        recvbuf = B.flat(sendbuf)[offsets[rank] : offsets[rank + 1]]
    if n == 0:
        return recvbuf
    send = B.to_host(sendbuf)
    if in_place and not B.is_cupy(sendbuf):
        send = send.copy()
    out = B.to_host(recvbuf) if B.is_cupy(recvbuf) else B.flat(recvbuf)
    FAMILIES["reduce_scatter"][name](send, out, offsets, arithmetic_op(op), lib)
    if op == "avg":
        np.divide(out, p, out=out)
    B.from_host(out, recvbuf)
    return recvbuf


def broadcast(buf, root=0, *, algorithm="auto", comm=None):
    """Copy ``buf`` from ``root`` to every rank, in place.

    Parameters
    ----------
    buf : array
        Same size and dtype on every rank; only the root's contents matter.
    root : int
        The sending rank, the same on every rank.
    algorithm : str
        A name from ``collectives.ALGORITHMS["broadcast"]``.
    comm : mpi4py.MPI.Intracomm, optional

    Returns
    -------
    array
        ``buf``.
    """
    lib = library_comm(comm)
    p = lib.Get_size()
    if not isinstance(root, (int, np.integer)) or not 0 <= root < p:
        raise CollectiveError(f"root must be a rank in 0..{p - 1}, got {root!r}")
    error = B.problem(buf, "buf")
    n = getattr(buf, "size", 0)
    name = _resolve("broadcast", algorithm, n, buf, lib)
    _settle(lib, lambda: (("call", "broadcast"), ("count", n), ("dtype", _dtype(buf)),
                          ("root", int(root)), ("algorithm", algorithm)), error)
    if n == 0 or p == 1:
        return buf
    work = B.to_host(buf)
    FAMILIES["broadcast"][name](work, int(root), lib)
    B.from_host(work, buf)
    return buf


