"""The collectives one training step issues under a data × tensor layout, and their predicted time.

:func:`step_collectives` lists them exactly as :mod:`training.parallel.tensor`
and ``sync_sgd`` issue them (tested against the traffic of a real step);
:func:`predict_step` prices each with :func:`collectives.model.cost_model.predict`
on a measured profile.  Per rank and step, for an MLP of widths ``d_0 .. d_L``,
global batch ``B``, ``D`` data × ``T`` tensor ranks and ``b = B / D`` rows:

- data axis: one all-reduce of the rank's gradient (its pieces of every
  layer), ``2(D-1)/D`` of it through each rank with a ring;
- tensor axis, the course's scheme: an all-gather of ``b × d_i`` for every
  hidden layer forward (``(T-1)/T`` of it through each rank), and an
  all-reduce of ``b × d_{i-1}`` backward for every hidden layer but the
  first; Megatron's: an all-reduce of ``b × (the pair's output width)``
  forward per pair, and of ``b × (its input width)`` backward but the first.

The course material writes the comparison as ``T_comm(model) = Σ_i
β(T-1)·b·d_i/T + 2·Σ_{i≥2} β(T-1)·b·d_i/T`` against ``T_comm(data) = Σ_i
β(P-1)·d_i²/P``: its data side drops the ring all-reduce's factor 2 that its
own earlier formula has.  This module counts the real thing (the factor 2
included, biases included, block sizes rounded as the code rounds them).
"""

from __future__ import annotations

from typing import NamedTuple

from collectives.algorithms.schedule import partition
from collectives.model import cost_model

from .tensor import split_widths

__all__ = ["Collective", "step_collectives", "predict_step"]


class Collective(NamedTuple):
    """One collective of a step: on which axis, which family, its size as the API takes it, on how many ranks."""

    axis: str  # "data" or "tensor"
    family: str  # "allreduce" or "allgather"
    nbytes: int  # all-reduce: the vector; all-gather: all ranks' blocks together (T * block)
    ranks: int


def _widest(n: int, t: int) -> int:
    return partition(n, t)[1]  # the first block is the widest


def local_parameters(sizes, tensor: int, scheme: str) -> int:
    """Elements of tensor rank 0's pieces (the most of any rank) of the MLP ``sizes``."""
    n, total, i = len(sizes) - 1, 0, 0
    while i < n:
        fan_in, fan_out = sizes[i], sizes[i + 1]
        if scheme == "course" and i < n - 1:
            total += (fan_in + 1) * _widest(fan_out, tensor)
        elif scheme == "megatron" and i + 1 < n:
            total += (fan_in + 1) * _widest(fan_out, tensor)
            i += 1
            total += _widest(sizes[i], tensor) * sizes[i + 1] + sizes[i + 1]
        else:
            total += (fan_in + 1) * fan_out
        i += 1
    return total


def step_collectives(sizes, batch: int, data: int, tensor: int, scheme: str = "course",
                     itemsize: int = 4) -> list[Collective]:
    """Every collective one rank issues in one training step (forward, backward, gradient all-reduce)."""
    split_widths(sizes, scheme)  # checks the scheme
    rows = -(-batch // data)  # the first data ranks hold the most rows
    out = []
    if tensor > 1:
        n = len(sizes) - 1
        if scheme == "course":
            for i in range(n - 1):  # hidden layers: all-gather forward
                out.append(Collective("tensor", "allgather", tensor * rows * _widest(sizes[i + 1], tensor) * itemsize,
                                      tensor))
            for i in range(1, n - 1):  # and all-reduce of the input gradient backward, but the first's
                out.append(Collective("tensor", "allreduce", rows * sizes[i] * itemsize, tensor))
        else:
            for i in range(0, n - 1, 2):  # pairs (i, i+1)
                out.append(Collective("tensor", "allreduce", rows * sizes[i + 2] * itemsize, tensor))
                if i > 0:
                    out.append(Collective("tensor", "allreduce", rows * sizes[i] * itemsize, tensor))
    if data > 1:
        out.append(Collective("data", "allreduce", local_parameters(sizes, tensor, scheme) * itemsize, data))
    return out


def predict_step(collectives, profile, algorithm: str = "ring", ranks_per_node: int | None = None,
                 in_place: bool = False) -> dict:
    """Predicted seconds per step on each axis: ``{"data": s, "tensor": s}``.

    ``algorithm``: the all-reduces' (and all-gathers', where that family has
    the name; else the model's best all-gather).  ``in_place``: the
    all-reduces run in place, as the layers and buckets call them (default:
    out of place, as ``collectives.bench`` times them).
    """
    out = {"data": 0.0, "tensor": 0.0}
    for c in collectives:
        name = algorithm
        if name not in cost_model.predictable(c.family):
            name = cost_model.best(c.family, c.nbytes, c.ranks, profile, ranks_per_node=ranks_per_node)[0]
        out[c.axis] += cost_model.predict(c.family, name, c.nbytes, c.ranks, profile, ranks_per_node=ranks_per_node,
                                          in_place=in_place and c.family == "allreduce")
    return out
