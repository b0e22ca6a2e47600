"""SGD with momentum and weight decay on flat buffers, with linear learning-rate scaling and warm-up.

Goyal et al. (2017), "Accurate, large minibatch SGD": with ``scale_lr`` the
target rate is ``lr * global_batch / 256``; warm-up raises the rate
linearly over ``warmup_steps`` from ``lr`` (the unscaled rate) to the
target, or from ``lr / 10`` when the rate is not scaled.
"""

from __future__ import annotations

import numpy as np

from .kernels import sgd_update

__all__ = ["SGD", "learning_rate"]

REFERENCE_BATCH = 256


def learning_rate(step: int, lr: float, global_batch: int, scale_lr: bool = False, warmup_steps: int = 0) -> float:
    """The rate for ``step`` (0-based)."""
    target = lr * global_batch / REFERENCE_BATCH if scale_lr else lr
    if warmup_steps <= 0 or step >= warmup_steps:
        return target
    start = lr if scale_lr else lr / 10
    return start + (target - start) * step / warmup_steps


class SGD:
    """One momentum buffer for the flat parameters; :meth:`step` applies the kernel once."""

    def __init__(self, params: np.ndarray, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False):
        self.params = params
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.buffer = np.zeros_like(params) if momentum else None

    def step(self, grads: np.ndarray, lr: float) -> None:
        sgd_update(self.params, grads, self.buffer, lr=lr, momentum=self.momentum,
                   weight_decay=self.weight_decay, nesterov=self.nesterov)
