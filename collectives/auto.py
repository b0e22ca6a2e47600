"""``algorithm="auto"``: a size and rank-count rule, until a measured model replaces it.

The thresholds follow the textbook crossovers (Thakur, Rabenseifner and
Gropp 2005), checked against ``python -m collectives.bench`` at P=2 (2-core
dev machine, MPICH) and P=16 (16-core GPU box, Open MPI): there
Rabenseifner beats the ring up to 2 MiB and the ring wins from 4 MiB.
"""

from __future__ import annotations

SMALL = 16 * 1024  # bytes: latency-bound below this
LARGE = 512 * 1024  # bytes: bandwidth-bound above this
RING = 4 << 20  # bytes: all-reduce switches from Rabenseifner to the ring


def choose(family: str, nbytes: int, p: int) -> str:
    """The algorithm ``auto`` runs for ``nbytes`` (per rank's full vector) on ``p`` ranks."""
    if family == "allreduce":
        if nbytes <= SMALL or p < 4 and nbytes < LARGE:
            return "recursive_doubling"
        return "rabenseifner" if nbytes < RING else "ring"
    if family == "allgather":
        return "bruck" if nbytes <= SMALL else "ring"
    if family == "reduce_scatter":
        return "recursive_halving" if nbytes < LARGE else "ring"
    if family == "broadcast":
        return "binomial" if nbytes < LARGE or p < 4 else "scatter_allgather"
    raise KeyError(family)
