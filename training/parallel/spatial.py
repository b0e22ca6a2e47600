"""Spatial parallelism: every image cut into a rows × columns grid of tiles, one per rank of the spatial axis.

A :class:`SpatialConv2d` exchanges its input tile's halo
(:class:`training.parallel.halo.HaloExchange`) and convolves the tile it
gets with no further padding, so that its output tile is exactly this
rank's block of the serial layer's output; backward runs the convolution's
gradient on that tile and the exchange's adjoint.  Its weight and bias
gradients are this tile's share: summed over the spatial group (with the
data group's, by the caller's all-reduce) they are the serial layer's.
:class:`SpatialGlobalAvgPool` sums each tile's planes and all-reduces the
sums over the spatial group, so every rank holds the pooled features; the
layers after it run replicated, each rank computing their whole gradient,
which must not be summed over the group again: :func:`tiled_range` gives
the part of the flat gradient that must.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms.schedule import partition

from ..kernels import conv2d, conv2d_backward
from ..layers import Conv2d, GlobalAvgPool
from .halo import HaloExchange, axis_geometry, output_size

__all__ = ["SpatialGrid", "SpatialConv2d", "SpatialGlobalAvgPool", "spatial_cnn", "tiled_range", "grid_shape"]


def grid_shape(text: str, option: str) -> tuple[int, int]:
    """``"RxC"`` → ``(R, C)``; ValueError naming ``option`` unless both are integers of at least 1."""
    try:
        rows, cols = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{option} {text!r}: ROWSxCOLS, e.g. 2x2") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"{option} {text}: rows and columns of tiles, each at least 1")
    return rows, cols


class SpatialGrid:
    """The ranks of ``comm`` as ``rows × cols`` tiles: rank ``i·cols + j`` holds tile ``(i, j)``.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The spatial axis, of ``rows · cols`` ranks.  Collective: every rank
        builds it, and :meth:`free` s it.
    rows, cols : int

    Attributes
    ----------
    row, col : int
        This rank's tile.
    down : mpi4py.MPI.Comm
        The ranks of this grid column, ranked by row: the row exchange.
    across : mpi4py.MPI.Comm
        The ranks of this grid row, ranked by column: the column exchange.
    """

    def __init__(self, comm: MPI.Comm, rows: int, cols: int):
        if rows < 1 or cols < 1 or rows * cols != comm.Get_size():
            raise ValueError(f"a {rows}x{cols} spatial grid needs {rows * cols} ranks, the communicator has "
                             f"{comm.Get_size()}")
        self.comm, self.rows, self.cols = comm, rows, cols
        self.row, self.col = divmod(comm.Get_rank(), cols)
        self.down = comm.Split(self.col, self.row)
        self.across = comm.Split(self.row, self.col)

    def tile(self, height: int, width: int) -> tuple[slice, slice]:
        """This rank's rows and columns of a ``height × width`` image (cut as ``partition`` cuts)."""
        r, c = partition(height, self.rows), partition(width, self.cols)
        return slice(r[self.row], r[self.row + 1]), slice(c[self.col], c[self.col + 1])

    def free(self) -> None:
        """Free the row and column communicators (collective)."""
        self.down.Free()
        self.across.Free()


class SpatialConv2d(Conv2d):
    """:class:`~training.layers.Conv2d` (zero padding ``padding``) on this rank's tile of each image.

    Parameters
    ----------
    in_channels, out_channels, kernel : int
        As the serial layer's; its weights are drawn the same way (whole, on every rank).
    image : (int, int)
        The whole input's height and width.
    grid : SpatialGrid
    padding : int, optional
        Zero padding on every side (default ``kernel // 2``: at stride 1 the output has the input's size).
    stride : int
        As the serial layer's.  The output is cut over the grid as the input
        is (:func:`~collectives.algorithms.schedule.partition`), so the next
        layer's tiles are this one's output tiles.

    Attributes
    ----------
    out_image : (int, int)
        The whole output's height and width.
    halo : HaloExchange
    """

    saved = ("buf",)

    def __init__(self, in_channels: int, out_channels: int, kernel: int, image, grid: SpatialGrid,
                 padding: int | None = None, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride)
        padding = kernel // 2 if padding is None else padding
        rows = axis_geometry(image[0], grid.rows, kernel, stride, padding)[grid.row]
        cols = axis_geometry(image[1], grid.cols, kernel, stride, padding)[grid.col]
        self.out_image = tuple(output_size(n, kernel, stride, padding) for n in image)
        self.halo = HaloExchange([rows, cols], [2, 3], [grid.down, grid.across])

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.buf = np.ascontiguousarray(self.halo.forward(x))
        return conv2d(self.buf, self.params[0], self.params[1], pad=0, stride=self.stride)

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        dbuf, dw, db = conv2d_backward(np.ascontiguousarray(dy), self.buf, self.params[0], pad=0,
                                       need_input_grad=need_input_grad, stride=self.stride)
        self.grads[0][...] = dw
        self.grads[1][...] = db
        return self.halo.adjoint(dbuf) if need_input_grad else None


class SpatialGlobalAvgPool(GlobalAvgPool):
    """``(N, C, h, w)`` tiles → ``(N, C)`` means over the whole ``image``: tile sums all-reduced over the grid."""

    def __init__(self, image, grid: SpatialGrid, algorithm: str = "auto"):
        self.image, self.grid, self.algorithm = tuple(image), grid, algorithm

    def pixels(self) -> int:
        """The whole image's pixels, not the tile's (the serial layer's backward does the rest)."""
        return self.image[0] * self.image[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        sums = np.ascontiguousarray(x.sum(axis=(2, 3)))
        collectives.allreduce(sums, sums, algorithm=self.algorithm, comm=self.grid.comm)
        return sums / self.pixels()


def spatial_cnn(in_channels: int, classes: int, image, grid: SpatialGrid, channels=None, kernel: int = 3,
                seed: int = 0, dtype=np.float32, algorithm: str = "auto"):
    """:func:`training.model.cnn` on this rank's tile of each ``image`` (height, width): the same layers, layout
    and initial parameters, its convolutions and pooling spatial.  The weight gradients it leaves are this
    tile's share; their sum over ``grid.comm`` is the one-rank model's."""
    from ..model import CNN_CHANNELS, cnn

    size = tuple(image)  # each convolution's input image: the previous one's output

    def conv(c_in: int, c_out: int, k: int, stride: int) -> SpatialConv2d:
        nonlocal size
        layer = SpatialConv2d(c_in, c_out, k, size, grid, stride=stride)
        size = layer.out_image
        return layer

    return cnn(in_channels, classes, CNN_CHANNELS if channels is None else channels, kernel, seed, dtype,
               conv=conv, pool=lambda: SpatialGlobalAvgPool(size, grid, algorithm))


def tiled_range(model) -> tuple[int, int]:
    """``[lo, hi)`` of the flat gradient that holds the spatial layers' per-tile shares (to sum over the group).

    The spatial layers come first in the model, so last in its buffers
    (laid out last layer first): one contiguous range, the rest replicated.
    """
    ranges = [model.param_range(i) for i, layer in enumerate(model.layers) if isinstance(layer, SpatialConv2d)]
    if not ranges:
        return 0, 0
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    if sum(b - a for a, b in ranges) != hi - lo:
        raise ValueError("the spatial layers' parameters are not contiguous: put them before every replicated one")
    return lo, hi
