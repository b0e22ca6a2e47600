"""Sharded parameter server: rank i serves slice i of the vector.

Round 0: every rank sends each owner that owner's slice; owners reduce the
``P - 1`` incoming slices in rank order.  Round 1: every owner sends its
reduced slice to everyone.  The same ``2(P-1)/P * n`` bytes per rank as the
ring, in two rounds instead of ``2(P-1)``, at the price of ``P - 1``
simultaneous messages in and out of every rank (fan-in ``P - 1``).
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send, partition

__all__ = ["allreduce_rounds"]


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int) -> tuple[Round, ...]:
    """Scatter-reduce to the owners, then all-to-all of the reduced slices."""
    if p == 1:
        return ()
    off = partition(n, p)
    others = [r for r in range(p) if r != rank]
    mine = (off[rank], off[rank + 1])
    return (
        Round(
            tuple(Send(r, off[r], off[r + 1]) for r in others),
            tuple(Recv(r, *mine, reduce=True) for r in others),
        ),
        Round(
            tuple(Send(r, *mine) for r in others),
            tuple(Recv(r, off[r], off[r + 1]) for r in others),
        ),
    )
