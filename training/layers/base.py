"""What a layer is to :class:`~training.layers.Sequential`."""

from __future__ import annotations

import numpy as np


class Layer:
    """A step of a model: parameters (views into the model's flat buffers), forward and backward.

    Subclasses set :attr:`param_shapes` and :attr:`param_names` before
    :class:`~training.layers.Sequential` binds them, and implement
    :meth:`forward` (keeping what :meth:`backward` needs) and
    :meth:`backward` (writing the gradient of every parameter and returning
    that of the input).
    """

    #: Shapes of the parameters, in the order they sit in the flat buffers.
    param_shapes: tuple[tuple[int, ...], ...] = ()
    #: A short name per parameter (``"W"``, ``"b"``); the model adds the layer's index.
    param_names: tuple[str, ...] = ()
    #: The attributes :meth:`forward` sets for :meth:`backward`: a pipeline stage keeps them per
    #: micro-batch (:meth:`stash`) and puts them back before that micro-batch's backward (:meth:`restore`).
    saved: tuple[str, ...] = ()

    def stash(self) -> tuple:
        """What the last :meth:`forward` kept for :meth:`backward` (references, not copies)."""
        return tuple(getattr(self, name) for name in self.saved)

    def restore(self, state: tuple) -> None:
        """Put back what :meth:`stash` returned, so that :meth:`backward` runs for that forward."""
        for name, value in zip(self.saved, state):
            setattr(self, name, value)

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Take views of the model's flat parameter and gradient buffers, one per parameter."""
        self.params, self.grads = params, grads

    def init(self, rng: np.random.Generator) -> None:
        """Draw the initial parameters from ``rng`` (default: leave them zero)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The output for input ``x``; keeps what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Write the parameters' gradients for output gradient ``dy``; return the input's (or None).

        ``dy`` may be overwritten.  ``need_input_grad`` is False for the
        first layer, whose input gradient nobody reads.
        """
        raise NotImplementedError
