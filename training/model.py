"""A multilayer perceptron whose parameters and gradients live in one flat buffer each.

Layers are laid out last first, the order backward produces them, so the
gradient buffer fills from its start and can be cut into all-reduce
buckets that are complete one after another.  Products run on BLAS
(numpy); bias + activation, softmax + cross-entropy and their backward
passes on the Numba kernels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .kernels import Layout, bias_act, bias_act_backward, softmax_cross_entropy

__all__ = ["MLP"]


class MLP:
    """``sizes[0]`` inputs, hidden layers, ``sizes[-1]`` classes.

    Parameters
    ----------
    sizes : sequence of int
        Widths, at least two (input and output).
    act : str
        Hidden activation (see :data:`training.kernels.ACTIVATIONS`).
    seed : int
        Initialisation: He-normal weights for relu (Glorot otherwise), zero
        biases, drawn layer by layer, so every rank and every P starts alike.
    """

    def __init__(self, sizes: Sequence[int], act: str = "relu", seed: int = 0, dtype=np.float32):
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"an MLP needs at least input and output widths >= 1, got {list(sizes)}")
        self.sizes = [int(s) for s in sizes]
        self.act = act
        self.n_layers = len(sizes) - 1
        # parameter i: W or b of layer l; stored last layer first
        self.names, shapes = [], []
        for layer in reversed(range(self.n_layers)):
            self.names += [f"W{layer}", f"b{layer}"]
            shapes += [(self.sizes[layer], self.sizes[layer + 1]), (self.sizes[layer + 1],)]
        self.layout = Layout(shapes)
        self.params = np.zeros(self.layout.size, dtype)
        self.grads = np.zeros(self.layout.size, dtype)
        self.p = dict(zip(self.names, self.layout.views(self.params)))
        self.g = dict(zip(self.names, self.layout.views(self.grads)))
        rng = np.random.default_rng(seed)
        for layer in range(self.n_layers):
            fan_in, fan_out = self.sizes[layer], self.sizes[layer + 1]
            std = np.sqrt(2.0 / fan_in) if act == "relu" else np.sqrt(2.0 / (fan_in + fan_out))
            self.p[f"W{layer}"][...] = rng.standard_normal((fan_in, fan_out)) * std

    def param_range(self, layer: int) -> tuple[int, int]:
        """``[lo, hi)`` of layer ``layer``'s parameters (and gradients) in the flat buffers."""
        i = self.names.index(f"W{layer}")
        return self.layout.offsets[i], self.layout.offsets[i + 2]

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x
        for layer in range(self.n_layers):
            act = self.act if layer < self.n_layers - 1 else "identity"
            h = bias_act(h @ self.p[f"W{layer}"], self.p[f"b{layer}"], act)
        return h

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def loss_and_grad(
        self, x: np.ndarray, y: np.ndarray, scale: float, on_layer: Callable[[int], None] | None = None
    ) -> float:
        """Forward, loss, backward: writes ``scale * sum of per-sample gradients`` into :attr:`grads`.

        ``scale = 1 / global_batch`` makes the ranks' summed gradients the
        global mean.  ``on_layer(l)`` is called as soon as layer ``l``'s
        gradients are written (last layer first).  Returns the mean loss
        over these rows.
        """
        hs = [x]
        for layer in range(self.n_layers):
            act = self.act if layer < self.n_layers - 1 else "identity"
            hs.append(bias_act(hs[-1] @ self.p[f"W{layer}"], self.p[f"b{layer}"], act))
        logits = hs[-1]
        loss = softmax_cross_entropy(logits, y, grad=logits, scale=scale)
        d = logits  # now the gradient of the loss with respect to the logits
        for layer in reversed(range(self.n_layers)):
            act = self.act if layer < self.n_layers - 1 else "identity"
            d, db = bias_act_backward(d, hs[layer + 1], act, dz=d)
            self.g[f"b{layer}"][...] = db
            np.matmul(hs[layer].T, d, out=self.g[f"W{layer}"])
            if layer:
                d = d @ self.p[f"W{layer}"].T
            if on_layer is not None:
                on_layer(layer)
        return loss
