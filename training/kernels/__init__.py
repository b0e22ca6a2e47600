"""Numba kernels for training: fused, SIMD, multithreaded above a size threshold.

Matrix products stay on BLAS (numpy); these are the passes around them.
The element-wise reduction the collectives use is
:func:`collectives.runtime.reduce_ops.combine`.
"""

from .activation import ACTIVATIONS, bias_act, bias_act_backward
from .buckets import Layout, flatten, unflatten
from .conv2d import conv2d, conv2d_backward
from .sgd import sgd_update
from .softmax import softmax, softmax_cross_entropy

__all__ = [
    "ACTIVATIONS", "bias_act", "bias_act_backward", "Layout", "flatten", "unflatten",
    "conv2d", "conv2d_backward", "sgd_update", "softmax", "softmax_cross_entropy",
]
