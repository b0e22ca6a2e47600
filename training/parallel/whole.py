"""A model cut over the tensor axis, to and from the one-rank layout that checkpoints hold.

A checkpoint holds the whole model as one rank lays it out
(:func:`training.model.mlp`: every parameter whole, last layer first), so a
run saved under one layout resumes under any other: every rank reads the
whole vector and keeps its pieces (:func:`from_whole`); saving gathers the
pieces of one replica to its first tensor rank (:func:`to_whole`).  The
optimiser's momentum has the parameters' layout and travels the same way.
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


def whole_size(model) -> int:
    """Elements of the whole model (the one-rank layout), whatever the cut."""
    return sum(math.prod(full) for _, _, full, _, _ in _parts(model, 0, 1))


def to_whole(model, local: np.ndarray, comm: MPI.Comm) -> np.ndarray | None:
    """The whole vector of ``local`` (this rank's pieces, in ``model``'s layout) on rank 0 of ``comm``; None elsewhere.

    Collective over ``comm``, the tensor axis.  ``local`` is the parameters
    or anything laid out as they are (the momentum).
    """
    everyone = comm.gather(local, root=0)
    if comm.Get_rank() != 0:
        return None
    whole = np.zeros(whole_size(model), local.dtype)
    for rank, piece in enumerate(everyone):
        for lo, wlo, full, index, shape in _parts(model, rank, comm.Get_size()):
            view = whole[wlo : wlo + math.prod(full)].reshape(full)
            view[index] = piece[lo : lo + math.prod(shape)].reshape(shape)
    return whole


def from_whole(model, whole: np.ndarray, local: np.ndarray, comm: MPI.Comm) -> None:
    """Fill ``local`` (this rank's pieces) from the whole vector; no messages (every rank has ``whole``)."""
    for lo, wlo, full, index, shape in _parts(model, comm.Get_rank(), comm.Get_size()):
        local[lo : lo + math.prod(shape)] = whole[wlo : wlo + math.prod(full)].reshape(full)[index].ravel()
