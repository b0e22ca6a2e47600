"""The four public collectives: validate, then dispatch to the registry by name."""

from __future__ import annotations

import zlib

import numpy as np

from ..algorithms.schedule import partition
from ..errors import CollectiveError
from . import buffers as B
from . import communicator, mpi_native, repeat
from .auto import choose
from .communicator import agree, check_enabled, hold, library_comm
from .reduce_ops import OPS, arithmetic_op, check_op
from .registry import ALGORITHMS, FAMILIES

__all__ = ["allreduce", "allgather", "reduce_scatter", "broadcast"]


def _resolve(family: str, algorithm: str, count: int, buf, lib) -> tuple[str | None, str | None]:
    """``(the algorithm to run, None)``: ``algorithm`` itself or ``auto``'s choice; ``(None, why)`` if unknown.

    ``auto`` is tested first, and looks up the communicator's earlier
    decisions before asking :func:`~collectives.runtime.auto.choose` (see
    :func:`collectives.runtime.auto.decisions`).
    """
    if not isinstance(algorithm, str):
        return None, f"algorithm must be a str, one of {', '.join(ALGORITHMS[family])}; got {type(algorithm).__name__}"
    if algorithm == "auto":
        item = getattr(buf, "itemsize", 1) or 1
        nbytes = count * item
        return (lib.decisions.get((family, nbytes, item))
                or choose(family, nbytes, lib.Get_size(), ranks_per_node=lib.ranks_per_node,
                          itemsize=item)), None
    if algorithm not in ALGORITHMS[family]:
        return None, f"unknown {family} algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS[family])}"
    return algorithm, None


#: Call kinds, the first integer of a call's signature (see :func:`collectives.runtime.communicator.agree`).
_KINDS = ("allreduce", "allreduce_start", "allgather", "reduce_scatter", "broadcast", "allreduce_init",
          "allreduce_run")


def _code(names: tuple, name) -> int:
    """``name``'s index in ``names``, or -1 (a name no rank may run: it is refused)."""
    return names.index(name) if isinstance(name, str) and name in names else -1


def _settle(lib, kind: str, count: int, buf, op: str | None, algorithm, local_error: str | None,
            root=0, in_place: bool = False, name: str | None = None) -> None:
    """Make every rank raise together (check mode) or raise here (no check).

    With the check on, the call's signature is compared across ranks as
    integers (:func:`collectives.runtime.communicator.agree`); the words that describe it
    are built only for a message.
    """
    if name is not None and not isinstance(name, str):
        local_error = local_error or f"name must be a str, got {type(name).__name__}"
    if check_enabled():
        family = "allreduce" if kind.startswith("allreduce") else kind
        dtype = getattr(buf, "dtype", None)
        signature = (
            _KINDS.index(kind), count, -1 if dtype is None else ord(dtype.kind) << 8 | dtype.itemsize,
            -2 if op is None else _code(OPS, op), _code(ALGORITHMS[family], algorithm),
            root if type(root) is int and 0 <= root < 1 << 62 else -1, in_place,
            zlib.crc32(name.encode()) if isinstance(name, str) else -1 if name is not None else 0,
        )
        agree(lib, signature, local_error,
              lambda: (("call", kind), ("count", count), ("dtype", _dtype(buf)), ("op", op),
                       ("algorithm", algorithm), ("root", root), ("in_place", in_place), ("name", name)))
    elif local_error is not None:
        raise CollectiveError(local_error)


def _op_problem(op: str, sendbuf) -> str | None:
    """Why ``op`` cannot reduce ``sendbuf``'s dtype (unknown op, ``avg`` of integers), or None."""
    if not isinstance(op, str) or op not in OPS:
        return f"unknown op {op!r}; use one of {', '.join(OPS)}"
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
        ``recvbuf is sendbuf`` works in place (then ``sendbuf`` must be writeable).
    op : {"sum", "prod", "min", "max", "avg"}
        ``avg`` is the sum divided by the number of ranks (floating dtypes
        only).  ``min`` and ``max`` propagate NaN, with every algorithm.
    algorithm : str
        A name from ``collectives.ALGORITHMS["allreduce"]``.
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.  Messages travel on a duplicate.

    Notes
    -----
    With the check mode off, a call with the dtype, size, op and algorithm
    of an earlier one on ``comm`` skips the checks and choices that the
    earlier one settled (:mod:`collectives.runtime.repeat`).

    Returns
    -------
    array
        ``recvbuf``.  Its bits are identical on every rank.

    Raises
    ------
    CollectiveError
        Before any message is sent, for unknown names or unusable buffers
        (on every rank when the check mode is on), or when another thread
        is running a collective on ``comm``.
    """
    if type(sendbuf) is np.ndarray and not communicator.check_enabled():
        out = repeat.attempt(sendbuf, recvbuf, op, algorithm, comm)
        if out is not None:
            return out
    lib = library_comm(comm)
    with hold(lib):
        name, work, recvbuf = _prepare("allreduce", sendbuf, recvbuf, op, algorithm, lib)
        if work is not None:
            FAMILIES["allreduce"][name](work, arithmetic_op(op), lib)
            _finish(work, recvbuf, op, lib.Get_size())
            if (type(sendbuf) is np.ndarray and not communicator.check_enabled()
                    and repeat.kept(comm, sendbuf, op, algorithm) is None):  # a refused repeat keeps its runner
                repeat.keep(comm, lib, sendbuf, op, algorithm, repeat.runner(name, op, work, lib, sendbuf.dtype))
    return recvbuf


def _prepare(kind: str, sendbuf, recvbuf, op, algorithm, lib, name: str | None = None):
    """An all-reduce's validation (collective), the algorithm, and the send buffer copied into the work buffer.

    ``kind``: ``"allreduce"``, ``"allreduce_start"`` or ``"allreduce_init"``
    (the check tells them apart).  Returns ``(algorithm, work, recvbuf)``; ``work`` is None
    when there is nothing to reduce (zero elements).
    """
    in_place = recvbuf is sendbuf
    error = B.problem(sendbuf, "sendbuf", writes=in_place) or _op_problem(op, sendbuf)
    n = getattr(sendbuf, "size", 0)
    if error is None:
        if recvbuf is None:
            recvbuf = B.empty(sendbuf, n).reshape(sendbuf.shape)
        elif not in_place:
            error = B.recv_problem(sendbuf, recvbuf, n)
    chosen, unknown = _resolve("allreduce", algorithm, n, sendbuf, lib)
    error = error or unknown
    if error is None and chosen == "mpi":
        error = mpi_native.unsupported(sendbuf.dtype)
    _settle(lib, kind, n, sendbuf, op, algorithm, error, name=name)
    if n == 0:
        return chosen, None, recvbuf
    work = B.flat(recvbuf)
    if not in_place:
        B.copy(work, B.flat(sendbuf))
    return chosen, work, recvbuf


def _finish(work, recvbuf, op: str, p: int):
    """The last step of an all-reduce: divide for ``avg``."""
    if op == "avg":
        B.divide(work, p)
    return recvbuf


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
    with hold(lib):
        return _allgather(sendbuf, recvbuf, algorithm, lib)


def _allgather(sendbuf, recvbuf, algorithm, lib):
    p, rank = lib.Get_size(), lib.Get_rank()
    in_place = recvbuf is sendbuf and sendbuf is not None
    error = B.problem(sendbuf, "sendbuf", writes=in_place)
    total = getattr(sendbuf, "size", 0)
    m = total // p if in_place else total
    if error is None:
        if in_place and total % p:
            error = f"in-place all-gather needs a buffer of P*m elements; {total} is not a multiple of {p}"
        elif recvbuf is None:
            recvbuf = B.empty(sendbuf, p * m)
        elif not in_place:
            error = B.recv_problem(sendbuf, recvbuf, p * m)
    name, unknown = _resolve("allgather", algorithm, p * m, sendbuf, lib)
    _settle(lib, "allgather", m, sendbuf, None, algorithm, error or unknown, in_place=in_place)
    if m == 0:
        return recvbuf
    offsets = tuple(range(0, (p + 1) * m, m))
    work = B.flat(recvbuf)
    if not in_place:
        B.copy(work[offsets[rank] : offsets[rank + 1]], B.flat(sendbuf))
    FAMILIES["allgather"][name](work, offsets, lib)
    return recvbuf


def reduce_scatter(sendbuf, recvbuf=None, *, op="sum", algorithm="auto", comm=None):
    """Reduce ``sendbuf`` over all ranks and leave block ``r`` of the result on rank ``r``.

    The ``n`` elements are cut into P blocks with
    ``collectives.algorithms.schedule.partition(n, P)``: the first ``n % P`` blocks hold
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
    lib = library_comm(comm)
    with hold(lib):
        return _reduce_scatter(sendbuf, recvbuf, op, algorithm, lib)


def _reduce_scatter(sendbuf, recvbuf, op, algorithm, lib):
    p, rank = lib.Get_size(), lib.Get_rank()
    in_place = recvbuf is sendbuf and sendbuf is not None
    error = B.problem(sendbuf, "sendbuf", writes=in_place) or _op_problem(op, sendbuf)
    n = getattr(sendbuf, "size", 0)
    offsets = partition(n, p)
    mine = offsets[rank + 1] - offsets[rank]
    if error is None:
        if recvbuf is None:
            recvbuf = B.empty(sendbuf, mine)
        elif not in_place:
            error = B.recv_problem(sendbuf, recvbuf, mine)
    name, unknown = _resolve("reduce_scatter", algorithm, n, sendbuf, lib)
    error = error or unknown
    if error is None and name == "mpi":
        error = mpi_native.unsupported(sendbuf.dtype)
    _settle(lib, "reduce_scatter", n, sendbuf, op, algorithm, error, in_place=in_place)
    if in_place:
        recvbuf = B.flat(sendbuf)[offsets[rank] : offsets[rank + 1]]
    if n == 0:
        return recvbuf
    send = B.flat(sendbuf)
    if in_place:  # the result lands in the send buffer's own block
        send = B.empty(sendbuf, n)
        B.copy(send, B.flat(sendbuf))
    out = B.flat(recvbuf)
    FAMILIES["reduce_scatter"][name](send, out, offsets, arithmetic_op(op), lib)
    if op == "avg":
        B.divide(out, p)
    return recvbuf


def broadcast(buf, root=0, *, algorithm="auto", comm=None):
    """Copy ``buf`` from ``root`` to every rank, in place.

    Parameters
    ----------
    buf : array
        Same size and dtype on every rank; only the root's contents matter.
        Writeable, on every rank (the root's too: one rule for all ranks).
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
    with hold(lib):
        return _broadcast(buf, root, algorithm, lib)


def _broadcast(buf, root, algorithm, lib):
    p = lib.Get_size()
    if isinstance(root, (int, np.integer)) and not isinstance(root, bool) and 0 <= root < p:
        root, error = int(root), None
    else:
        error = f"root must be a rank in 0..{p - 1}, got {root!r}"
    error = error or B.problem(buf, "buf")
    n = getattr(buf, "size", 0)
    name, unknown = _resolve("broadcast", algorithm, n, buf, lib)
    _settle(lib, "broadcast", n, buf, None, algorithm, error or unknown, root=root)
    if n == 0 or p == 1:
        return buf
    FAMILIES["broadcast"][name](B.flat(buf), root, lib)
    return buf
