"""The kernels the roofline runs, each beside the plain numpy expression it replaces.

A case builds its operands for a size and returns ``Case(ours, numpy,
nbytes, flops)``.  ``nbytes`` counts what the kernel must read and write
once (STREAM's convention: no write-allocate traffic), ``flops`` the
arithmetic of our formula per element.  The numpy side is the best plain
numpy a user would write: ``out=`` arguments, no avoidable temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collectives.runtime.reduce_ops import combine

from .kernels import (
    bias_act,
    bias_act_backward,
    conv2d,
    conv2d_backward,
    flatten,
    sgd_update,
    softmax_cross_entropy,
)
from .kernels.peaks import triad_kernel

__all__ = ["Case", "CASES", "build"]


@dataclass
class Case:
    """One kernel at one size.

    ``bound``: ``"memory"`` for streaming kernels (a few operations per
    element: the triad is their roof), ``"compute"`` for those whose
    instructions set the pace (polynomial ``exp``/``tanh``, convolution):
    their roof is the peak FLOP/s, and ``flops`` counts only the formula's
    multiplies and adds, not the floors, conversions and compares around them.
    """

    ours: Callable[[], object]
    numpy: Callable[[], object]
    nbytes: float
    flops: float
    bound: str = "memory"


def _rng():
    return np.random.default_rng(0)


def _matrix(nbytes, cols=256):
    n = max(nbytes // 4, cols)
    return _rng().standard_normal((n // cols, cols)).astype(np.float32)


#: flops per element of each activation's forward formula (bias add included)
_ACT_FLOPS = {"relu": 2, "tanh": 24, "sigmoid": 20}


def _bias_act(act):
    def build(nbytes):
        z = _matrix(nbytes)
        b = _rng().standard_normal(z.shape[1]).astype(np.float32)
        out = np.empty_like(z)

        def numpy():
            np.add(z, b, out=out)
            if act == "relu":
                np.maximum(out, 0, out=out)
            elif act == "tanh":
                np.tanh(out, out=out)
            else:
                np.negative(out, out=out)
                np.exp(out, out=out)
                np.add(out, 1, out=out)
                np.reciprocal(out, out=out)

        return Case(lambda: bias_act(z, b, act, out), numpy, 2 * z.nbytes, _ACT_FLOPS[act] * z.size,
                    "memory" if act == "relu" else "compute")

    return build


def _bias_act_backward(nbytes):
    y = np.maximum(_matrix(nbytes), 0)
    dy = _rng().standard_normal(y.shape).astype(np.float32)
    dz = np.empty_like(y)
    mask = np.empty(y.shape, bool)

    def numpy():
        np.greater(y, 0, out=mask)
        np.multiply(dy, mask, out=dz)
        return dz.sum(axis=0)

    return Case(lambda: bias_act_backward(dy, y, "relu", dz), numpy, 3 * y.nbytes, 2 * y.size)


def _softmax_xent(nbytes, classes=1000):
    x = _matrix(nbytes, classes)
    labels = _rng().integers(0, classes, x.shape[0])
    grad = np.empty_like(x)
    rows = np.arange(x.shape[0])
    m = np.empty((x.shape[0], 1), np.float32)
    s = np.empty((x.shape[0], 1), np.float32)

    def numpy():
        np.max(x, axis=1, keepdims=True, out=m)
        np.subtract(x, m, out=grad)
        target = grad[rows, labels]
        np.exp(grad, out=grad)
        np.sum(grad, axis=1, keepdims=True, out=s)
        loss = float(np.mean(np.log(s[:, 0]) - target))
        np.divide(grad, s, out=grad)
        grad[rows, labels] -= 1
        np.multiply(grad, np.float32(1.0 / x.shape[0]), out=grad)
        return loss

    return Case(lambda: softmax_cross_entropy(x, labels, grad), numpy, 2 * x.nbytes, 20 * x.size, "compute")


def _sgd(nbytes):
    n = max(nbytes // 4, 1)
    rng = _rng()
    w, g, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    tmp = np.empty_like(w)
    lr, mu, wd = 0.01, 0.9, 1e-4

    def numpy():
        np.multiply(w, np.float32(wd), out=tmp)
        np.add(tmp, g, out=tmp)
        np.multiply(v, np.float32(mu), out=v)
        np.add(v, tmp, out=v)
        np.multiply(v, np.float32(lr), out=tmp)
        np.subtract(w, tmp, out=w)

    def ours():
        sgd_update(w, g, v, lr=lr, momentum=mu, weight_decay=wd)

    return Case(ours, numpy, 5 * w.nbytes, 6 * n)


def _flatten(nbytes, parts=10, cols=64):
    """Ten weight-matrix-shaped gradients into one bucket."""
    rows = max(nbytes // 4 // parts // cols, 1)
    arrays = [_rng().standard_normal((rows, cols)).astype(np.float32) for _ in range(parts)]
    out = np.empty(rows * cols * parts, np.float32)
    return Case(lambda: flatten(arrays, out), lambda: np.concatenate([a.ravel() for a in arrays], out=out),
                2 * out.nbytes, 0)


def _reduce(nbytes):
    n = max(nbytes // 4, 1)
    a, b = (_rng().standard_normal(n).astype(np.float32) for _ in range(2))
    return Case(lambda: combine(a, b, "sum"), lambda: np.add(a, b, out=a), 3 * a.nbytes, n)


def _triad(nbytes):
    n = max(nbytes // 8, 1)
    a, b, c = (np.full(n, v) for v in (0.0, 1.0, 2.0))

    def numpy():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    return Case(lambda: triad_kernel(a, b, c, 3.0), numpy, 3 * a.nbytes, 2 * n)


def _conv_operands(nbytes, channels=16, hw=32):
    per_image = channels * hw * hw * 4
    n = max(1, nbytes // per_image)
    rng = _rng()
    x = rng.standard_normal((n, channels, hw, hw)).astype(np.float32)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    return x, w, b


def _conv_flops(x, w):
    n, c, h, wd = x.shape
    return 2.0 * n * w.shape[0] * c * 9 * h * wd


def _conv_forward(nbytes):
    x, w, b = _conv_operands(nbytes)

    def numpy():
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(xp, (3, 3), axis=(2, 3))
        return np.einsum("nchwrs,kcrs->nkhw", win, w, optimize=True) + b[None, :, None, None]

    return Case(lambda: conv2d(x, w, b), numpy, 2 * x.nbytes + w.nbytes, _conv_flops(x, w), "compute")


def _conv_backward(nbytes):
    x, w, _ = _conv_operands(nbytes)
    dout = _rng().standard_normal(x.shape).astype(np.float32)
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1])

    def numpy():
        win = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
        dw = np.einsum("nkhw,nchwrs->kcrs", dout, win, optimize=True)
        dwin = sliding_window_view(np.pad(dout, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
        dx = np.einsum("nkhwrs,kcrs->nchw", dwin, flipped, optimize=True)
        return dx, dw, dout.sum(axis=(0, 2, 3))

    return Case(lambda: conv2d_backward(dout, x, w), numpy, 3 * x.nbytes + 2 * w.nbytes,
                2 * _conv_flops(x, w), "compute")


CASES = {
    "triad": _triad,
    "bias_relu": _bias_act("relu"),
    "bias_tanh": _bias_act("tanh"),
    "bias_sigmoid": _bias_act("sigmoid"),
    "bias_relu_backward": _bias_act_backward,
    "softmax_xent": _softmax_xent,
    "sgd_momentum": _sgd,
    "flatten": _flatten,
    "reduce_sum": _reduce,
    "conv2d": _conv_forward,
    "conv2d_backward": _conv_backward,
}


def build(name: str, nbytes: int) -> Case:
    """Operands of case ``name`` for about ``nbytes`` of its main array."""
    return CASES[name](nbytes)
