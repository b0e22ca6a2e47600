"""Gradient buckets: many arrays copied into one contiguous buffer, and back.

A bucket is what the all-reduce sends: one message instead of one per
layer.  :class:`Layout` fixes where each array sits; :func:`flatten` and
:func:`unflatten` copy with a multithreaded kernel for large buckets when
this rank has several threads, and with ``memcpy`` otherwise.
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Sequence

import numpy as np
from numba import prange

from numa import threads

from ._vecmath import PARALLEL_BYTES, variants

__all__ = ["Layout", "flatten", "unflatten"]


def _copy(dst, src):
    for i in prange(dst.size):
        dst[i] = src[i]


_COPY = variants(_copy)


class Layout:
    """Offsets of ``shapes`` packed one after another (elements).

    Attributes
    ----------
    offsets : tuple of int
        ``offsets[i]`` is where array ``i`` starts; ``offsets[-1]`` the total.
    """

    def __init__(self, shapes: Sequence[tuple[int, ...]]):
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.offsets = tuple(accumulate((math.prod(s) for s in self.shapes), initial=0))

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        """Arrays of the layout's shapes that share memory with ``flat``."""
        return [flat[a:b].reshape(s) for (a, b), s in zip(zip(self.offsets, self.offsets[1:]), self.shapes)]


def _check(arrays, flat, into_arrays: bool = False) -> list[np.ndarray]:
    """The arrays as flat views (copies, if not contiguous and only read), after checking they fit ``flat``."""
    views = []
    total = 0
    for a in arrays:
        if a.dtype != flat.dtype:
            raise ValueError(f"every array must be {flat.dtype}, got {a.dtype}")
        if into_arrays and not a.flags.c_contiguous:
            raise ValueError("arrays to unflatten into must be C-contiguous")
        views.append(a.reshape(-1))
        total += a.size
    if flat.ndim != 1 or flat.size != total or not flat.flags.c_contiguous:
        raise ValueError(f"bucket must be a contiguous 1-D array of {total} elements, got {flat.shape}")
    return views


def _threaded(flat: np.ndarray) -> bool:
    return flat.nbytes >= PARALLEL_BYTES and threads.count() > 1


def flatten(arrays: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """Copy ``arrays`` one after another into ``out`` (1-D, allocated if None); return it.

    One thread: numpy's ``concatenate`` (a ``memcpy`` per array, non-temporal
    stores for large blocks, faster than a compiled loop); several: the
    threaded copy kernel per array.
    """
    if out is None:
        out = np.empty(sum(a.size for a in arrays), arrays[0].dtype if arrays else np.float32)
    if not _threaded(out) and arrays and out.ndim == 1 and out.flags.c_contiguous:
        # numpy checks it all here: casting="no" refuses another dtype, out= a wrong size
        try:
            return np.concatenate([a.ravel() for a in arrays], out=out, casting="no")
        except (TypeError, ValueError):
            _check(arrays, out)  # raises the explanation
            raise
    views = _check(arrays, out)
    if not views:
        return out
    lo = 0
    for a in views:
        if a.size:
            _COPY[1](out[lo : lo + a.size], a)
        lo += a.size
    return out


def unflatten(flat: np.ndarray, arrays: Sequence[np.ndarray]) -> None:
    """Copy ``flat`` back into ``arrays`` (the inverse of :func:`flatten`)."""
    views = _check(arrays, flat, into_arrays=True)
    copy = _COPY[1] if _threaded(flat) else np.copyto
    lo = 0
    for a in views:
        if a.size:
            copy(a, flat[lo : lo + a.size])
        lo += a.size
