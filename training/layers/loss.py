"""The loss at the end of a :class:`~training.layers.Sequential`."""

from __future__ import annotations

import numpy as np

from ..kernels import softmax_cross_entropy


class SoftmaxCrossEntropy:
    """Mean cross-entropy of ``softmax(logits)`` against integer labels (the fused kernel)."""

    def loss_and_grad(self, logits: np.ndarray, labels: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
        """The mean loss over the rows, and ``scale * d(sum of losses)/d(logits)``, written into ``logits``."""
        loss = softmax_cross_entropy(logits, labels, grad=logits, scale=scale)
        return loss, logits
