"""A fully connected layer with its bias and activation fused, and a flatten."""

from __future__ import annotations

import math

import numpy as np

from ..kernels import ACTIVATIONS, bias_act, bias_act_backward
from .base import Layer

#: Weight initialisations: standard deviation from (fan_in, fan_out).
INITS = {
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),  # for relu
    "glorot": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
}


def check(fan_in: int, fan_out: int, act: str, init: str) -> None:
    """Raise ValueError unless a linear layer of these widths, activation and initialisation can be built."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"a linear layer needs at least one input and one output, got {fan_in} -> {fan_out}")
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; have {', '.join(ACTIVATIONS)}")
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r}; have {', '.join(INITS)}")


class Linear(Layer):
    """``y = act(x @ W + b)``: ``W`` (fan_in, fan_out), ``b`` (fan_out,), in that order.

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output features, at least 1.
    act : str
        One of :data:`training.kernels.ACTIVATIONS` (``"identity"``: none).
    init : {"he", "glorot"}
        Normal weights with the standard deviation of He (relu) or Glorot;
        zero biases.
    """

    param_names = ("W", "b")
    saved = ("x", "y")

    def __init__(self, fan_in: int, fan_out: int, act: str = "identity", init: str = "glorot"):
        check(fan_in, fan_out, act, init)
        self.fan_in, self.fan_out, self.act, self.init_name = int(fan_in), int(fan_out), act, init
        self.param_shapes = ((self.fan_in, self.fan_out), (self.fan_out,))

    def init(self, rng: np.random.Generator) -> None:
        w = self.params[0]
        w[...] = rng.standard_normal(w.shape) * INITS[self.init_name](self.fan_in, self.fan_out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.y = bias_act(x @ self.params[0], self.params[1], self.act)
        return self.y

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        dz, db = bias_act_backward(dy, self.y, self.act, dz=dy)
        self.grads[1][...] = db
        np.matmul(self.x.T, dz, out=self.grads[0])
        return dz @ self.params[0].T if need_input_grad else None


class Flatten(Layer):
    """``(n, ...) -> (n, prod(...))``, and back for the gradient; no parameters."""

    saved = ("shape",)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return dy.reshape(self.shape) if need_input_grad else None
