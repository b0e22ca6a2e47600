"""The process grid a ``sync_sgd`` command line asks for, and this rank's model on it.

``--tensor-parallel T`` and ``--pipeline-stages S`` set the grid's tensor
and pipeline degrees (:class:`~training.parallel.grid.Layout`); the data
degree is what they leave, ``P / (S·T)``.  Without a pipeline (``S = 1`` and
``--micro-batches 1``) the model is a :class:`~training.layers.Sequential`
whose layers may be cut over the tensor axis; otherwise it is a
:class:`~training.parallel.pipeline.Pipeline` holding this rank's stage,
whose layers may be cut the same way.  ``--model cnn`` with ``--spatial RxC``
cuts every image into tiles over the spatial axis
(:func:`~training.parallel.spatial.spatial_cnn`).
"""

from __future__ import annotations

from ..model import cnn
from .grid import Layout, ProcessGrid
from .pipeline import Pipeline, stage_bounds, stage_model
from .spatial import SpatialGrid, spatial_cnn
from .tensor import tensor_mlp

__all__ = ["model_on_grid", "describe"]


def model_on_grid(args, sizes: list[int], world, image=None):
    """The grid of the command line's layout, and this rank's model on it: whole, cut, a pipeline stage, or tiled.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed and validated by :mod:`training.options`.
    sizes : list of int
        The MLP's widths, or the CNN's: input channels, convolution channels, classes.
    world : mpi4py.MPI.Intracomm
        Every rank; collective over it.
    image : (int, int), optional
        The CNN's image height and width.

    Returns
    -------
    grid : ProcessGrid
    model : Sequential or Pipeline
    tiles : SpatialGrid or None
        With ``--spatial`` above 1x1, the tiles' grid on the spatial axis (to :meth:`~SpatialGrid.free`).
    """
    s, m = args.pipeline_stages, args.micro_batches
    if args.model == "cnn":
        rows, cols = args.spatial
        grid = ProcessGrid(world, Layout(world.Get_size(), spatial=rows * cols))
        if rows * cols == 1:
            return grid, cnn(sizes[0], sizes[-1], sizes[1:-1], seed=args.seed), None
        tiles = SpatialGrid(grid.spatial, rows, cols)
        return grid, spatial_cnn(sizes[0], sizes[-1], image, tiles, sizes[1:-1], seed=args.seed,
                                 algorithm=args.allreduce), tiles
    grid = ProcessGrid(world, Layout(world.Get_size(), tensor=args.tensor_parallel, pipeline=s))
    if s == 1 and m == 1:
        return grid, tensor_mlp(sizes, args.act, grid.tensor, args.tensor_scheme, seed=args.seed,
                                algorithm=args.allreduce), None
    bounds, r = stage_bounds(sizes, s, args.tensor_scheme, args.stage_layers), grid.pipeline.Get_rank()
    stage = stage_model(sizes, args.act, grid.tensor, bounds, r, args.tensor_scheme, seed=args.seed,
                        algorithm=args.allreduce)
    return grid, Pipeline(stage, grid.pipeline, args.schedule, m, (sizes[bounds[r]], sizes[bounds[r + 1]])), None


def describe(args, data) -> str:
    """The run header's words for the model-parallel axes, ending ``x data D, `` (empty for pure data parallelism)."""
    words = []
    if args.tensor_parallel > 1:
        words.append(f"tensor parallel {args.tensor_parallel} ({args.tensor_scheme})")
    if args.pipeline_stages > 1 or args.micro_batches > 1:
        words.append(f"pipeline {args.pipeline_stages} stage(s), {args.micro_batches} micro-batches "
                     f"({args.schedule})")
    if args.model == "cnn" and args.spatial != (1, 1):
        words.append(f"spatial {args.spatial[0]}x{args.spatial[1]} tiles")
    return " x ".join(words) + f" x data {data.Get_size()}, " if words else ""
