"""A rectifier on its own, for layers (such as :class:`~training.layers.Conv2d`) that have no fused activation."""

from __future__ import annotations

import numpy as np

from .base import Layer


class ReLU(Layer):
    """``y = max(x, 0)`` elementwise, any shape; no parameters."""

    saved = ("y",)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.maximum(x, 0)
        return self.y

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return np.where(self.y > 0, dy, 0).astype(dy.dtype, copy=False) if need_input_grad else None
