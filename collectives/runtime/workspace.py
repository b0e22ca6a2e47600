"""Scratch memory kept between calls, so the hot path does not allocate or page-fault.

Each thread has its own scratch, so collectives on different communicators
may run in concurrent threads without writing into each other's buffers.
"""

from __future__ import annotations

import threading

import numpy as np

from .device import backend_of


class _Pools(threading.local):
    """Per thread: ``(slot, dtype)`` -> the scratch array."""

    def __init__(self):
        self.pool: dict[tuple[str, np.dtype], np.ndarray] = {}


_local = _Pools()


def scratch(dtype: np.dtype, count: int, slot: str = "engine") -> np.ndarray:
    """Return this thread's scratch array of ``count`` elements of ``dtype``, reused across calls.

    Each ``slot`` is a separate buffer (the engine's receive scratch is
    ``"engine"``; an algorithm's own temporary uses another name), which grows
    to the largest size asked for and stays allocated until :func:`release`.
    A returned view is valid until the next request for the same slot in the
    same thread.
    """
    pool = _local.pool
    dtype = np.dtype(dtype)
    buf = pool.get((slot, dtype))
    if buf is None or buf.size < count:
        buf = np.empty(max(count, 1), dtype)
        pool[(slot, dtype)] = buf
    return buf[:count]


def scratch_like(like, count: int, slot: str) -> np.ndarray:
    """:func:`scratch` of ``like``'s dtype, on the device when ``like`` is a device array."""
    backend = backend_of(like)
    if backend is not None:
        return backend.scratch(like.dtype, count, slot)
    return scratch(like.dtype, count, slot)


def release() -> None:
    """Free this thread's scratch buffers (they are reallocated on demand)."""
    _local.pool.clear()
