"""Layers with a forward and a backward pass, and :class:`Sequential`, a model on two flat buffers.

Every parallel mode composes these: data parallelism all-reduces the flat
gradient buffer in buckets, tensor parallelism replaces a :class:`Linear` by
a column- or row-parallel one, spatial parallelism a :class:`Conv2d` by one
that exchanges halos.  The arithmetic runs on the Numba kernels of
:mod:`training.kernels` and numpy's BLAS.
"""

from .base import Layer
from .conv import Conv2d, GlobalAvgPool
from .linear import Flatten, Linear
from .loss import SoftmaxCrossEntropy
from .relu import ReLU
from .sequential import Sequential

__all__ = ["Layer", "Linear", "Flatten", "Conv2d", "GlobalAvgPool", "ReLU", "SoftmaxCrossEntropy", "Sequential"]
