"""The process grid a ``sync_sgd`` command line asks for, and this rank's model on it.

``--tensor-parallel T`` and ``--pipeline-stages S`` set the grid's tensor
and pipeline degrees (:class:`~training.parallel.grid.Layout`); the data
degree is what they leave, ``P / (S·T)``.  Without a pipeline (``S = 1`` and
``--micro-batches 1``) the model is a :class:`~training.layers.Sequential`
whose layers may be cut over the tensor axis; otherwise it is a
:class:`~training.parallel.pipeline.Pipeline` holding this rank's stage,
whose layers may be cut the same way.
"""

from __future__ import annotations

from ..layers import Sequential
from .grid import Layout, ProcessGrid
from .pipeline import Pipeline, stage_bounds, stage_model
from .tensor import tensor_mlp

__all__ = ["model_on_grid", "describe"]


def model_on_grid(args, sizes: list[int], world) -> tuple[ProcessGrid, Sequential | Pipeline]:
    """The grid of the command line's layout, and this rank's model on it: whole, cut, or a pipeline stage.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed and validated by :mod:`training.options`.
    sizes : list of int
        The MLP's widths.
    world : mpi4py.MPI.Intracomm
        Every rank; collective over it.
    """
    s, m = args.pipeline_stages, args.micro_batches
    grid = ProcessGrid(world, Layout(world.Get_size(), tensor=args.tensor_parallel, pipeline=s))
    if s == 1 and m == 1:
        return grid, tensor_mlp(sizes, args.act, grid.tensor, args.tensor_scheme, seed=args.seed,
                                algorithm=args.allreduce)
    bounds, r = stage_bounds(sizes, s, args.tensor_scheme, args.stage_layers), grid.pipeline.Get_rank()
    stage = stage_model(sizes, args.act, grid.tensor, bounds, r, args.tensor_scheme, seed=args.seed,
                        algorithm=args.allreduce)
    return grid, Pipeline(stage, grid.pipeline, args.schedule, m, (sizes[bounds[r]], sizes[bounds[r + 1]]))


def describe(args, data) -> str:
    """The run header's words for the model-parallel axes, ending ``x data D, `` (empty for pure data parallelism)."""
    words = []
    if args.tensor_parallel > 1:
        words.append(f"tensor parallel {args.tensor_parallel} ({args.tensor_scheme})")
    if args.pipeline_stages > 1 or args.micro_batches > 1:
        words.append(f"pipeline {args.pipeline_stages} stage(s), {args.micro_batches} micro-batches "
                     f"({args.schedule})")
    return " x ".join(words) + f" x data {data.Get_size()}, " if words else ""
