"""Bias + activation fused, forward and backward, in one pass over the layer's output.

Forward ``y = act(z + b)`` for ``z`` of shape (batch, features); backward
from the output alone (``act'`` is a function of ``y`` for every activation
here, so ``z`` need not be kept): ``dz = dy * act'(y)`` and ``db = sum of dz
over the batch``, in the same pass.  ``db`` is summed over fixed blocks of
64 rows in the input's dtype, then over the blocks in float64, so it does
not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._vecmath import pick, sigmoid, tanh, variants

__all__ = ["ACTIVATIONS", "bias_act", "bias_act_backward"]

#: Activation names, in the order of their codes in the kernels.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")
_ROWS = 64  # rows per block of the db sum


def _forward(z, b, code, one, out):
    n, f = z.shape
    zero = one - one
    for i in prange(n):
        if code == 0:
            for j in range(f):
                out[i, j] = z[i, j] + b[j]
        elif code == 1:
            for j in range(f):
                v = z[i, j] + b[j]
                out[i, j] = zero if v < zero else v  # NaN passes through
        elif code == 2:
            for j in range(f):
                out[i, j] = tanh(z[i, j] + b[j])
        else:
            for j in range(f):
                out[i, j] = sigmoid(z[i, j] + b[j])


def _backward(dy, y, code, one, dz, partial):
    n, f = dy.shape
    zero = one - one
    for blk in prange(partial.shape[0]):
        for j in range(f):
            partial[blk, j] = zero
        for i in range(blk * _ROWS, min(n, (blk + 1) * _ROWS)):
            if code == 0:
                for j in range(f):
                    d = dy[i, j]
                    dz[i, j] = d
                    partial[blk, j] += d
            elif code == 1:
                for j in range(f):
                    d = dy[i, j] if y[i, j] > zero else zero
                    dz[i, j] = d
                    partial[blk, j] += d
            elif code == 2:
                for j in range(f):
                    v = y[i, j]
                    d = dy[i, j] * (one - v * v)
                    dz[i, j] = d
                    partial[blk, j] += d
            else:
                for j in range(f):
                    v = y[i, j]
                    d = dy[i, j] * v * (one - v)
                    dz[i, j] = d
                    partial[blk, j] += d


_FORWARD = variants(_forward, fastmath={"contract"})
_BACKWARD = variants(_backward, fastmath={"contract"})


def _code(act: str) -> int:
    try:
        return ACTIVATIONS.index(act)
    except ValueError:
        raise ValueError(f"unknown activation {act!r}; use one of {', '.join(ACTIVATIONS)}") from None


def _matrix(name: str, a: np.ndarray, dtype=None) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != 2 or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous 2-D numpy array")
    if a.dtype not in (np.float32, np.float64) or (dtype is not None and a.dtype != dtype):
        raise ValueError(f"{name} must be float32 or float64 like the others, got {a.dtype}")
    return a


def bias_act(z: np.ndarray, b: np.ndarray, act: str = "relu", out: np.ndarray | None = None) -> np.ndarray:
    """``out = act(z + b)``, the bias broadcast over rows.

    Parameters
    ----------
    z : ndarray, shape (n, f), float32 or float64, C-contiguous
        Pre-activation (for instance ``x @ W``).
    b : ndarray, shape (f,)
    act : {"identity", "relu", "tanh", "sigmoid"}
    out : ndarray, optional
        Where to write; may be ``z`` itself (in place).  Allocated if None.

    Returns
    -------
    ndarray
        ``out``.
    """
    code = _code(act)
    _matrix("z", z)
    if b.shape != (z.shape[1],) or b.dtype != z.dtype:
        raise ValueError(f"b must have shape ({z.shape[1]},) and dtype {z.dtype}, got {b.shape} {b.dtype}")
    out = np.empty_like(z) if out is None else _matrix("out", out, z.dtype)
    if out.shape != z.shape:
        raise ValueError(f"out has shape {out.shape}, z has {z.shape}")
    pick(_FORWARD, z.nbytes)(z, np.ascontiguousarray(b), code, z.dtype.type(1), out)
    return out


def bias_act_backward(
    dy: np.ndarray, y: np.ndarray, act: str = "relu", dz: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients through ``y = act(z + b)``: ``(dz, db)``.

    Parameters
    ----------
    dy : ndarray, shape (n, f)
        Gradient of the loss with respect to ``y``.
    y : ndarray, shape (n, f)
        The forward output (relu's gradient at exactly 0 is taken as 0).
    act : str
        As in :func:`bias_act`.
    dz : ndarray, optional
        Where to write the gradient with respect to ``z``; may be ``dy``.

    Returns
    -------
    dz : ndarray, shape (n, f)
    db : ndarray, shape (f,), the dtype of ``dy``
    """
    code = _code(act)
    _matrix("dy", dy)
    _matrix("y", y, dy.dtype)
    if y.shape != dy.shape:
        raise ValueError(f"y has shape {y.shape}, dy has {dy.shape}")
    dz = np.empty_like(dy) if dz is None else _matrix("dz", dz, dy.dtype)
    if dz.shape != dy.shape:
        raise ValueError(f"dz has shape {dz.shape}, dy has {dy.shape}")
    partial = np.empty((max(1, -(-dy.shape[0] // _ROWS)), dy.shape[1]), dy.dtype)
    pick(_BACKWARD, dy.nbytes)(dy, y, code, dy.dtype.type(1), dz, partial)
    return dz, partial.sum(axis=0, dtype=np.float64).astype(dy.dtype)
