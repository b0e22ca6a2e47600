"""Buffer handling in one place: array kind, validation, and host staging for GPU arrays.

Accepted: numpy arrays and cupy arrays, C-contiguous, any shape (treated as
flat), with a dtype from :data:`collectives.runtime.reduce_ops.DTYPES`.  The MPI on
our GPU box is not CUDA-aware, so cupy arrays are staged through host memory:
copied to a numpy array, reduced there, and copied back.
"""

from __future__ import annotations

import numpy as np

from .reduce_ops import DTYPES

_NAMES = ", ".join(str(d) for d in DTYPES)
_ACCEPTED = frozenset(DTYPES)


def is_cupy(a) -> bool:
    """Whether ``a`` is a cupy array (without importing cupy)."""
    return type(a) is not np.ndarray and type(a).__module__.split(".")[0] == "cupy"


def problem(a, name: str, writes: bool = True) -> str | None:
    """Why ``a`` cannot be used as a buffer, or None if it can.

    ``writes``: the collective writes into ``a`` (a receive buffer, or a
    send buffer used in place), so it must be writeable.
    """
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
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
    if is_cupy(recvbuf) != is_cupy(sendbuf):
        return "sendbuf and recvbuf must both be numpy or both be cupy arrays"
    if recvbuf is not sendbuf and _shares_memory(sendbuf, recvbuf):
        return "recvbuf overlaps sendbuf without being it; pass recvbuf=sendbuf for in place"
    return None


def _shares_memory(a, b) -> bool:
    if is_cupy(a):
        import cupy

        return bool(cupy.shares_memory(a, b))
    return bool(np.shares_memory(a, b))


def empty(like, size: int):
    """A new flat array of ``size`` elements, of ``like``'s dtype and kind."""
    if is_cupy(like):
        import cupy

        return cupy.empty(size, like.dtype)
    return np.empty(size, like.dtype)


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


def to_host(a) -> np.ndarray:
    """A flat numpy copy of a cupy array, or ``a`` itself (flat) if it is numpy."""
    if is_cupy(a):
        import cupy

        return cupy.asnumpy(a).reshape(-1)
    return flat(a)


def from_host(host: np.ndarray, dst) -> None:
    """Copy ``host`` into ``dst`` when ``dst`` is a cupy array (numpy needs nothing)."""
    if is_cupy(dst):
        dst.reshape(-1).set(host)
