"""A 2-D convolution with its bias, and global average pooling (for spatial models)."""

from __future__ import annotations

import math

import numpy as np

from ..kernels import conv2d, conv2d_backward
from .base import Layer


class Conv2d(Layer):
    """``y = conv(x, W) + b``, ``x`` (N, C, H, W), ``W`` (K, C, R, R), ``b`` (K,), padding ``R // 2``.

    At stride 1 (the default) the output keeps the input's size for an odd
    ``R``; at stride 2 it has half of it (rounded up).  Weights are
    He-normal (``sqrt(2 / (C*R*R))``), biases zero.
    """

    param_names = ("W", "b")
    saved = ("x",)

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1):
        if min(in_channels, out_channels, kernel, stride) < 1:
            raise ValueError(f"channels, kernel size and stride must be at least 1, got in {in_channels}, "
                             f"out {out_channels}, kernel {kernel}, stride {stride}")
        self.c, self.k, self.r, self.stride = int(in_channels), int(out_channels), int(kernel), int(stride)
        self.param_shapes = ((self.k, self.c, self.r, self.r), (self.k,))

    def init(self, rng: np.random.Generator) -> None:
        w = self.params[0]
        w[...] = rng.standard_normal(w.shape) * math.sqrt(2.0 / (self.c * self.r * self.r))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = np.ascontiguousarray(x)
        return conv2d(self.x, self.params[0], self.params[1], stride=self.stride)

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        dx, dw, db = conv2d_backward(np.ascontiguousarray(dy), self.x, self.params[0],
                                     need_input_grad=need_input_grad, stride=self.stride)
        self.grads[0][...] = dw
        self.grads[1][...] = db
        return dx


class GlobalAvgPool(Layer):
    """``(N, C, H, W) -> (N, C)``: the mean of every plane; no parameters."""

    saved = ("shape",)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.mean(axis=(2, 3))

    def pixels(self) -> int:
        """Pixels each mean is over: the last input's planes."""
        return self.shape[2] * self.shape[3]

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if not need_input_grad:
            return None
        return np.ascontiguousarray(np.broadcast_to((dy / self.pixels())[:, :, None, None], self.shape))
