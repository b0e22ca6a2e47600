"""The local reduction: ``dst = dst (op) src`` element-wise, as Numba kernels.

Every algorithm funnels its arithmetic through :func:`combine`.  The kernels
are plain loops that LLVM vectorises; above :data:`PARALLEL_BYTES` a
``prange`` twin spreads the work over this rank's Numba threads.  Numba has no
CPU float16 type, so float16 goes through numpy's ufuncs with ``out=`` (still
no temporaries).

``min`` and ``max`` propagate NaN.  When the two operands compare equal but
differ in bits (``-0.0`` and ``+0.0``) the left operand wins; recursive
doubling, where both partners reduce the same pair, asks for the incoming
operand on the left on one side so that both sides produce the same bits.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from numa import threads

from ..errors import CollectiveError

__all__ = ["OPS", "DTYPES", "PARALLEL_BYTES", "combine", "check_op", "arithmetic_op"]

#: Reduction op names accepted by every collective.
OPS = ("sum", "prod", "min", "max", "avg")
#: Element types the collectives accept.
DTYPES = tuple(np.dtype(t) for t in ("float16", "float32", "float64", "int32", "int64"))
#: Buffers of at least this many bytes are reduced by the multithreaded kernels.
PARALLEL_BYTES = 1 << 20
#: Held while a multithreaded kernel runs: Numba's ``workqueue`` threading layer
#: (its fallback where neither TBB nor OpenMP loads) aborts the process when two
#: threads launch parallel kernels at once, so collectives running in concurrent
#: threads take turns there (a lock costs 0.1 us beside a reduce of 1 MiB or more).
_ONE_PARALLEL_KERNEL = threading.Lock()


@njit(cache=True, nogil=True)
def _sum(a, b):
    for i in range(a.size):
        a[i] += b[i]


@njit(cache=True, nogil=True)
def _prod(a, b):
    for i in range(a.size):
        a[i] *= b[i]


@njit(cache=True, nogil=True)
def _min(a, b):  # ties keep a
    for i in range(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y < x) | (y != y) else x


@njit(cache=True, nogil=True)
def _min_rev(a, b):  # ties take b
    for i in range(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y <= x) | (y != y) else x


@njit(cache=True, nogil=True)
def _max(a, b):
    for i in range(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y > x) | (y != y) else x


@njit(cache=True, nogil=True)
def _max_rev(a, b):
    for i in range(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y >= x) | (y != y) else x


@njit(cache=True, nogil=True, parallel=True)
def _sum_par(a, b):
    for i in prange(a.size):
        a[i] += b[i]


@njit(cache=True, nogil=True, parallel=True)
def _prod_par(a, b):
    for i in prange(a.size):
        a[i] *= b[i]


@njit(cache=True, nogil=True, parallel=True)
def _min_par(a, b):
    for i in prange(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y < x) | (y != y) else x


@njit(cache=True, nogil=True, parallel=True)
def _min_rev_par(a, b):
    for i in prange(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y <= x) | (y != y) else x


@njit(cache=True, nogil=True, parallel=True)
def _max_par(a, b):
    for i in prange(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y > x) | (y != y) else x


@njit(cache=True, nogil=True, parallel=True)
def _max_rev_par(a, b):
    for i in prange(a.size):
        x = a[i]
        y = b[i]
        a[i] = y if (y >= x) | (y != y) else x


# (op, incoming operand on the left) -> (serial kernel, parallel kernel)
_KERNELS = {
    ("sum", False): (_sum, _sum_par),
    ("sum", True): (_sum, _sum_par),  # IEEE addition is commutative bit for bit
    ("prod", False): (_prod, _prod_par),
    ("prod", True): (_prod, _prod_par),
    ("min", False): (_min, _min_par),
    ("min", True): (_min_rev, _min_rev_par),
    ("max", False): (_max, _max_par),
    ("max", True): (_max_rev, _max_rev_par),
}


def _f16_min(a, b, rev):
    take = (b <= a) if rev else (b < a)
    take |= np.isnan(b)
    np.copyto(a, b, where=take)


def _f16_max(a, b, rev):
    take = (b >= a) if rev else (b > a)
    take |= np.isnan(b)
    np.copyto(a, b, where=take)


def arithmetic_op(op: str) -> str:
    """The op the ranks reduce with: ``avg`` sums (the caller divides after), any other is itself.

    One rule for every collective that reduces, and for :func:`check_op`.
    """
    return "sum" if op == "avg" else op


def check_op(op: str, dtype: np.dtype) -> str:
    """Return the op that the arithmetic uses (``avg`` sums), or raise.

    Raises
    ------
    CollectiveError
        If ``op`` is unknown, or ``avg`` is asked of an integer dtype.
    """
    if op not in OPS:
        raise CollectiveError(f"unknown op {op!r}; use one of {', '.join(OPS)}")
    if op == "avg" and dtype.kind != "f":
        raise CollectiveError(
            f"op 'avg' needs a floating dtype, got {dtype}; use op='sum' and divide yourself"
        )
    return arithmetic_op(op)


def combine(dst: np.ndarray, src: np.ndarray, op: str, incoming_first: bool = False) -> None:
    """Reduce ``src`` into ``dst`` in place: ``dst = dst (op) src``.

    Parameters
    ----------
    dst, src : numpy.ndarray
        One-dimensional, contiguous, same length and dtype.
    op : str
        ``"sum"``, ``"prod"``, ``"min"`` or ``"max"`` (``avg`` is a sum here).
    incoming_first : bool
        Compute ``src (op) dst`` instead; differs only for ``min``/``max`` ties.
    """
    if dst.dtype == np.float16:
        if op == "sum":
            np.add(dst, src, out=dst)
        elif op == "prod":
            np.multiply(dst, src, out=dst)
        elif op == "min":
            _f16_min(dst, src, incoming_first)
        else:
            _f16_max(dst, src, incoming_first)
        return
    serial, parallel = _KERNELS[(op, incoming_first)]
    if dst.nbytes >= PARALLEL_BYTES and threads.count() > 1:
        with _ONE_PARALLEL_KERNEL:
            parallel(dst, src)
    else:
        serial(dst, src)
