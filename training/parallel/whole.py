"""A model cut over the tensor and pipeline axes, to and from the one-rank layout that checkpoints hold.

A checkpoint holds the whole model as one rank lays it out
(:func:`training.model.mlp`: every parameter whole, last layer first), so a
run saved under one layout resumes under any other: every rank reads the
whole vector and keeps its pieces (:func:`from_whole`); saving gathers the
pieces of one replica to its first tensor rank (:func:`to_whole`).  The
optimiser's momentum has the parameters' layout and travels the same way.

With pipeline stages, each stage holds a run of the layers: the whole
vector lists the last stage's layers first (the last layer first), so it
is the stages' whole vectors from the last stage to the first.
"""

from __future__ import annotations

import math

import numpy as np
from mpi4py import MPI

from collectives.algorithms.schedule import partition

from .tensor import ColumnParallelLinear, RowParallelLinear

__all__ = ["whole_size", "to_whole", "from_whole"]


def _parts(model, rank: int, size: int):
    """``(local offset, whole offset, whole shape, index into the whole array)`` of every parameter of ``rank``."""
    out, local, whole = [], 0, 0
    for layer in reversed(model.layers):
        for k, shape in enumerate(layer.param_shapes):
            index = (slice(None),) * len(shape)
            if isinstance(layer, (ColumnParallelLinear, RowParallelLinear)):
                cut_inputs = isinstance(layer, RowParallelLinear)
                bounds = partition(layer.fan_in if cut_inputs else layer.fan_out, size)
                block = slice(bounds[rank], bounds[rank + 1])
                full = (layer.fan_in, layer.fan_out) if k == 0 else (layer.fan_out,)
                if k == 0:
                    index = (block, slice(None)) if cut_inputs else (slice(None), block)
                elif not cut_inputs:
                    index = (block,)
                shape = tuple(len(range(full[d])[index[d]]) for d in range(len(full)))
            else:
                full = shape
            out.append((local, whole, full, index, shape))
            local += math.prod(shape)
            whole += math.prod(full)
    return out


def whole_size(model, pipeline: MPI.Comm | None = None) -> int:
    """Elements of the whole model (the one-rank layout), whatever the cut.

    ``model`` is this rank's (stage's) model; with ``pipeline`` (collective
    over it), the sum over the stages.
    """
    n = sum(math.prod(full) for _, _, full, _, _ in _parts(model, 0, 1))
    return n if pipeline is None else pipeline.allreduce(n)


def to_whole(model, local: np.ndarray, comm: MPI.Comm, pipeline: MPI.Comm | None = None) -> np.ndarray | None:
    """The whole vector of ``local`` (this rank's pieces, in ``model``'s layout) on rank 0 of ``comm``; None elsewhere.

    Collective over ``comm``, the tensor axis, and ``pipeline``, if given
    (then the whole is on the rank that is 0 on both).  ``local`` is the
    parameters or anything laid out as they are (the momentum).
    """
    stage = _stage_whole(model, local, comm)
    if pipeline is None:
        return stage
    stages = pipeline.gather(stage, root=0)
    if pipeline.Get_rank() != 0 or stage is None:
        return None
    return np.concatenate(stages[::-1])


def _stage_whole(model, local: np.ndarray, comm: MPI.Comm) -> np.ndarray | None:
    everyone = comm.gather(local, root=0)
    if comm.Get_rank() != 0:
        return None
    whole = np.zeros(whole_size(model), local.dtype)
    for rank, piece in enumerate(everyone):
        for lo, wlo, full, index, shape in _parts(model, rank, comm.Get_size()):
            view = whole[wlo : wlo + math.prod(full)].reshape(full)
            view[index] = piece[lo : lo + math.prod(shape)].reshape(shape)
    return whole


def from_whole(model, whole: np.ndarray, local: np.ndarray, comm: MPI.Comm, pipeline: MPI.Comm | None = None) -> None:
    """Fill ``local`` (this rank's pieces) from the whole vector, which every rank has.

    No messages, but with ``pipeline``: the stages' sizes are gathered over it (collective).
    """
    if pipeline is not None:
        sizes, r = pipeline.allgather(whole_size(model)), pipeline.Get_rank()
        start = sum(sizes[r + 1:])
        whole = whole[start : start + sizes[r]]
    for lo, wlo, full, index, shape in _parts(model, comm.Get_rank(), comm.Get_size()):
        local[lo : lo + math.prod(shape)] = whole[wlo : wlo + math.prod(full)].reshape(full)[index].ravel()
