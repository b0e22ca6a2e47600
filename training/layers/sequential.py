"""Layers in a row, their parameters and gradients views into one flat buffer each."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..kernels import Layout
from .base import Layer
from .loss import SoftmaxCrossEntropy


class Sequential:
    """A model: ``layers`` applied in turn, then ``loss``.

    Parameters live in :attr:`params`, gradients in :attr:`grads`, each one
    flat array laid out **last layer first**, the order backward writes them,
    so the gradient buffer fills from its start and can be cut into
    all-reduce buckets that complete one after another.  Within a layer its
    parameters keep their own order (``W`` then ``b``).

    Parameters
    ----------
    layers : sequence of Layer
    loss : SoftmaxCrossEntropy, optional
    seed : int
        The initial parameters are drawn from one generator seeded with it,
        layer by layer in forward order, so every rank and every P starts alike.
    rng : numpy.random.Generator, optional
        Draw from this generator instead (``seed`` is then unused): a
        pipeline stage passes one that has drawn the earlier stages' layers,
        so that its layers start as the one-rank model's.
    dtype : numpy dtype
        float32 or float64.

    Attributes
    ----------
    p, g : dict of str to ndarray
        Every parameter and its gradient by name, ``W0``, ``b0``, ``W1``, ...
        (the number counts the layers that have parameters, in forward order).
    """

    def __init__(self, layers: Sequence[Layer], loss=None, seed: int = 0, dtype=np.float32,
                 rng: np.random.Generator | None = None):
        self.layers = list(layers)
        self.loss = loss or SoftmaxCrossEntropy()
        numbered = [i for i, layer in enumerate(self.layers) if layer.param_shapes]
        index = {i: k for k, i in enumerate(numbered)}
        names, shapes, self._first = [], [], {}
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            self._first[i] = len(names)
            names += [f"{n}{index[i]}" for n in layer.param_names] if layer.param_shapes else []
            shapes += list(layer.param_shapes)
        self.names = names
        self.layout = Layout(shapes)
        self.params = np.zeros(self.layout.size, dtype)
        self.grads = np.zeros(self.layout.size, dtype)
        pviews, gviews = self.layout.views(self.params), self.layout.views(self.grads)
        self.p, self.g = dict(zip(names, pviews)), dict(zip(names, gviews))
        for i, layer in enumerate(self.layers):
            lo, hi = self._first[i], self._first[i] + len(layer.param_shapes)
            layer.bind(pviews[lo:hi], gviews[lo:hi])
        rng = np.random.default_rng(seed) if rng is None else rng
        for layer in self.layers:
            layer.init(rng)

    def param_range(self, layer: int) -> tuple[int, int]:
        """``[lo, hi)`` of layer ``layer``'s parameters (and gradients) in the flat buffers."""
        lo = self._first[layer]
        return self.layout.offsets[lo], self.layout.offsets[lo + len(self.layers[layer].param_shapes)]

    def logits(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def loss_and_grad(
        self, x: np.ndarray, y: np.ndarray, scale: float, on_layer: Callable[[int], None] | None = None
    ) -> float:
        """Forward, loss, backward: writes ``scale * sum of per-sample gradients`` into :attr:`grads`.

        ``scale = 1 / global_batch`` makes the ranks' summed gradients the
        global mean.  ``on_layer(i)`` is called as soon as layer ``i``'s
        gradients are written (last layer first; layers without parameters
        are not reported).  Returns the mean loss over these rows.
        """
        loss, d = self.loss.loss_and_grad(self.logits(x), y, scale)
        for i in reversed(range(len(self.layers))):
            d = self.layers[i].backward(d, need_input_grad=i > 0)
            if on_layer is not None and self.layers[i].param_shapes:
                on_layer(i)
        return loss
