"""The training kernels against float64 numpy references, finite differences, and their own error rules.

Every kernel runs both compiled variants (serial, and multithreaded by
forcing the size threshold to 0), on fresh random data with odd sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from numa import threads
from training.kernels import (
    ACTIVATIONS,
    Layout,
    _vecmath,
    bias_act,
    bias_act_backward,
    conv2d,
    conv2d_backward,
    flatten,
    sgd_update,
    softmax,
    softmax_cross_entropy,
    unflatten,
)
from training.kernels.conv2d import output_shape

SHAPES = [(1, 1), (3, 7), (65, 33), (130, 5)]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(params=["serial", "parallel"])
def variant(request, monkeypatch):
    """Run the test with the serial kernels, then with the threaded ones."""
    monkeypatch.setattr(_vecmath, "PARALLEL_BYTES", 1 << 40 if request.param == "serial" else 0)
    monkeypatch.setattr(threads, "count", lambda: 2)  # the threaded variant even if this rank has one thread
    return request.param


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _act64(v, act):
    return {"identity": v, "relu": np.maximum(v, 0), "tanh": np.tanh(v), "sigmoid": 1 / (1 + np.exp(-v))}[act]


def _dact64(y, act):
    return {"identity": np.ones_like(y), "relu": (y > 0).astype(float), "tanh": 1 - y * y,
            "sigmoid": y * (1 - y)}[act]


# ---------------------------------------------------------------- vector math


def test_float32_exp_and_tanh_are_within_a_few_ulp():
    from numba import njit

    @njit
    def run(x, e, t, s):
        for i in range(x.size):
            e[i] = _vecmath.exp(x[i])
            t[i] = _vecmath.tanh(x[i])
            s[i] = _vecmath.sigmoid(x[i])

    x = np.concatenate([np.linspace(-87, 88, 400_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    e, t, s = (np.empty_like(x) for _ in range(3))
    run(x, e, t, s)
    x64 = x.astype(np.float64)
    assert e.dtype == np.float32 and t.dtype == np.float32
    np.testing.assert_allclose(e, np.exp(x64), rtol=4e-7, atol=0)
    np.testing.assert_allclose(t, np.tanh(x64), rtol=6e-7, atol=1e-37)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-x64)), rtol=1e-6, atol=1e-37)
    # saturation instead of inf / 0, documented
    big = np.array([-1000.0, -np.inf, 1000.0], np.float32)
    e3, t3, s3 = (np.empty_like(big) for _ in range(3))
    run(big, e3, t3, s3)
    assert np.all(np.isfinite(e3)) and e3[0] < 2e-38 and e3[2] > 1e38
    np.testing.assert_array_equal(t3, [-1, -1, 1])
    np.testing.assert_allclose(s3, [0, 0, 1], atol=1e-37)


# ---------------------------------------------------------------- bias + activation


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_act_forward_and_backward_match_float64(act, shape, dtype, variant):
    rng = np.random.default_rng(hash((act, shape)) % 2**32)
    z, dy = _rand(rng, shape, dtype, 3.0), _rand(rng, shape, dtype)
    b = _rand(rng, shape[1], dtype)
    y = bias_act(z, b, act)
    want = _act64(z.astype(float) + b, act)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, **TOL[dtype])
    dz, db = bias_act_backward(dy, y, act)
    dz_want = dy * _dact64(y.astype(float), act)
    np.testing.assert_allclose(dz, dz_want, **TOL[dtype])
    np.testing.assert_allclose(db, dz_want.sum(axis=0), rtol=TOL[dtype]["rtol"] * 10, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("act", ["identity", "tanh", "sigmoid", "relu"])
def test_bias_act_backward_matches_finite_differences(act):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 5)) * 2
    z[np.abs(z) < 1e-3] = 0.5  # keep relu away from its kink
    b, r = rng.standard_normal(5), rng.standard_normal((6, 5))

    def loss(z_, b_):
        return float(np.sum(bias_act(z_, b_, act) * r))

    dz, db = bias_act_backward(r.copy(), bias_act(z, b, act), act)
    h = 1e-6
    for idx in [(0, 0), (2, 3), (5, 4)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        assert dz[idx] == pytest.approx((loss(zp, b) - loss(zm, b)) / (2 * h), rel=1e-6, abs=1e-8)
    for j in range(5):
        bp, bm = b.copy(), b.copy()
        bp[j] += h
        bm[j] -= h
        assert db[j] == pytest.approx((loss(z, bp) - loss(z, bm)) / (2 * h), rel=1e-6, abs=1e-8)


def test_bias_act_in_place_and_db_independent_of_threads(monkeypatch):
    monkeypatch.setattr(threads, "count", lambda: 2)
    rng = np.random.default_rng(1)
    z = _rand(rng, (1000, 17), np.float32)
    b = _rand(rng, 17, np.float32)
    want = bias_act(z, b, "tanh")
    got = bias_act(z, b, "tanh", out=z)
    assert got is z
    np.testing.assert_array_equal(z, want)
    dy = _rand(rng, z.shape, np.float32)
    monkeypatch.setattr(_vecmath, "PARALLEL_BYTES", 1 << 40)
    serial = bias_act_backward(dy, z, "tanh")[1]
    monkeypatch.setattr(_vecmath, "PARALLEL_BYTES", 0)
    threaded = bias_act_backward(dy, z, "tanh", dz=dy.copy())[1]
    np.testing.assert_array_equal(serial, threaded)  # fixed blocks: the same bits


def test_bias_act_refuses_bad_input():
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(z, np.zeros(3, np.float32), "gelu")
    with pytest.raises(ValueError, match="b must have shape"):
        bias_act(z, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="b must have shape"):
        bias_act(z, np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        bias_act(np.zeros((3, 4), np.float32).T, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        bias_act(np.zeros((4, 3), np.int32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="y has shape"):
        bias_act_backward(z, np.zeros((4, 2), np.float32))


# ---------------------------------------------------------------- softmax + cross-entropy


def _xent64(x, labels, scale):
    v = x.astype(np.float64)
    m = v.max(axis=1, keepdims=True)
    e = np.exp(v - m)
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(np.mean(np.log(e.sum(axis=1)) + m[:, 0] - v[rows, labels]))
    g = p.copy()
    g[rows, labels] -= 1
    return loss, g * scale, p


@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (129, 10), (40, 1001)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_float64(shape, dtype, variant):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    x = _rand(rng, shape, dtype, 4.0)
    labels = rng.integers(0, shape[1], shape[0])
    grad = np.empty_like(x)
    loss = softmax_cross_entropy(x, labels, grad)
    want_loss, want_grad, p = _xent64(x, labels, 1.0 / shape[0])
    assert loss == pytest.approx(want_loss, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-6)
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])
    np.testing.assert_allclose(softmax(x), p, **TOL[dtype])
    assert softmax_cross_entropy(x, labels) == loss  # the loss alone: same bits


def test_softmax_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    grad = np.empty_like(x)
    softmax_cross_entropy(x, labels, grad, scale=0.25)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (softmax_cross_entropy(xp, labels) - softmax_cross_entropy(xm, labels)) / (2 * h)
        assert grad[idx] == pytest.approx(fd * 5 * 0.25, rel=1e-6, abs=1e-9)  # mean over 5 rows, scaled


def test_softmax_cross_entropy_in_place_large_logits_and_edges():
    x = np.array([[1e4, 0.0, -1e4], [3.0, 3.0, 3.0]], np.float32)
    labels = np.array([1, 2])
    loss, want_grad, _ = _xent64(x, labels, 0.5)
    got = softmax_cross_entropy(x, labels, x)  # in place: no overflow, target read first
    assert np.isfinite(got) and got == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(x, want_grad, rtol=1e-6, atol=1e-7)
    assert softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, int)) == 0.0
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must lie"):
        softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([-1, 0]))
    with pytest.raises(ValueError, match="labels must be integers"):
        softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="grad must be"):
        softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1]), np.zeros((2, 3)))


# ---------------------------------------------------------------- SGD


def _sgd64(w, g, v, lr, mu, wd, nesterov):
    w, g, v = (a.astype(np.float64) for a in (w, g, v))
    d = g + wd * w
    if mu:
        v = mu * v + d
        d = d + mu * v if nesterov else v
    return w - lr * d, v


@pytest.mark.parametrize("mu,wd,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 5e-4, False),
                                            (0.9, 5e-4, True), (0.0, 1e-2, False)])
@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_update_matches_the_pytorch_rule(mu, wd, nesterov, n, dtype, variant):
    rng = np.random.default_rng(n)
    w, v = _rand(rng, n, dtype), np.zeros(n, dtype)
    for _ in range(3):
        g = _rand(rng, n, dtype)
        want_w, want_v = _sgd64(w, g, v, 0.1, mu, wd, nesterov)
        sgd_update(w, g, v if mu else None, lr=0.1, momentum=mu, weight_decay=wd, nesterov=nesterov)
        np.testing.assert_allclose(w, want_w, **TOL[dtype])
        if mu:
            np.testing.assert_allclose(v, want_v, **TOL[dtype])


def test_sgd_update_is_the_same_bits_serial_and_threaded(monkeypatch):
    monkeypatch.setattr(threads, "count", lambda: 2)
    rng = np.random.default_rng(0)
    w0, g = _rand(rng, 300_001, np.float32), _rand(rng, 300_001, np.float32)
    out = []
    for threshold in (1 << 40, 0):
        monkeypatch.setattr(_vecmath, "PARALLEL_BYTES", threshold)
        w, v = w0.copy(), np.zeros_like(w0)
        for _ in range(2):
            sgd_update(w, g, v, lr=0.05, momentum=0.9, weight_decay=1e-4)
        out.append(w)
    np.testing.assert_array_equal(out[0], out[1])


def test_sgd_update_refuses_bad_input():
    w = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="momentum buffer"):
        sgd_update(w, w.copy(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov"):
        sgd_update(w, w.copy(), w.copy(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=">= 0"):
        sgd_update(w, w.copy(), None, lr=-1.0)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        sgd_update(w, np.zeros(4), None, lr=0.1)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        sgd_update(w, np.zeros(5, np.float32), None, lr=0.1)


# ---------------------------------------------------------------- buckets


def test_flatten_and_unflatten_round_trip(variant):
    rng = np.random.default_rng(2)
    shapes = [(3, 5), (0,), (7,), (2, 1, 3), (1,), (100_000,)]
    arrays = [_rand(rng, s, np.float32) for s in shapes]
    flat = flatten(arrays)
    np.testing.assert_array_equal(flat, np.concatenate([a.ravel() for a in arrays]))
    layout = Layout(shapes)
    assert layout.size == flat.size and layout.offsets[-1] == flat.size
    for view, a in zip(layout.views(flat), arrays):
        np.testing.assert_array_equal(view, a)
    back = [np.empty_like(a) for a in arrays]
    unflatten(flat * 2, back)
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(b, a * 2)


def test_flatten_refuses_mismatches():
    a = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    with pytest.raises(ValueError, match="5 elements"):
        flatten(a, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="float32"):
        flatten([np.zeros(3, np.float32), np.zeros(2)], np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        unflatten(np.zeros(6, np.float32), [np.zeros((2, 3), np.float32).T])


# ---------------------------------------------------------------- convolution


def _conv64(x, w, b, pad, stride=1):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwrs,kcrs->nkhw", win, w.astype(np.float64)) + b.astype(np.float64)[None, :, None, None], win


def _dilated(dout, x, w, pad, stride):
    """``dout`` of a strided convolution spread onto the stride-1 output grid, zeros between."""
    full = _conv64(x, w, np.zeros(w.shape[0]), pad)[0].shape
    d = np.zeros(full)
    d[:, :, ::stride, ::stride] = dout
    return d


def _conv_backward64(dout, x, w, pad):
    _, win = _conv64(x, w, np.zeros(w.shape[0]), pad)
    r, s = w.shape[2:]
    dw = np.einsum("nkhw,nchwrs->kcrs", dout.astype(np.float64), win)
    dp = np.pad(dout.astype(np.float64), ((0, 0), (0, 0), (r - 1 - pad, r - 1 - pad), (s - 1 - pad, s - 1 - pad)))
    dwin = sliding_window_view(dp, (r, s), axis=(2, 3))
    dx = np.einsum("nkhwrs,kcrs->nchw", dwin, w.astype(np.float64)[:, :, ::-1, ::-1])
    return dx, dw, dout.astype(np.float64).sum(axis=(0, 2, 3))


CONV_CASES = [
    # (N, C, H, W), (K, R, S), pad
    ((1, 1, 1, 1), (1, 1, 1), 0),
    ((2, 3, 9, 7), (4, 3, 3), 1),
    ((2, 3, 9, 7), (4, 3, 3), 0),
    ((3, 2, 5, 11), (5, 5, 5), 2),
    ((1, 4, 6, 6), (2, 3, 1), 0),
    ((2, 1, 13, 4), (3, 1, 3), 0),
    ((4, 5, 8, 8), (6, 3, 3), 2),
]


@pytest.mark.parametrize("xs,ws,pad", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv2d_forward_and_backward_match_float64(xs, ws, pad, dtype, stride, variant):
    """Against einsum in float64; a stride above 1 against the stride-1 output subsampled (its gradient dilated)."""
    rng = np.random.default_rng(sum(xs) * 7 + sum(ws))
    x = _rand(rng, xs, dtype)
    w = _rand(rng, (ws[0], xs[1], ws[1], ws[2]), dtype)
    b = _rand(rng, ws[0], dtype)
    out = conv2d(x, w, b, pad, stride=stride)
    want, _ = _conv64(x, w, b, pad, stride)
    assert out.shape == want.shape and out.dtype == dtype
    assert out.shape == output_shape(x.shape, w.shape, pad, stride)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(out, want, **tol)
    dout = _rand(rng, out.shape, dtype)
    dx, dw, db = conv2d_backward(dout, x, w, pad, stride=stride)
    wdx, wdw, wdb = _conv_backward64(_dilated(dout, x, w, pad, stride), x, w, pad)
    np.testing.assert_allclose(dx, wdx, **tol)
    np.testing.assert_allclose(dw, wdw, **tol)
    np.testing.assert_allclose(db, wdb, **tol)
    assert conv2d_backward(dout, x, w, pad, need_input_grad=False, stride=stride)[0] is None


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_gradients_match_finite_differences(stride):
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    r = rng.standard_normal(output_shape(x.shape, w.shape, 1, stride))

    def loss(x_, w_, b_):
        return float(np.sum(conv2d(x_, w_, b_, stride=stride) * r))

    dx, dw, db = conv2d_backward(r, x, w, stride=stride)
    h = 1e-6
    for grad, arr, pos in ((dx, x, 0), (dw, w, 1), (db, b, 2)):
        for idx in list(np.ndindex(arr.shape))[:: max(1, arr.size // 12)]:
            args_p = [x.copy(), w.copy(), b.copy()]
            args_m = [x.copy(), w.copy(), b.copy()]
            args_p[pos][idx] += h
            args_m[pos][idx] -= h
            fd = (loss(*args_p) - loss(*args_m)) / (2 * h)
            assert grad[idx] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_conv2d_refuses_bad_shapes():
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        conv2d(x, np.zeros((3, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="pad must lie"):
        conv2d(x, np.zeros((3, 2, 3, 3), np.float32), pad=3)
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(x, np.zeros((3, 2, 7, 7), np.float32), pad=0)
    with pytest.raises(ValueError, match="float32 or float64 like"):
        conv2d(x, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="dout must have shape"):
        conv2d_backward(np.zeros((1, 3, 4, 4), np.float32), x, np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="dout must have shape"):
        conv2d_backward(np.zeros((1, 3, 5, 5), np.float32), x, np.zeros((3, 2, 3, 3), np.float32), stride=2)
    for stride in (0, 1.5):
        with pytest.raises(ValueError, match="stride must be an integer of at least 1"):
            conv2d(x, np.zeros((3, 2, 3, 3), np.float32), stride=stride)
