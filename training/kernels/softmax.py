"""Softmax + cross-entropy, forward and backward fused: one pass per row gives the loss and its gradient.

For logits ``x`` (batch, classes) and integer labels, the mean loss is
``mean_i(log sum_j exp(x_ij - m_i) + m_i - x_i,label)`` with ``m_i`` the row
maximum (so nothing overflows), and its gradient ``(softmax(x) - onehot) *
scale`` (``scale = 1/batch`` for the mean; data-parallel training passes
``1/global_batch`` so that the all-reduced sum is the global mean).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._vecmath import exp, pick, variants

__all__ = ["softmax_cross_entropy", "softmax"]


def _fused(x, labels, scale, grad, loss_rows, want_grad):
    n, c = x.shape
    for i in prange(n):
        m = x[i, 0]
        for j in range(1, c):
            m = max(m, x[i, j])
        target = x[i, labels[i]]  # read before grad (possibly x itself) is written
        s = x[i, 0] - x[i, 0]
        if want_grad:
            for j in range(c):
                e = exp(x[i, j] - m)
                grad[i, j] = e
                s += e
            k = scale / s
            for j in range(c):
                grad[i, j] *= k
            grad[i, labels[i]] -= scale
        else:
            for j in range(c):
                s += exp(x[i, j] - m)
        loss_rows[i] = math.log(s) + m - target


def _softmax(x, out):
    n, c = x.shape
    for i in prange(n):
        m = x[i, 0]
        for j in range(1, c):
            m = max(m, x[i, j])
        s = x[i, 0] - x[i, 0]
        for j in range(c):
            e = exp(x[i, j] - m)
            out[i, j] = e
            s += e
        for j in range(c):
            out[i, j] /= s


# reassoc lets the row max and sum use SIMD lanes; NaN and inf keep IEEE rules
_FUSED = variants(_fused, fastmath={"contract", "reassoc"})
_SOFTMAX = variants(_softmax, fastmath={"contract", "reassoc"})


def _logits(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or not x.flags.c_contiguous:
        raise ValueError("logits must be a C-contiguous 2-D numpy array (batch, classes)")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"logits must be float32 or float64, got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError("logits need at least one class")
    return x


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, grad: np.ndarray | None = None, scale: float | None = None
) -> float:
    """Mean cross-entropy of ``softmax(logits)`` against ``labels``; the gradient into ``grad``.

    Parameters
    ----------
    logits : ndarray, shape (n, c), float32 or float64, C-contiguous
    labels : ndarray of int, shape (n,)
        Class indices in ``[0, c)``; checked before the kernel runs.
    grad : ndarray, shape (n, c), optional
        Receives ``(softmax(logits) - onehot(labels)) * scale``; may be
        ``logits`` itself.  None: the loss only.
    scale : float, optional
        Gradient scale, default ``1 / n`` (the gradient of the mean).

    Returns
    -------
    float
        The mean loss over the ``n`` rows (0.0 when ``n == 0``), summed in float64.
    """
    _logits(logits)
    n, c = logits.shape
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}), got [{labels.min()}, {labels.max()}]")
    if n == 0:
        return 0.0
    want = grad is not None
    if want:
        if not isinstance(grad, np.ndarray) or grad.shape != logits.shape or grad.dtype != logits.dtype \
                or not grad.flags.c_contiguous:
            raise ValueError(f"grad must be a C-contiguous {logits.dtype} array of shape {logits.shape}")
    else:
        grad = np.empty((1, 1), logits.dtype)
    scale = 1.0 / n if scale is None else float(scale)
    rows = np.empty(n, logits.dtype)
    pick(_FUSED, logits.nbytes)(logits, labels.astype(np.int64, copy=False), logits.dtype.type(scale),
                                grad, rows, want)
    return float(np.sum(rows, dtype=np.float64)) / n


def softmax(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise softmax (for predictions); ``out`` may be ``logits``."""
    _logits(logits)
    out = np.empty_like(logits) if out is None else out
    if out.shape != logits.shape or out.dtype != logits.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {logits.dtype} array of shape {logits.shape}")
    pick(_SOFTMAX, logits.nbytes)(logits, out)
    return out
