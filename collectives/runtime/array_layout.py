"""A numpy array's header read from compiled code: the repeated all-reduce's checks at C speed.

The repeated-call path (:mod:`collectives.runtime.repeat`) must check, on
every call, that the buffers it is handed are arrays it may run on: numpy,
its dtype, C-contiguous, aligned, writeable where it writes, of its size,
not overlapping.  In Python those checks and the arrays' unboxing into
Numba cost more than the library's whole all-reduce of a few bytes
(1.5 us on the dev VM, against 0.9 for mpi4py's ``comm.Allreduce``).  So the
compiled entry is handed each buffer's ``id()`` (in CPython, the address
of its object) and reads the fields of numpy's ``PyArrayObject`` itself,
as a C extension would through numpy's headers: the object's type, data
pointer, dimensions, dtype (``descr``) and flags.

Those offsets are numpy's C ABI (``PyArrayObject_fields``, unchanged
since numpy 1.7 and kept by numpy 2) after CPython's object header.  They
are not assumed: :func:`verified` reads them back from probe arrays
through :mod:`ctypes` and compares them with what numpy reports (type,
data pointer, shape, dtype, and the flag bits of a writeable aligned
C-contiguous array, a read-only one, a strided one and a misaligned one).
Where any differs (a CPython build with another object header, say), there
is no repeated path and every call takes the whole one.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np
from numba import carray, njit

from .native import pointer

__all__ = ["verified", "TYPE", "DATA", "NDIM", "SHAPE", "DESCR", "FLAGS", "C_CONTIGUOUS", "ALIGNED",
           "WRITEABLE", "address"]

#: Byte offsets in a ``PyArrayObject``: ``ob_type``, ``data``, ``nd`` (C int), ``dimensions``, ``descr``,
#: ``flags`` (C int).
TYPE, DATA, NDIM, SHAPE, DESCR, FLAGS = 8, 16, 24, 32, 56, 64
#: numpy's ``NPY_ARRAY_C_CONTIGUOUS``, ``NPY_ARRAY_ALIGNED``, ``NPY_ARRAY_WRITEABLE``.
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x0001, 0x0100, 0x0400


def _fields(a: np.ndarray) -> tuple:
    """What the offsets above read from ``a``'s object: type, data, shape, descr, flags."""
    at = id(a)
    nd = ctypes.c_int.from_address(at + NDIM).value
    shape_at = ctypes.c_void_p.from_address(at + SHAPE).value
    shape = tuple((ctypes.c_ssize_t * nd).from_address(shape_at)) if nd else ()
    return (ctypes.c_void_p.from_address(at + TYPE).value, ctypes.c_void_p.from_address(at + DATA).value, shape,
            ctypes.c_void_p.from_address(at + DESCR).value, ctypes.c_int.from_address(at + FLAGS).value)


@lru_cache(maxsize=None)
def verified() -> bool:
    """Whether this process's arrays are laid out as the offsets and flag bits above say."""
    good = np.zeros((3, 4), np.float64)
    readonly = np.zeros(5, np.float32)
    readonly.flags.writeable = False
    strided = np.zeros(8, np.int32)[::2]
    misaligned = np.zeros(4 * 3 + 1, np.uint8)[1:].view(np.float32)
    wanted = {
        id(good): C_CONTIGUOUS | ALIGNED | WRITEABLE,
        id(readonly): C_CONTIGUOUS | ALIGNED,
        id(strided): ALIGNED | WRITEABLE,
        id(misaligned): C_CONTIGUOUS | WRITEABLE,
    }
    mask = C_CONTIGUOUS | ALIGNED | WRITEABLE
    for a in (good, readonly, strided, misaligned):
        try:
            kind, data, shape, descr, flags = _fields(a)
        except (ValueError, OverflowError):  # a NULL or absurd pointer where an address was expected
            return False
        if (kind, data, shape, descr, flags & mask) != (id(np.ndarray), a.ctypes.data, a.shape, id(a.dtype),
                                                        wanted[id(a)]):
            return False
    return True


@njit(inline="always", cache=True)
def _int64(at):
    return carray(pointer(at, np.int64), 1)[0]


@njit(inline="always", cache=True)
def _int32(at):
    return carray(pointer(at, np.int32), 1)[0]


@njit(inline="always", cache=True)
def address(obj, kind, descr, size, need):
    """The data address of the array at ``obj`` (an ``id()``), or 0 where it is not one to use.

    0 unless its type is ``kind`` (numpy's ndarray, exactly), its dtype
    object is ``descr``, it has ``size`` elements, and its flags hold every
    bit of ``need``.
    """
    if _int64(obj + TYPE) != kind or _int64(obj + DESCR) != descr or _int32(obj + FLAGS) & need != need:
        return 0
    nd = _int32(obj + NDIM)
    if nd:
        shape = carray(pointer(_int64(obj + SHAPE), np.int64), nd)
        n = 1
        for k in range(nd):
            n *= shape[k]
        if n != size:
            return 0
    elif size != 1:
        return 0
    return _int64(obj + DATA)
