"""``algorithm="auto"``: a size and rank-count rule, until a measured model replaces it.

The thresholds follow the textbook crossovers (Thakur, Rabenseifner and
Gropp 2005) and MPICH's defaults; ``python -m collectives.bench`` shows
where they sit on a given machine.
"""

from __future__ import annotations

SMALL = 16 * 1024  # bytes: latency-bound below this
LARGE = 512 * 1024  # bytes: bandwidth-bound above this


def choose(family: str, nbytes: int, p: int) -> str:
    """The algorithm ``auto`` runs for ``nbytes`` (per rank's full vector) on ``p`` ranks."""
    if family == "allreduce":
        if nbytes <= SMALL or p < 4 and nbytes < LARGE:
            return "recursive_doubling"
        return "rabenseifner" if nbytes < LARGE else "ring"
    if family == "allgather":
        return "bruck" if nbytes <= SMALL else "ring"
    if family == "reduce_scatter":
        return "recursive_halving" if nbytes < LARGE else "ring"
    if family == "broadcast":
        return "binomial" if nbytes < LARGE or p < 4 else "scatter_allgather"
    raise KeyError(family)
