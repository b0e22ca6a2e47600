"""The two loops that measure this machine's roof (see :mod:`training.roofline`)."""

from __future__ import annotations

from numba import njit, prange

__all__ = ["triad_kernel", "fma_loop"]


@njit(cache=True, nogil=True, parallel=True)
def triad_kernel(a, b, c, s):
    """STREAM's triad, ``a = b + s*c``, over this rank's threads."""
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


@njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def fma_loop(x, m, c, reps):
    """``reps`` fused multiply-adds ``v = v*m + c`` on every element of ``x``, in L1.

    Each thread owns blocks of 64 floats (8 AVX2 or 4 AVX-512 registers):
    ``reps`` dependent FMAs on each lane, 8 independent chains per block.
    """
    for blk in prange(x.size // 64):
        v = x[blk * 64 : (blk + 1) * 64].copy()
        for _ in range(reps):
            for j in range(64):
                v[j] = v[j] * m + c
        x[blk * 64 : (blk + 1) * 64] = v
