"""Name -> implementation, one table per collective family.

Bench, tests, training and ``auto`` all iterate these tables, so a new
algorithm is one module plus one line here.  Signatures per family:

- all-reduce: ``f(work, op, comm)``, in place on the flat ``work``;
- all-gather: ``f(work, offsets, comm)``, in place, block ``r`` pre-filled
  on rank ``r``;
- reduce-scatter: ``f(send, recv, offsets, op, comm)``;
- broadcast: ``f(buf, root, comm)``.

``op`` here is never ``avg`` (the API sums, then divides).
"""

from __future__ import annotations

import numpy as np

from ..algorithms import (
    binomial,
    bruck,
    double_binary_tree,
    naive_ps,
    rabenseifner,
    recursive_doubling,
    ring,
    scatter_allgather,
    sharded_ps,
)
from . import mpi_native
from .engine import execute
from .workspace import scratch_like

#: Ring messages are cut into segments of this many bytes (0: one message per block).
RING_SEGMENT_BYTES = 0
#: Double-binary-tree pipeline chunk, bytes.
TREE_CHUNK_BYTES = 512 * 1024


def _elements(nbytes: int, work: np.ndarray) -> int:
    return max(1, nbytes // work.itemsize) if nbytes else 0


def _schedule(rounds_fn, *extra):
    def rounds(work, comm):
        args = [e(work) for e in extra]
        return rounds_fn(comm.Get_rank(), comm.Get_size(), work.size, *args)

    rounds.__doc__ = rounds_fn.__doc__
    return rounds


#: All-reduce name -> ``rounds(work, comm)``, this rank's schedule (the hand-written ones).
ALLREDUCE_ROUNDS = {
    "naive_ps": _schedule(naive_ps.allreduce_rounds),
    "sharded_ps": _schedule(sharded_ps.allreduce_rounds),
    "ring": _schedule(ring.allreduce_rounds, lambda w: _elements(RING_SEGMENT_BYTES, w)),
    "recursive_doubling": _schedule(recursive_doubling.allreduce_rounds),
    "rabenseifner": _schedule(rabenseifner.allreduce_rounds),
    "double_binary_tree": _schedule(
        double_binary_tree.allreduce_rounds, lambda w: _elements(TREE_CHUNK_BYTES, w)
    ),
}


def _ar(schedule):
    def run(work, op, comm):
        execute(schedule(work, comm), work, comm, op)

    run.__doc__ = schedule.__doc__
    return run


ALLREDUCE = {**{name: _ar(f) for name, f in ALLREDUCE_ROUNDS.items()}, "mpi": mpi_native.allreduce}


def _ag(rounds_fn):
    def run(work, offsets, comm):
        execute(rounds_fn(comm.Get_rank(), comm.Get_size(), offsets), work, comm)

    return run


def _bruck_allgather(work, offsets, comm):
    rank, p = comm.Get_rank(), comm.Get_size()
    rot = bruck.rotated_offsets(rank, p, offsets)
    tmp = scratch_like(work, work.size, slot="bruck")
    tmp[: rot[1]] = work[offsets[rank] : offsets[rank + 1]]
    execute(bruck.allgather_rounds(rank, p, offsets), tmp, comm)
    split = offsets[p] - offsets[rank]  # blocks rank .. p-1 come first in tmp
    work[offsets[rank] :] = tmp[:split]
    work[: offsets[rank]] = tmp[split:]


ALLGATHER = {
    "ring": _ag(ring.allgather_rounds),
    "recursive_doubling": _ag(recursive_doubling.allgather_rounds),
    "bruck": _bruck_allgather,
    "mpi": mpi_native.allgather,
}


def _rs(rounds_fn):
    def run(send, recv, offsets, op, comm):
        rank = comm.Get_rank()
        work = scratch_like(send, send.size, slot="reduce_scatter")
        work[...] = send
        execute(rounds_fn(rank, comm.Get_size(), offsets), work, comm, op)
        recv[...] = work[offsets[rank] : offsets[rank + 1]]

    return run


REDUCE_SCATTER = {
    "ring": _rs(ring.reduce_scatter_rounds),
    "recursive_halving": _rs(rabenseifner.reduce_scatter_rounds),
    "mpi": mpi_native.reduce_scatter,
}


def _bc(rounds_fn):
    def run(buf, root, comm):
        execute(rounds_fn(comm.Get_rank(), comm.Get_size(), buf.size, root), buf, comm)

    return run


BROADCAST = {
    "binomial": _bc(binomial.broadcast_rounds),
    "scatter_allgather": _bc(scatter_allgather.broadcast_rounds),
    "mpi": mpi_native.broadcast,
}

FAMILIES = {
    "allreduce": ALLREDUCE,
    "allgather": ALLGATHER,
    "reduce_scatter": REDUCE_SCATTER,
    "broadcast": BROADCAST,
}

#: Public names per family, ``auto`` last.
ALGORITHMS = {family: tuple(table) + ("auto",) for family, table in FAMILIES.items()}
