"""Calls into the MPI library that mpi4py loaded, from Numba-compiled code.

The compiled engine (:mod:`collectives.runtime.compiled`) posts its
messages with ``MPI_Isend``/``MPI_Irecv`` and completes them with
``MPI_Wait``/``MPI_Waitall`` without returning to Python.  It reaches them
through their addresses in the library mpi4py loaded, looked up once here
and passed to the compiled code as integers (so the compiled code can be
cached on disk, and holds no address of one process).  An intrinsic casts an
address to a C function of the arguments' own widths and calls it.

What differs between the two MPI ABIs (read from mpi4py, never guessed from
the library's name alone):

- handles (communicators, datatypes, requests) are 4-byte ``int`` in MPICH
  and its derivatives (Intel MPI), pointers in Open MPI
  (``MPI._sizeof(MPI.Comm)``); MPICH's handles of duplicated communicators
  come back from ``MPI._handleof`` sign-extended, so they are masked;
- ``MPI_STATUS_IGNORE`` and ``MPI_STATUSES_IGNORE`` are ``(MPI_Status *)1``
  in MPICH and ``NULL`` in Open MPI.

Any other library (a standard-ABI build, say) has no binding: :func:`binding`
returns None and the engine runs its Python loop.  So does
``COLLECTIVES_NATIVE=0``, to compare the two.  This module follows how
numba-mpi binds MPI but shares no code with it (numba-mpi is GPL-3, and
handles only ``COMM_WORLD``).
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from mpi4py import MPI
from numba import types
from numba.extending import intrinsic

__all__ = ["Binding", "binding", "handles", "library", "pointer", "ISEND", "IRECV", "WAIT", "WAITALL", "ALLREDUCE",
           "STATUS_IGNORE", "IN_PLACE"]

#: Slots of :attr:`Binding.calls`: the functions' addresses, then ``MPI_STATUS(ES)_IGNORE`` and ``MPI_IN_PLACE``.
ISEND, IRECV, WAIT, WAITALL, ALLREDUCE, STATUS_IGNORE, IN_PLACE = range(7)
_FUNCTIONS = ("MPI_Isend", "MPI_Irecv", "MPI_Wait", "MPI_Waitall", "MPI_Allreduce")


class Binding(NamedTuple):
    """How compiled code calls this process's MPI."""

    #: int64: the addresses of ``MPI_Isend``, ``MPI_Irecv``, ``MPI_Wait``,
    #: ``MPI_Waitall``, ``MPI_Allreduce``, then the values of ``MPI_STATUS_IGNORE``
    #: and ``MPI_IN_PLACE``
    calls: np.ndarray
    #: the C type of a handle: int32 (MPICH ABI) or int64 (pointers)
    handle: np.dtype
    #: the library, for messages
    library: str


def library() -> ctypes.CDLL:
    """The MPI library as mpi4py's extension module sees it (its symbols resolve through its dependencies)."""
    return ctypes.CDLL(MPI.__file__)


@lru_cache(maxsize=None)
def binding() -> Binding | None:
    """This process's :class:`Binding`, or None: no compiled path (unknown ABI, ``COLLECTIVES_NATIVE=0``)."""
    setting = os.environ.get("COLLECTIVES_NATIVE", "1").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return None
    version = MPI.Get_library_version().rstrip("\x00")  # Open MPI's ends in its C string's NUL
    size = MPI._sizeof(MPI.Comm)
    if size == 4:  # MPICH, Intel MPI, MVAPICH: integer handles
        handle, ignore = np.dtype(np.int32), 1
    elif size == 8 and "Open MPI" in version:
        handle, ignore = np.dtype(np.int64), 0
    else:
        return None
    try:
        lib = library()
        addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in _FUNCTIONS]
    except (OSError, AttributeError):
        return None
    if not all(addresses):
        return None
    return Binding(np.array(addresses + [ignore, int(MPI.IN_PLACE)], np.int64), handle,
                   version.splitlines()[0].strip())


def handles(comm: MPI.Comm, bind: Binding, *more) -> np.ndarray:
    """``[comm, MPI_BYTE, *more]`` as ``bind.handle`` integers, for the compiled engine.

    ``more``: other mpi4py handle objects (a datatype, an op).
    """
    raw = [MPI._handleof(h) for h in (comm, MPI.BYTE) + more]
    if bind.handle.itemsize == 4:
        return np.array([h & 0xFFFF_FFFF for h in raw], np.uint32).view(np.int32)
    return np.array([h & 0xFFFF_FFFF_FFFF_FFFF for h in raw], np.uint64).view(np.int64)


def _codegen(context, builder, signature, args):
    """Call ``args[0]`` as ``int f(args[1:])``, each argument at its own width."""
    fnty = ir.FunctionType(ir.IntType(32), [context.get_value_type(t) for t in signature.args[1:]])
    return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])


def _integers(*tys) -> bool:
    return all(isinstance(t, types.Integer) for t in tys)


@intrinsic
def call2(typingctx, fn, a0, a1):
    """``((int (*)(a0, a1)) fn)(a0, a1)``: ``MPI_Wait(request *, status *)``. Integers only."""
    if _integers(fn, a0, a1):
        return types.int32(fn, a0, a1), _codegen
    return None


@intrinsic
def call3(typingctx, fn, a0, a1, a2):
    """``MPI_Waitall(count, requests *, statuses *)``."""
    if _integers(fn, a0, a1, a2):
        return types.int32(fn, a0, a1, a2), _codegen
    return None


@intrinsic
def call6(typingctx, fn, a0, a1, a2, a3, a4, a5):
    """``MPI_Allreduce(send *, recv *, count, datatype, op, comm)``."""
    if _integers(fn, a0, a1, a2, a3, a4, a5):
        return types.int32(fn, a0, a1, a2, a3, a4, a5), _codegen
    return None


@intrinsic
def call7(typingctx, fn, a0, a1, a2, a3, a4, a5, a6):
    """``MPI_Isend``/``MPI_Irecv(buffer *, count, datatype, peer, tag, comm, request *)``."""
    if _integers(fn, a0, a1, a2, a3, a4, a5, a6):
        return types.int32(fn, a0, a1, a2, a3, a4, a5, a6), _codegen
    return None


@intrinsic
def pointer(typingctx, address, kind):
    """``(kind *) address``: an integer address as a pointer to numpy scalar type ``kind`` (for ``numba.carray``)."""
    if isinstance(address, types.Integer) and isinstance(kind, types.NumberClass):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return types.CPointer(kind.dtype)(address, kind), codegen
    return None
