"""exp and tanh that LLVM can vectorise, and the two-variant (serial, parallel) compile.

Numba calls libm for ``math.exp`` and ``math.tanh``: one element at a time,
while numpy's float32 ufuncs use SIMD.  For float32 these are the classic
vectorisable forms instead: Cephes' ``expf`` (range reduction by ``ln 2``,
a degree-6 polynomial, the power of two built from the exponent bits) and
Eigen's rational ``tanh``.  Both stay within a few ulp of the float64
result (tests check it); float64 keeps libm.  The float32 ``exp``
saturates at ``e**88`` (1.65e38) and at ``e**-87.3`` (1.2e-38) instead of
overflowing to inf or flushing to 0.

Numba's on-disk cache (``cache=True``) checks only the kernel's own file:
after editing this module (or the ``njit`` options in :func:`variants`),
delete ``training/**/__pycache__/*.nbi`` and ``*.nbc``, or the kernels keep
the old code.
"""

from __future__ import annotations

import math
import types

import numpy as np
from llvmlite import ir
from numba import njit
from numba import types as nbtypes
from numba.extending import intrinsic, overload

from numa import threads

__all__ = ["exp", "tanh", "sigmoid", "variants", "pick", "PARALLEL_BYTES"]


@intrinsic
def _int_bits_as_float32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (an LLVM bitcast, vectorisable)."""
    if bits != nbtypes.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return nbtypes.float32(nbtypes.int32), codegen


@njit(inline="always")
def _exp32(x):
    x = min(max(x, np.float32(-87.33654)), np.float32(88.0))
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    z = r * r
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * z + r + np.float32(1.0)
    return y * _int_bits_as_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))


@njit(inline="always")
def _tanh32(x):
    x = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = x2 * p + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    p = x * p
    q = np.float32(1.19825839466702e-06)
    q = x2 * q + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return p / q


def exp(x):
    """``e**x``; float32 by the vectorisable polynomial (``-inf`` gives ~1e-38, not 0)."""
    return math.exp(x)


def tanh(x):
    """Hyperbolic tangent; float32 by Eigen's rational approximation."""
    return math.tanh(x)


def sigmoid(x):
    """``1 / (1 + e**-x)``."""
    return 1.0 / (1.0 + math.exp(-x))


@overload(exp, inline="always")
def _exp_impl(x):
    if x == nbtypes.float32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


@overload(tanh, inline="always")
def _tanh_impl(x):
    if x == nbtypes.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@overload(sigmoid, inline="always")
def _sigmoid_impl(x):
    if x == nbtypes.float32:
        return lambda x: np.float32(1.0) / (np.float32(1.0) + _exp32(-x))
    return lambda x: 1.0 / (1.0 + math.exp(-x))


#: Buffers of at least this many bytes run the multithreaded variant: below
#: it, waking the thread pool costs more than it saves (the collectives'
#: reduce kernel uses the same 1 MiB).
PARALLEL_BYTES = 1 << 20


def variants(fn, **options):
    """``(serial, parallel)`` Numba compilations of one Python function.

    ``prange`` runs as ``range`` in the serial one.  The serial copy gets
    its own qualified name so that the two on-disk caches (``cache=True``)
    do not overwrite each other.  ``options`` go to ``numba.njit``
    (``fastmath`` flags, say); both use numpy's error model, as Numba's
    parallel loops do anyway.
    """
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"
    copy.__module__ = fn.__module__
    # error_model="numpy": a float division by zero gives inf, as in numpy,
    # instead of a Python-style check that keeps the loop from vectorising
    opts = {"cache": True, "nogil": True, "error_model": "numpy", **options}
    return njit(**opts)(copy), njit(parallel=True, **opts)(fn)


def pick(pair, nbytes: int):
    """The parallel variant of ``pair`` for buffers of ``PARALLEL_BYTES`` or more on several threads, else the serial."""
    return pair[1] if nbytes >= PARALLEL_BYTES and threads.count() > 1 else pair[0]
