"""Bruck all-gather: ``ceil(log2 P)`` rounds for any P, on a rotated buffer.

Rank ``r`` keeps its blocks in the order ``r, r+1, ..., r-1`` (mod P).  In
round k it sends the first ``min(2**k, P - 2**k)`` blocks it holds to rank
``r - 2**k`` and appends what it receives from ``r + 2**k``.  A final local
rotation puts the blocks in rank order.
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send

__all__ = ["rotated_offsets", "allgather_rounds"]


@lru_cache(maxsize=256)
def rotated_offsets(rank: int, p: int, offsets: tuple[int, ...]) -> tuple[int, ...]:
    """Offsets of blocks ``rank, rank+1, ...`` (mod P) in the rotated buffer."""
    sizes = [offsets[(rank + i) % p + 1] - offsets[(rank + i) % p] for i in range(p)]
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return tuple(out)


@lru_cache(maxsize=256)
def allgather_rounds(rank: int, p: int, offsets: tuple[int, ...]) -> tuple[Round, ...]:
    """Rounds on the rotated buffer (see :func:`rotated_offsets`)."""
    mine = rotated_offsets(rank, p, offsets)
    rounds = []
    dist = 1
    while dist < p:
        cnt = min(dist, p - dist)
        dst, src = (rank - dist) % p, (rank + dist) % p
        rounds.append(
            Round((Send(dst, 0, mine[cnt]),), (Recv(src, mine[dist], mine[dist + cnt]),))
        )
        dist *= 2
    return tuple(rounds)
