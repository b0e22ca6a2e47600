"""Buffer handling in one place: array kind, validation, allocation and copies, host or device.

Accepted: numpy arrays and device arrays with a backend
(:mod:`collectives.runtime.device`: cupy's, or a registered type),
C-contiguous, any shape (treated as flat), with a dtype from
:data:`collectives.runtime.reduce_ops.DTYPES`.  A collective's send and
receive buffers are of one kind; device arrays stay on the device.
"""

from __future__ import annotations

import numpy as np

from .device import backend_of, is_device
from .reduce_ops import DTYPES

_NAMES = ", ".join(str(d) for d in DTYPES)
_ACCEPTED = frozenset(DTYPES)


def problem(a, name: str, writes: bool = True) -> str | None:
    """Why ``a`` cannot be used as a buffer, or None if it can.

    ``writes``: the collective writes into ``a`` (a receive buffer, or a
    send buffer used in place), so it must be writeable.
    """
    if not (isinstance(a, np.ndarray) or is_device(a)):
        return f"{name} must be a numpy or cupy array, got {type(a).__name__}"
    if a.dtype not in _ACCEPTED:
        return f"{name} has dtype {a.dtype}; supported dtypes are {_NAMES}"
    if not a.flags.c_contiguous:
        return f"{name} is not C-contiguous; pass numpy.ascontiguousarray({name})"
    if writes and not getattr(a.flags, "writeable", True):
        why = "the result is written into it in place" if name == "sendbuf" else "the result is written into it"
        return f"{name} is read-only, but {why}; pass a writeable array"
    return None


def recv_problem(sendbuf, recvbuf, size: int) -> str | None:
    """Why ``recvbuf`` cannot receive ``size`` elements of ``sendbuf``'s dtype and kind."""
    bad = problem(recvbuf, "recvbuf")
    if bad:
        return bad
    if recvbuf.dtype != sendbuf.dtype:
        return f"recvbuf has dtype {recvbuf.dtype} but sendbuf has {sendbuf.dtype}"
    if recvbuf.size != size:
        return f"recvbuf has {recvbuf.size} elements, expected {size}"
    if backend_of(recvbuf) is not backend_of(sendbuf):
        return "sendbuf and recvbuf must both be numpy arrays or both device arrays of one type"
    if recvbuf is not sendbuf and _shares_memory(sendbuf, recvbuf):
        return "recvbuf overlaps sendbuf without being it; pass recvbuf=sendbuf for in place"
    return None


def _shares_memory(a, b) -> bool:
    if type(a) is np.ndarray:
        return bool(np.shares_memory(a, b))
    return _overlap(a.__cuda_array_interface__["data"][0], a.nbytes, b.__cuda_array_interface__["data"][0],
                    b.nbytes)


def _overlap(a: int, a_bytes: int, b: int, b_bytes: int) -> bool:
    """Whether ``[a, a + a_bytes)`` and ``[b, b + b_bytes)`` meet (contiguous arrays' memory)."""
    return a_bytes > 0 and b_bytes > 0 and a < b + b_bytes and b < a + a_bytes


def empty(like, size: int):
    """A new flat array of ``size`` elements, of ``like``'s dtype and kind."""
    backend = backend_of(like)
    if backend is not None:
        return backend.empty(size, like.dtype)
    return np.empty(size, like.dtype)


def copy(dst, src) -> None:
    """``dst[...] = src``, both of one kind (on the device for device arrays)."""
    backend = backend_of(dst)
    if backend is not None:
        backend.copy(dst, src)
    else:
        np.copyto(dst, src)


def divide(a, p: int) -> None:
    """``a /= p`` in place, as numpy's division rounds (``avg``)."""
    backend = backend_of(a)
    if backend is not None:
        backend.divide(a, p)
    else:
        np.divide(a, p, out=a)


PAGE = 4096
#: Where glibc puts a large (mmap-served) allocation in its page, hence where
#: numpy's big arrays start: 16 bytes past a page boundary.
MALLOC_OFFSET = 16


def at_page_offset(count: int, dtype, offset: int = MALLOC_OFFSET) -> np.ndarray:
    """A new flat host array of ``count`` elements starting ``offset`` bytes into a page.

    Benchmarks allocate with this so that every buffer sits at the same offset
    within its page, the one numpy's large arrays get.  The offsets of two
    buffers decide the speed of copies between them: on AMD Zen, glibc's
    ``memcpy`` (``rep movsb``) runs about 10x slower when the destination is
    a few bytes past the source modulo 4 KiB, which is where malloc happens
    to put some small sizes (dev VM: a 256 KiB ``np.copyto`` took 89 us
    between buffers 16 bytes apart in their pages, 8 us at equal offsets),
    and MPICH's and our 64 MiB all-reduces ran about 30 % slower from
    page-aligned buffers than from numpy's usual offset of 16.
    """
    dtype = np.dtype(dtype)
    raw = np.empty(count * dtype.itemsize + 2 * PAGE, np.uint8)
    start = -raw.ctypes.data % PAGE + offset
    return raw[start : start + count * dtype.itemsize].view(dtype)


def flat(a) -> np.ndarray:
    """A one-dimensional view of a contiguous array."""
    return a.reshape(-1)
