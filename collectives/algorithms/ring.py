"""Ring: P - 1 steps around a ring, each rank passing one block to its right neighbour.

Reduce-scatter moves partial sums around the ring until rank ``r`` holds the
full reduction of block ``r``; all-gather then circulates the finished
blocks.  All-reduce is the two back to back: ``2(P-1)`` messages per rank and
``2(P-1)/P * n`` bytes, the bandwidth-optimal schedule.  Large blocks are cut
into segments sent as separate messages, so a segment's reduction overlaps
the transfer of the next.
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send, partition

__all__ = ["reduce_scatter_rounds", "allgather_rounds", "allreduce_rounds"]


def _pieces(lo: int, hi: int, segment: int) -> list[tuple[int, int]]:
    if segment <= 0 or hi - lo <= segment:
        return [(lo, hi)]
    return [(a, min(a + segment, hi)) for a in range(lo, hi, segment)]


def _step(rank, p, offsets, send_block, recv_block, reduce, segment):
    right, left = (rank + 1) % p, (rank - 1) % p
    out = _pieces(offsets[send_block], offsets[send_block + 1], segment)
    inc = _pieces(offsets[recv_block], offsets[recv_block + 1], segment)
    return Round(
        tuple(Send(right, lo, hi, tag) for tag, (lo, hi) in enumerate(out)),
        tuple(Recv(left, lo, hi, tag, reduce) for tag, (lo, hi) in enumerate(inc)),
    )


@lru_cache(maxsize=256)
def reduce_scatter_rounds(
    rank: int, p: int, offsets: tuple[int, ...], segment: int = 0
) -> tuple[Round, ...]:
    """Ring reduce-scatter: afterwards ``work[offsets[rank]:offsets[rank+1]]`` is reduced.

    In step ``s`` rank ``r`` sends block ``r - s - 1`` and reduces block
    ``r - s - 2`` (mod P) from its left neighbour.  ``segment`` (elements,
    0 = whole blocks) splits each block into several messages.
    """
    return tuple(
        _step(rank, p, offsets, (rank - s - 1) % p, (rank - s - 2) % p, True, segment)
        for s in range(p - 1)
    )


@lru_cache(maxsize=256)
def allgather_rounds(
    rank: int, p: int, offsets: tuple[int, ...], segment: int = 0
) -> tuple[Round, ...]:
    """Ring all-gather: block ``r`` starts on rank ``r``; afterwards all ranks hold all.

    In step ``s`` rank ``r`` sends block ``r - s`` and receives block
    ``r - s - 1`` (mod P).
    """
    return tuple(
        _step(rank, p, offsets, (rank - s) % p, (rank - s - 1) % p, False, segment)
        for s in range(p - 1)
    )


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int, segment: int = 0) -> tuple[Round, ...]:
    """Ring all-reduce of ``n`` elements: reduce-scatter then all-gather, ``2(P-1)`` rounds."""
    offsets = partition(n, p)
    return reduce_scatter_rounds(rank, p, offsets, segment) + allgather_rounds(
        rank, p, offsets, segment
    )
