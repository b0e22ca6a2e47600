"""Scratch memory kept between calls, so the hot path does not allocate or page-fault."""

from __future__ import annotations

import numpy as np

_pool: dict[tuple[str, np.dtype], np.ndarray] = {}


def scratch(dtype: np.dtype, count: int, slot: str = "engine") -> np.ndarray:
    """Return a scratch array of ``count`` elements of ``dtype``, reused across calls.

    Each ``slot`` is a separate buffer (the engine's receive scratch is
    ``"engine"``; an algorithm's own temporary uses another name), which grows
    to the largest size asked for and stays allocated until :func:`release`.
    A returned view is valid until the next request for the same slot.
    """
    dtype = np.dtype(dtype)
    buf = _pool.get((slot, dtype))
    if buf is None or buf.size < count:
        buf = np.empty(max(count, 1), dtype)
        _pool[(slot, dtype)] = buf
    return buf[:count]


def release() -> None:
    """Free every scratch buffer (they are reallocated on demand)."""
    _pool.clear()
