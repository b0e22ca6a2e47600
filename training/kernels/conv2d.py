"""Direct 2-D convolution for small filters, forward and backward (any stride, zero padding).

Layout NCHW: input (N, C, H, W), filters (K, C, R, S), output (N, K, Ho, Wo)
with ``Ho = (H + 2*pad - R) // stride + 1`` (``pad = R // 2`` keeps the
size for odd filters at stride 1, and halves it at stride 2).  As in
deep-learning libraries this is a cross-correlation:
``out[n,k,y,x] = b[k] + sum_{c,r,s} w[k,c,r,s] * in[n,c,y*stride+r-pad,x*stride+s-pad]``,
with ``0 <= pad <= min(R, S) - 1``.

Direct, not lowered to a matrix (no im2col copy nine times the input):
the input is padded once into flat planes, and each filter tap ``(r, s)``
is then one long contiguous multiply-add over a whole output plane
computed on the padded row length (the ``S - 1`` extra columns per row
are dropped), so the innermost loop is long and vectorises.  The input
gradient is the same correlation of the padded output gradient with the
flipped filters; the filter gradient is one long dot product per tap.
Threads split the work by (image, filter), (image, channel) or (filter,
channel), so no two write the same element.  Spatial parallelism (halo
exchange) calls these on each rank's tile.

A stride ``t`` above 1 reads every ``t``-th row and column, which the
padded-width trick cannot do in one contiguous pass.  It is run as a stride-1
convolution of the input's ``t x t`` phases instead (the polyphase form):
phase ``(a, b)`` holds the padded input's pixels ``[a::t, b::t]``, tap
``(r, s) = (t·r' + a, t·s' + b)`` of a filter becomes tap ``(r', s')`` on that
phase, and the ``ceil(R/t) x ceil(S/t)`` phase filters are zero where ``r``
or ``s`` lies past the filter.  Every pass is then the stride-1 kernels'
(forward, filter gradient, input gradient), at the price of the zero taps:
16 multiply-adds for 9 for a 3 x 3 filter at stride 2.  Kernels looping
over strided rows instead ran 3-6x slower here (batch 32, 16 to 64
channels, 16² to 64² outputs).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._vecmath import pick, variants

__all__ = ["conv2d", "conv2d_backward", "output_shape"]


def _pad(x, top, left, wp, out):
    """Planes of ``x`` (N, C, H, W) into ``out`` (N, C, L): row ``y`` at ``(y + top) * wp + left``, zeros elsewhere.

    Pads the input (``top``/``left`` = the padding, ``wp`` = the padded
    width) and spreads an output gradient onto the padded row length
    (``top = left = 0``).
    """
    n_img, n_ch, h, wd = x.shape
    for task in prange(n_img * n_ch):
        n = task // n_ch
        c = task % n_ch
        plane = out[n, c]
        for i in range(plane.size):
            plane[i] = 0
        for y in range(h):
            row = plane[(y + top) * wp + left : (y + top) * wp + left + wd]
            src = x[n, c, y]
            for i in range(wd):
                row[i] = src[i]


def _correlate(xpad, wp, w, b, out):
    """``out[n,k]`` (Ho, Wo) from padded planes of row length ``wp``: one long axpy per (c, r, s).

    Each output plane is computed on the padded width (``Ho * wp``
    positions, the last ``S - 1`` of each row wrapping into the next and
    dropped), so a filter tap is one contiguous, vectorised pass.
    """
    n_img, n_ch = xpad.shape[0], xpad.shape[1]
    n_f, _, r_n, s_n = w.shape
    ho, wo = out.shape[2], out.shape[3]
    m = ho * wp
    for task in prange(n_img * n_f):
        n = task // n_f
        k = task % n_f
        acc = np.zeros(m, out.dtype)
        for c in range(n_ch):
            plane = xpad[n, c]
            for r in range(r_n):
                for s in range(s_n):
                    wv = w[k, c, r, s]
                    src = plane[r * wp + s : r * wp + s + m]
                    for i in range(m):
                        acc[i] += wv * src[i]
        bias = b[k]
        for y in range(ho):
            row = out[n, k, y]
            wide = acc[y * wp : y * wp + wo]
            for i in range(wo):
                row[i] = wide[i] + bias


def _filter_grad(dwide, xpad, wp, dw, db):
    """``dw[k,c,r,s]``: a long dot product per tap over the padded-width planes; ``db[k]``.

    Images are the outer loop, so the two planes of one image stay in L1
    while all ``R * S`` taps read them.
    """
    n_img = xpad.shape[0]
    n_f, n_ch, r_n, s_n = dw.shape
    m = dwide.shape[2]
    for task in prange(n_f * n_ch):
        k = task // n_ch
        c = task % n_ch
        taps = np.zeros(r_n * s_n, dw.dtype)
        for n in range(n_img):
            g = dwide[n, k]
            plane = xpad[n, c]
            for r in range(r_n):
                for s in range(s_n):
                    src = plane[r * wp + s : r * wp + s + m]
                    acc = taps[0] - taps[0]
                    for i in range(m):
                        acc += g[i] * src[i]
                    taps[r * s_n + s] += acc
        for r in range(r_n):
            for s in range(s_n):
                dw[k, c, r, s] = taps[r * s_n + s]
        if c == 0:
            t = taps[0] - taps[0]
            for n in range(n_img):
                g = dwide[n, k]
                for i in range(m):
                    t += g[i]
            db[k] = t


_PAD = variants(_pad)
_CORRELATE = variants(_correlate, fastmath={"contract"})
# reassoc: the filter gradient is a long dot product, summed in SIMD lanes
_FILTER_GRAD = variants(_filter_grad, fastmath={"contract", "reassoc"})


def _padded(x: np.ndarray, py: int, px: int, s_n: int) -> tuple[np.ndarray, int]:
    """Padded planes, flattened, with ``s_n`` spare zeros for the last taps' overrun; and the row length."""
    n, c, h, wd = x.shape
    wp = wd + 2 * px
    out = np.empty((n, c, (h + 2 * py) * wp + s_n), x.dtype)
    pick(_PAD, x.nbytes)(x, py, px, wp, out)
    return out, wp


def output_shape(x_shape, w_shape, pad: int, stride: int = 1) -> tuple[int, int, int, int]:
    """``(N, K, Ho, Wo)`` of :func:`conv2d` for these shapes; raises ``ValueError`` if they do not fit."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"input must be (N, C, H, W) and filters (K, C, R, S), got {x_shape} and {w_shape}")
    n, c, h, wd = x_shape
    k, c2, r, s = w_shape
    if c != c2 or c < 1:
        raise ValueError(f"input has {c} channels, filters expect {c2} (at least 1)")
    if pad < 0 or pad > min(r, s) - 1:
        raise ValueError(f"pad must lie in [0, {min(r, s) - 1}] for a {r}x{s} filter, got {pad}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer of at least 1, got {stride!r}")
    if r < 1 or s < 1 or h + 2 * pad < r or wd + 2 * pad < s:
        raise ValueError(f"a {r}x{s} filter does not fit a {h}x{wd} image with pad {pad}")
    return n, k, (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - s) // stride + 1


def _array(name, a, dtype=None):
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous numpy array")
    if a.dtype not in (np.float32, np.float64) or (dtype is not None and a.dtype != dtype):
        raise ValueError(f"{name} must be float32 or float64 like the others, got {a.dtype}")
    return a


def _phase_planes(a: np.ndarray, stride: int, shape: tuple[int, int]) -> np.ndarray:
    """``a`` (N, C, H', W') zero-extended to ``shape`` (multiples of ``stride``), as (N, C·t², H/t, W/t) phases."""
    n, c = a.shape[:2]
    h, w = shape
    full = np.zeros((n, c, h, w), a.dtype)
    full[:, :, : a.shape[2], : a.shape[3]] = a
    t = stride
    return np.ascontiguousarray(full.reshape(n, c, h // t, t, w // t, t).transpose(0, 1, 3, 5, 2, 4)
                                .reshape(n, c * t * t, h // t, w // t))


def _unphase(a: np.ndarray, channels: int, stride: int) -> np.ndarray:
    """The inverse of :func:`_phase_planes` before the zero extension: (N, C·t², h, w) → (N, C, h·t, w·t)."""
    n, _, h, w = a.shape
    t = stride
    return a.reshape(n, channels, t, t, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, channels, h * t, w * t)


def _polyphase(x: np.ndarray, w: np.ndarray, pad: int, stride: int):
    """The stride-1 problem equal to a strided one: the padded input's phases and the phase filters."""
    t = stride
    hq, wq = -(-(x.shape[2] + 2 * pad) // t), -(-(x.shape[3] + 2 * pad) // t)
    xp = np.zeros(x.shape[:2] + (x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), x.dtype)
    xp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]] = x
    rq, sq = -(-w.shape[2] // t), -(-w.shape[3] // t)
    return _phase_planes(xp, t, (hq * t, wq * t)), _phase_planes(w, t, (rq * t, sq * t))


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, pad: int | None = None,
           stride: int = 1) -> np.ndarray:
    """Convolve ``x`` (N, C, H, W) with filters ``w`` (K, C, R, S), plus bias ``b`` (K,).

    ``pad`` defaults to ``R // 2``; ``stride`` (default 1) applies to rows
    and columns alike.  Returns a new (N, K, Ho, Wo) array.
    """
    _array("x", x)
    _array("w", w, x.dtype)
    pad = w.shape[2] // 2 if pad is None and w.ndim == 4 else pad
    shape = output_shape(x.shape, w.shape, pad, stride)
    b = np.zeros(w.shape[0], x.dtype) if b is None else _array("b", b, x.dtype)
    if b.shape != (w.shape[0],):
        raise ValueError(f"b must have shape ({w.shape[0]},), got {b.shape}")
    if stride != 1:
        xq, wq = _polyphase(x, w, pad, stride)
        return np.ascontiguousarray(conv2d(xq, wq, b, pad=0)[:, :, : shape[2], : shape[3]])
    out = np.empty(shape, x.dtype)
    if out.size:
        xpad, wp = _padded(x, pad, pad, w.shape[3])
        pick(_CORRELATE, out.nbytes + x.nbytes)(xpad, wp, w, b, out)
    return out


def conv2d_backward(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, pad: int | None = None, need_input_grad: bool = True,
    stride: int = 1,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d`: ``(dx, dw, db)``.

    Parameters
    ----------
    dout : ndarray, shape (N, K, Ho, Wo)
        Gradient of the loss with respect to the output.
    x, w : ndarray
        The forward input and filters.
    pad : int, optional
        As in the forward call (default ``R // 2``).
    need_input_grad : bool
        False for a first layer: ``dx`` is then None and not computed.
    stride : int
        As in the forward call.  Input rows and columns the filters never
        reached (past the last stride) get a zero gradient.
    """
    _array("x", x)
    _array("w", w, x.dtype)
    _array("dout", dout, x.dtype)
    pad = w.shape[2] // 2 if pad is None and w.ndim == 4 else pad
    shape = output_shape(x.shape, w.shape, pad, stride)
    if dout.shape != shape:
        raise ValueError(f"dout must have shape {shape}, got {dout.shape}")
    if stride != 1:
        return _strided_backward(dout, x, w, pad, need_input_grad, stride)
    dw = np.zeros_like(w)
    db = np.zeros(w.shape[0], x.dtype)
    dx = np.zeros_like(x) if need_input_grad else None
    if dout.size == 0:
        return dx, dw, db
    nbytes = dout.nbytes + x.nbytes
    xpad, wp = _padded(x, pad, pad, w.shape[3])
    dwide = np.empty(dout.shape[:2] + (dout.shape[2] * wp,), x.dtype)
    pick(_PAD, dout.nbytes)(dout, 0, 0, wp, dwide)  # onto the padded row length
    pick(_FILTER_GRAD, nbytes)(dwide, xpad, wp, dw, db)
    if need_input_grad and x.size:
        # the input gradient is the full correlation of dout with the flipped filters
        r_n, s_n = w.shape[2], w.shape[3]
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        dpad, dwp = _padded(dout, r_n - 1 - pad, s_n - 1 - pad, s_n)
        pick(_CORRELATE, nbytes)(dpad, dwp, flipped, np.zeros(x.shape[1], x.dtype), dx)
    return dx, dw, db


def _strided_backward(dout, x, w, pad, need_input_grad, stride):
    """:func:`conv2d_backward` in the polyphase form: the stride-1 gradients of the phases, put back in place."""
    xq, wq = _polyphase(x, w, pad, stride)
    _, _, hq, wdq = xq.shape
    full = np.zeros(dout.shape[:2] + (hq - wq.shape[2] + 1, wdq - wq.shape[3] + 1), x.dtype)
    full[:, :, : dout.shape[2], : dout.shape[3]] = dout  # outputs past the strided ones: zero gradient
    dxq, dwq, db = conv2d_backward(full, xq, wq, pad=0, need_input_grad=need_input_grad)
    r, s = w.shape[2], w.shape[3]
    dw = np.ascontiguousarray(_unphase(dwq, w.shape[1], stride)[:, :, :r, :s])
    if dxq is None:
        return None, dw, db
    h, wd = x.shape[2], x.shape[3]
    return np.ascontiguousarray(_unphase(dxq, x.shape[1], stride)[:, :, pad : pad + h, pad : pad + wd]), dw, db
