"""The models ``sync_sgd`` trains, built from :mod:`training.layers`: an MLP and a small CNN."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .layers import Conv2d, GlobalAvgPool, Linear, ReLU, Sequential

__all__ = ["mlp", "cnn", "cnn_strides", "CNN_CHANNELS"]

#: The default CNN's convolution widths: 3 x 3 convolutions of 16, 32, 32 and 64 channels.
CNN_CHANNELS = (16, 32, 32, 64)


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


def cnn_strides(convolutions: int) -> list[int]:
    """The stride of each of :func:`cnn`'s convolutions: 1 for the first, 2 for every later one."""
    return [1] + [2] * (convolutions - 1)


def cnn(in_channels: int, classes: int, channels: Sequence[int] = CNN_CHANNELS, kernel: int = 3, seed: int = 0,
        dtype=np.float32, conv=None, pool=None) -> Sequential:
    """Convolutions each followed by a ReLU, global average pooling, a linear classifier.

    The first convolution keeps the image's size (stride 1); every one after
    it halves it (stride 2), doubling the receptive field: with the default
    four 3 x 3 layers a feature sees 31 x 31 pixels before the pooling.

    Parameters
    ----------
    in_channels, classes : int
    channels : sequence of int
        Output channels of each convolution (default :data:`CNN_CHANNELS`).
    kernel : int
        The convolutions' size, odd, with padding ``kernel // 2``.
    seed : int
        He-normal convolutions, Glorot classifier, zero biases, drawn layer by layer.
    dtype : numpy dtype
    conv, pool : callable, optional
        ``conv(c_in, c_out, kernel, stride)`` and ``pool()`` make the convolution and
        pooling layers (default :class:`Conv2d` and :class:`GlobalAvgPool`):
        the spatial-parallel model passes its own, drawn and laid out alike.
    """
    if min(in_channels, classes, *channels) < 1 or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"a CNN needs channels and classes >= 1 and an odd kernel, got {in_channels}, "
                         f"{list(channels)}, {classes}, kernel {kernel}")
    conv = conv or Conv2d
    layers, c = [], in_channels
    for width, stride in zip(channels, cnn_strides(len(channels))):
        layers += [conv(c, width, kernel, stride), ReLU()]
        c = width
    layers += [(pool or GlobalAvgPool)(), Linear(c, classes, "identity", "glorot")]
    return Sequential(layers, seed=seed, dtype=dtype)
