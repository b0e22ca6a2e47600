"""The multilayer perceptron ``sync_sgd`` trains, built from :mod:`training.layers`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .layers import Linear, Sequential

__all__ = ["mlp"]


def mlp(sizes: Sequence[int], act: str = "relu", seed: int = 0, dtype=np.float32) -> Sequential:
    """``sizes[0]`` inputs, hidden layers of ``act``, ``sizes[-1]`` classes (logits), softmax cross-entropy.

    Parameters
    ----------
    sizes : sequence of int
        Widths, at least two (input and output), each at least 1.
    act : str
        Hidden activation (see :data:`training.kernels.ACTIVATIONS`).
    seed : int
        Initialisation: He-normal weights for relu (Glorot otherwise) in
        every layer, zero biases, drawn layer by layer, so every rank and
        every P starts alike.
    dtype : numpy dtype
        float32 or float64.
    """
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"an MLP needs at least input and output widths >= 1, got {list(sizes)}")
    sizes = [int(s) for s in sizes]
    init = "he" if act == "relu" else "glorot"
    last = len(sizes) - 2
    layers = [Linear(sizes[i], sizes[i + 1], act if i < last else "identity", init) for i in range(last + 1)]
    return Sequential(layers, seed=seed, dtype=dtype)
