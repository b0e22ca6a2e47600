"""Spatial parallelism on every grid that fits the world: the halo exchange is the adjoint of its adjoint,
the tiled convolution and pooling equal the serial layers (output, input gradient and weight gradients),
and the halo traffic is the course's formula exactly."""

from __future__ import annotations

import numpy as np
import pytest

from collectives.runtime import traffic
from conftest import collective_assert, world
from training.layers import Conv2d, GlobalAvgPool, Sequential
from training.parallel.halo import HaloExchange, axis_geometry
from training.parallel.spatial import SpatialConv2d, SpatialGlobalAvgPool, SpatialGrid

pytestmark = pytest.mark.mpi(min_size=1)


def _grids():
    """(rows, cols) grids of the world: 1 x P, P x 1, and 2 x 2 at P = 4."""
    p = world().Get_size()
    return sorted({(1, p), (p, 1)} | ({(2, 2)} if p == 4 else set()))


def _global(a, comm) -> float:
    return comm.allreduce(float(np.sum(a, dtype=np.float64)))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("kernel, padding", [(3, 1), (5, 2), (2, 0)])
def test_the_halo_exchange_and_its_adjoint_are_adjoint(dtype, tol, kernel, padding):
    """<F x, y> = <x, F* y> summed over the ranks, on uneven tiles of an 11 x 9 image."""
    comm = world()
    for rows, cols in _grids():
        grid = SpatialGrid(comm, rows, cols)
        g = [axis_geometry(11, rows, kernel, 1, padding)[grid.row],
             axis_geometry(9, cols, kernel, 1, padding)[grid.col]]
        halo = HaloExchange(g, [2, 3], [grid.down, grid.across])
        rng = np.random.default_rng([7, comm.Get_rank()])
        x = rng.standard_normal((2, 3, g[0].owned[1] - g[0].owned[0], g[1].owned[1] - g[1].owned[0])).astype(dtype)
        fx = halo.forward(x)
        y = rng.standard_normal(fx.shape).astype(dtype)
        left, right = _global(fx * y, comm), _global(x * halo.adjoint(y), comm)
        grid.free()
        collective_assert(comm, abs(left - right) <= tol * max(1.0, abs(left)) * 10,
                          f"{rows}x{cols} k={kernel}: <Fx, y> = {left}, <x, F*y> = {right}")


@pytest.mark.parametrize("image, kernel, stride", [((11, 9), 3, 1), ((11, 9), 5, 1), ((7, 13), 3, 1),
                                                   ((11, 9), 3, 2), ((12, 10), 5, 2), ((16, 15), 3, 3)])
def test_the_tiled_convolution_is_the_serial_one(image, kernel, stride):
    """y, dX and dW (summed over the tiles) against Conv2d on the whole image, float64, odd and uneven tiles;
    strided, each rank's output tile is its block of the output cut as the input is."""
    comm = world()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, *image))
    serial = Conv2d(3, 4, kernel, stride)
    Sequential([serial], dtype=np.float64, seed=5)
    want_y = serial.forward(x)
    dy = rng.standard_normal(want_y.shape)
    want_dx = serial.backward(dy.copy())
    for rows, cols in _grids():
        grid = SpatialGrid(comm, rows, cols)
        layer = SpatialConv2d(3, 4, kernel, image, grid, stride=stride)
        Sequential([layer], dtype=np.float64, seed=5)
        r, c = grid.tile(*image)
        ro, co = grid.tile(*want_y.shape[2:])
        assert layer.out_image == want_y.shape[2:]
        y = layer.forward(np.ascontiguousarray(x[:, :, r, c]))
        dx = layer.backward(np.ascontiguousarray(dy[:, :, ro, co]))
        dw, db = comm.allreduce(layer.grads[0]), comm.allreduce(layer.grads[1])
        bad = [what for what, a, b in (("y", y, want_y[:, :, ro, co]), ("dx", dx, want_dx[:, :, r, c]),
                                       ("dW", dw, serial.grads[0]), ("db", db, serial.grads[1]))
               if not (a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12))]
        grid.free()
        collective_assert(comm, not bad, f"{rows}x{cols}, image {image}, kernel {kernel}, stride {stride}: "
                                         f"{bad} differ")


def test_tiles_thinner_than_the_halo_still_convolve():
    """5 rows on up to 5 ranks with a 5 x 5 kernel: a rank of one row takes its halo from two ranks each way."""
    comm = world()
    p = comm.Get_size()
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((1, 2, 5, 6))
    serial = Conv2d(2, 2, 5)
    Sequential([serial], dtype=np.float64, seed=1)
    want_y, want_dx = serial.forward(x), serial.backward(dy.copy())
    grid = SpatialGrid(comm, p, 1)
    layer = SpatialConv2d(2, 2, 5, (5, 6), grid)
    Sequential([layer], dtype=np.float64, seed=1)
    r, c = grid.tile(5, 6)
    ok = np.allclose(layer.forward(np.ascontiguousarray(x[:, :, r, c])), want_y[:, :, r, c], atol=1e-12)
    ok &= np.allclose(layer.backward(np.ascontiguousarray(dy[:, :, r, c])), want_dx[:, :, r, c], atol=1e-12)
    grid.free()
    collective_assert(comm, ok, f"{p} x 1 tiles of 5 rows, kernel 5")


def test_more_ranks_than_rows_is_a_clear_error():
    comm = world()
    p = comm.Get_size()
    if p == 1:
        pytest.skip("one rank holds any image")
    grid = SpatialGrid(comm, p, 1)
    with pytest.raises(ValueError, match=f"{p} ranks cannot split {p - 1} input rows"):
        SpatialConv2d(2, 2, 3, (p - 1, 4), grid)
    grid.free()


def test_pooling_is_the_serial_one_and_adjoint():
    comm = world()
    rng = np.random.default_rng(6)
    x, dy = rng.standard_normal((2, 3, 11, 9)), rng.standard_normal((2, 3))
    serial = GlobalAvgPool()
    want_y, want_dx = serial.forward(x), serial.backward(dy)
    for rows, cols in _grids():
        grid = SpatialGrid(comm, rows, cols)
        pool = SpatialGlobalAvgPool((11, 9), grid, algorithm="ring")
        r, c = grid.tile(11, 9)
        y, dx = pool.forward(np.ascontiguousarray(x[:, :, r, c])), pool.backward(dy)
        # <pool(x), dy>, the pooled features replicated, against <x, pool*(dy)> summed over the tiles
        adjoint = abs(float(np.sum(y * dy)) - _global(x[:, :, r, c] * dx, comm)) < 1e-12
        grid.free()
        collective_assert(comm, np.allclose(y, want_y, atol=1e-14) and np.allclose(dx, want_dx[:, :, r, c])
                          and adjoint, f"{rows}x{cols} pooling")


@pytest.mark.parametrize("kernel", [3, 5])
def test_halo_traffic_is_b_x_w_x_c_half_k_per_neighbour(kernel):
    """Rows split: each neighbour gets B·C·(tile width)·⌊k/2⌋ elements each way; edge ranks have one neighbour.
    Rows and columns (2 x 2): the column messages also carry the ghost rows the row exchange brought."""
    comm = world()
    b, ch, h, w, half = 2, 3, 12, 10, kernel // 2
    for rows, cols in _grids():
        if min(partition_sizes(h, rows) + partition_sizes(w, cols)) < half:
            continue
        grid = SpatialGrid(comm, rows, cols)
        layer = SpatialConv2d(ch, 4, kernel, (h, w), grid)
        Sequential([layer], dtype=np.float64)
        r, c = grid.tile(h, w)
        tile_h, tile_w = r.stop - r.start, c.stop - c.start
        with traffic.count() as t:
            layer.forward(np.zeros((b, ch, tile_h, tile_w)))
        up_down = (grid.row > 0) + (grid.row < rows - 1)
        sideways = (grid.col > 0) + (grid.col < cols - 1)
        ghost_h = tile_h + half * up_down
        want = 8 * b * ch * half * (up_down * tile_w + sideways * ghost_h)
        grid.free()
        collective_assert(comm, t.bytes_sent == t.bytes_received == want and
                          t.messages_sent == up_down + sideways,
                          f"{rows}x{cols} tile {tile_h}x{tile_w}: {t}, expected {want} bytes each way")


def partition_sizes(n: int, parts: int) -> list[int]:
    from collectives.algorithms.schedule import partition

    bounds = partition(n, parts)
    return [b - a for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_thirty_steps_of_the_spatial_cnn_hold_the_one_rank_model(dtype, tol):
    """The default CNN on 13 x 11 images (odd, uneven tiles), gradients summed over the tiles: after 30 SGD steps
    every parameter and gradient equals the one-rank model's."""
    import collectives
    from training.model import cnn
    from training.optim import SGD
    from training.parallel.spatial import spatial_cnn, tiled_range

    comm = world()
    image, rng = (13, 11), np.random.default_rng(9)
    batches = [(rng.standard_normal((4, 2, *image)).astype(dtype), rng.integers(0, 3, 4)) for _ in range(30)]
    one = cnn(2, 3, channels=(4, 5), seed=2, dtype=dtype)
    theirs = SGD(one.params, 0.9, 1e-4)
    for x, y in batches:
        one.loss_and_grad(x, y, 1.0 / len(y))
        theirs.step(one.grads, 0.05)
    for rows, cols in _grids():
        grid = SpatialGrid(comm, rows, cols)
        model = spatial_cnn(2, 3, image, grid, channels=(4, 5), seed=2, dtype=dtype, algorithm="ring")
        mine = SGD(model.params, 0.9, 1e-4)
        r, c = grid.tile(*image)
        for x, y in batches:
            model.loss_and_grad(np.ascontiguousarray(x[:, :, r, c]), y, 1.0 / len(y))
            lo, hi = tiled_range(model)  # the convolutions' shares; the classifier's gradient is whole everywhere
            shares = model.grads[lo:hi]
            collectives.allreduce(shares, shares, algorithm="ring", comm=comm)
            mine.step(model.grads, 0.05)
        bad = [f"{what}{name}" for name in one.names for what, a, b in (("", model.p, one.p), ("grad ", model.g, one.g))
               if not np.allclose(a[name], b[name], rtol=tol, atol=tol)]
        grid.free()
        collective_assert(comm, not bad, f"{rows}x{cols}: {', '.join(bad)} differ from one rank's")
