"""training.layers: each layer and Sequential against numpy written out by hand, and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_finite_differences
from training.layers import Conv2d, Flatten, GlobalAvgPool, Linear, Sequential
from training.model import mlp

ACTS = {
    "identity": (lambda z: z, lambda y: np.ones_like(y)),
    "relu": (lambda z: np.maximum(z, 0), lambda y: (y > 0).astype(y.dtype)),
    "tanh": (np.tanh, lambda y: 1 - y * y),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda y: y * (1 - y)),
}


def _reference(ws, bs, acts, x, labels, scale):
    """Loss and (dW, db) per layer of an MLP, in plain float64 numpy."""
    hs = [x]
    for w, b, act in zip(ws, bs, acts):
        hs.append(ACTS[act][0](hs[-1] @ w + b))
    z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    d = p.copy()
    d[np.arange(len(labels)), labels] -= 1
    d *= scale
    grads = []
    for i in reversed(range(len(ws))):
        d = d * ACTS[acts[i]][1](hs[i + 1])
        grads.append((hs[i].T @ d, d.sum(axis=0)))
        d = d @ ws[i].T
    return loss, grads[::-1]


@pytest.mark.parametrize("act", sorted(ACTS))
def test_mlp_matches_numpy_by_hand(act):
    sizes = [13, 17, 11, 5]
    model = mlp(sizes, act, seed=3, dtype=np.float64)
    rng = np.random.default_rng(1)
    for i in range(3):  # non-zero biases, so a bias in the wrong place cannot pass
        model.p[f"b{i}"][...] = rng.standard_normal(sizes[i + 1])
    x, y = rng.standard_normal((7, 13)), rng.integers(0, 5, 7)
    ws = [model.p[f"W{i}"].copy() for i in range(3)]
    bs = [model.p[f"b{i}"].copy() for i in range(3)]
    want_loss, want = _reference(ws, bs, [act, act, "identity"], x, y, scale=0.25)
    loss = model.loss_and_grad(x, y, scale=0.25)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for i, (dw, db) in enumerate(want):
        np.testing.assert_allclose(model.g[f"W{i}"], dw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(model.g[f"b{i}"], db, rtol=1e-12, atol=1e-14)


def test_parameters_sit_last_layer_first_and_backward_reports_in_that_order():
    model = Sequential([Linear(4, 3, "relu"), Flatten(), Linear(3, 2)], seed=0, dtype=np.float64)
    assert model.names == ["W1", "b1", "W0", "b0"]
    assert model.layout.offsets == (0, 6, 8, 20, 23)
    assert [model.param_range(i) for i in (2, 0)] == [(0, 8), (8, 23)]
    assert np.shares_memory(model.p["W0"], model.params) and np.shares_memory(model.g["b1"], model.grads)
    done = []
    model.loss_and_grad(np.ones((2, 4)), np.array([0, 1]), 0.5, on_layer=done.append)
    assert done == [2, 0]  # the flatten has nothing to report


def test_every_degree_of_seed_starts_alike():
    a = mlp([6, 5, 4], "relu", seed=7)
    b = mlp([6, 5, 4], "relu", seed=7)
    c = mlp([6, 5, 4], "relu", seed=8)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)
    assert np.std(a.p["W0"]) == pytest.approx(np.sqrt(2 / 6), rel=0.5) and not a.p["b0"].any()


def test_a_small_cnn_matches_finite_differences():
    rng = np.random.default_rng(0)
    model = Sequential([Conv2d(2, 3, 3), Conv2d(3, 3, 3, stride=2), GlobalAvgPool(), Linear(3, 4, "tanh"),
                        Linear(4, 3)], seed=2, dtype=np.float64)
    model.params[...] += 0.1 * rng.standard_normal(model.params.size)
    x, y = rng.standard_normal((3, 2, 5, 6)), rng.integers(0, 3, 3)
    model.loss_and_grad(x, y, scale=1.0)
    analytic = model.grads.copy()

    def total_loss():
        return 3 * model.loss.loss_and_grad(np.ascontiguousarray(model.logits(x)), y, 1.0)[0]

    assert_finite_differences(model.params, analytic, total_loss, range(model.params.size))


def test_the_cnn_halves_the_image_after_its_first_convolution():
    from training.model import CNN_CHANNELS, cnn, cnn_strides

    assert cnn_strides(1) == [1] and cnn_strides(4) == [1, 2, 2, 2]
    model = cnn(1, 3, seed=0)
    convs = [layer for layer in model.layers if isinstance(layer, Conv2d)]
    assert [c.k for c in convs] == list(CNN_CHANNELS) == [16, 32, 32, 64] and [c.stride for c in convs] == [1, 2, 2, 2]
    x = np.zeros((2, 1, 64, 64), np.float32)
    sides = []
    for layer in model.layers[:-2]:
        x = layer.forward(x)
        sides.append(x.shape[2:])
    assert sides[::2] == [(64, 64), (32, 32), (16, 16), (8, 8)]  # after each convolution
    assert model.logits(np.zeros((2, 1, 33, 33), np.float32)).shape == (2, 3)


@pytest.mark.parametrize("make, says", [
    (lambda: Linear(0, 3), "at least one input"),
    (lambda: Linear(3, 2, "gelu"), "unknown activation"),
    (lambda: Linear(3, 2, init="lecun"), "unknown initialisation"),
    (lambda: Conv2d(2, 0), "at least 1"),
    (lambda: Conv2d(2, 2, 3, stride=0), "stride must be at least 1"),
    (lambda: mlp([4]), "at least input and output"),
])
def test_bad_layers_are_refused(make, says):
    with pytest.raises(ValueError, match=says):
        make()


def test_relu_and_the_default_cnn_against_finite_differences():
    """The CNN (convolutions, ReLU, pooling, classifier) in float64: its gradient is the loss's derivative."""
    from training.model import cnn

    rng = np.random.default_rng(0)
    model = cnn(2, 3, channels=(3, 4), seed=1, dtype=np.float64)
    x, y = rng.standard_normal((3, 2, 7, 6)), np.array([0, 2, 1])
    model.loss_and_grad(x, y, 1.0)
    grads = model.grads.copy()

    def loss():
        return model.loss_and_grad(x, y, 1.0) * len(y)

    assert_finite_differences(model.params, grads, loss, rng.choice(model.params.size, 40, replace=False))
