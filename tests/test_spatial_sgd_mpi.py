"""sync_sgd --model cnn --data shapes --spatial RxC: every layout holds, parameter by parameter and gradient by
gradient, what one rank holds; the layouts it cannot run are refused on every rank."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from conftest import collective_assert, sync_sgd_exits_2_saying, world
from training import sync_sgd

pytestmark = pytest.mark.mpi(min_size=1)

#: 400 shapes of 32 x 32: 320 train, 10 a step, 32 steps.
BASE = ["--model", "cnn", "--data", "shapes", "--image-size", "32", "--samples", "400", "--batch", "10",
        "--epochs", "1", "--hidden", "4,8", "--allreduce", "ring", "--quiet"]


def _grids():
    """R x C tiles for this world: 1 x P and P x 1, and at P = 4 also 2 x 2 and data 2 x tiles 1 x 2."""
    p = world().Get_size()
    return sorted({(1, p), (p, 1)} | ({(2, 2), (1, 2)} if p == 4 else set()))


def test_every_spatial_layout_holds_the_one_rank_model():
    _, one = sync_sgd.run(BASE, MPI.COMM_SELF)
    for rows, cols in _grids():
        summary, model = sync_sgd.run([*BASE, "--spatial", f"{rows}x{cols}", "--check"], world())
        assert summary["steps"] == 32 and summary["spatial"] == [rows, cols]
        assert summary["time_split"]["halo_communication"] > 0 or rows * cols == 1
        bad = [f"{what}{name}" for name in one.names for what, a, b in (("", model.p, one.p), ("grad ", model.g, one.g))
               if not np.allclose(a[name], b[name], rtol=1e-5, atol=1e-5)]
        collective_assert(world(), not bad, f"{rows}x{cols}: {', '.join(bad)} differ from one rank's")


def test_an_hdf5_image_file_read_by_tile_trains_as_the_shapes_it_holds(tmp_path_factory):
    """The same 400 shapes written by write_h5 (chunked in 16 x 16 tiles), each rank reading its tile's hyperslab:
    every layout ends where the generated shapes on one rank do."""
    from training.shapes import write_h5

    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("images") / "shapes.h5") if comm.Get_rank() == 0 else None)
    if comm.Get_rank() == 0:
        write_h5(path, 400, 32, seed=0, chunk_rows=16)
    comm.Barrier()
    _, one = sync_sgd.run(BASE, MPI.COMM_SELF)
    from_file = [a if a != "shapes" else path for a in BASE]
    for rows, cols in _grids():
        summary, model = sync_sgd.run([*from_file, "--spatial", f"{rows}x{cols}"], world())
        bad = [name for name in one.names if not np.allclose(model.p[name], one.p[name], rtol=1e-5, atol=1e-5)]
        collective_assert(world(), summary["steps"] == 32 and not bad, f"{rows}x{cols} from {path}: {bad} differ")


def _first_unsplittable(p: int) -> str:
    """Six 3 x 3 convolutions on 32 columns, strides 1, 2, 2, 2, 2, 2: outputs 32, 16, 8, 4, 2, 1 columns; the first
    whose output has fewer columns than the p tiles is refused."""
    n = 32
    for i, out in enumerate([32, 16, 8, 4, 2, 1]):
        if out < p:
            return f"convolution {i + 1} of 6 has a {n}x{n} input: {p} ranks cannot split {n} input rows"
        n = out
    raise AssertionError(p)


def test_bad_spatial_layouts_exit_2_on_every_rank(capsys):
    p = world().Get_size()
    for argv, message in [
        ([*BASE, "--spatial", f"{p + 1}x1"], f"--spatial {p + 1} does not divide the {p} ranks"),
        ([*BASE, "--spatial", "two"], "--spatial 'two': ROWSxCOLS"),
        (["--spatial", "1x1", "--data", "shapes"], "--data shapes holds images: it needs --model cnn"),
        (["--spatial", f"{p}x1"] if p > 1 else ["--spatial", "1x2"], "cuts images: it needs --model cnn"),
        ([*BASE, "--tensor-parallel", "1", "--micro-batches", "2"], "--model cnn composes with data and spatial"),
        ([*BASE, "--overlap", "--spatial", f"1x{p}"] if p > 1 else [*BASE, "--data", "digits"],
         "--overlap is not built for spatial" if p > 1 else "--model cnn trains on images: --data shapes, or an HDF5"),
        ([*BASE, "--image-size", "16"], "--image-size 16: shapes are drawn from 32 to 1024 pixels"),
        ([*BASE, "--hidden", "2,2,2,2,2,2", "--spatial", f"1x{p}"] if p > 1 else [*BASE, "--model", "mlp"],
         f"--spatial 1x{p}: {_first_unsplittable(p)}" if p > 1 else "--data shapes holds images: it needs --model cnn"),
    ]:
        sync_sgd_exits_2_saying(argv, message, capsys)
