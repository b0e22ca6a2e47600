"""The SGD update with momentum and weight decay, in one pass over the parameters.

PyTorch's ``torch.optim.SGD`` rule (no dampening), per element::

    d = g + weight_decay * w
    v = momentum * v + d             (the first step finds v = 0, so v = d)
    d = d + momentum * v  if nesterov else  v
    w = w - lr * d

No ``fastmath``: every rank runs this update on the same all-reduced
gradient, and IEEE multiplies and adds without contraction give the same
bits on every x86 CPU, so the ranks' parameters stay bitwise identical.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._vecmath import pick, variants

__all__ = ["sgd_update"]


def _update(w, g, v, lr, momentum, weight_decay, nesterov):
    for i in prange(w.size):
        d = g[i] + weight_decay * w[i]
        if momentum != 0:
            u = momentum * v[i] + d
            v[i] = u
            d = d + momentum * u if nesterov else u
        w[i] = w[i] - lr * d


_UPDATE = variants(_update)


def sgd_update(
    w: np.ndarray, g: np.ndarray, v: np.ndarray | None, *, lr: float, momentum: float = 0.0,
    weight_decay: float = 0.0, nesterov: bool = False,
) -> None:
    """Update ``w`` (and the momentum buffer ``v``) in place.

    Parameters
    ----------
    w, g, v : ndarray
        Parameters, gradient and momentum buffer: same shape, same float
        dtype, C-contiguous (flat buckets, typically).  ``v`` may be None
        when ``momentum == 0``; it starts as zeros.
    lr, momentum, weight_decay : float
        Cast to the parameters' dtype.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).
    """
    if w.dtype not in (np.float32, np.float64):
        raise ValueError(f"parameters must be float32 or float64, got {w.dtype}")
    if momentum < 0 or weight_decay < 0 or lr < 0:
        raise ValueError("lr, momentum and weight_decay must be >= 0")
    if nesterov and momentum == 0:
        raise ValueError("nesterov momentum needs momentum > 0")
    if v is None:
        if momentum != 0:
            raise ValueError("momentum > 0 needs a momentum buffer v")
        v = w[:0]
    arrays = (w, g) if momentum == 0 else (w, g, v)
    for a in arrays:
        if a.shape != w.shape or a.dtype != w.dtype or not a.flags.c_contiguous:
            raise ValueError(f"w, g and v must be C-contiguous {w.dtype} arrays of shape {w.shape}")
    t = w.dtype.type
    flat = [a.reshape(-1) for a in (w, g, v)]
    pick(_UPDATE, w.nbytes)(*flat, t(lr), t(momentum), t(weight_decay), bool(nesterov))
