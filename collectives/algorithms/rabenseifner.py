"""Rabenseifner: recursive-halving reduce-scatter, then recursive-doubling all-gather.

Each halving round swaps half of what a rank is still responsible for, so
the reduce-scatter moves ``(P-1)/P * n`` bytes in ``log2 P`` rounds; the
all-gather retraces the same pairs in reverse.  All-reduce costs
``2 log2 P`` latencies and ``2(P-1)/P * n`` bytes, which wins over the ring
for medium messages.  A non-power-of-two P is folded (see
:mod:`collectives.algorithms._fold`): the extras' vectors are reduced into their
partners first and the result is handed back at the end.
"""

from __future__ import annotations

from functools import lru_cache

from ._fold import first_ranks, new_rank, old_rank, pow2_below
from .schedule import Recv, Round, Send, partition

__all__ = ["reduce_scatter_rounds", "allreduce_rounds"]


def _fold_in(rank: int, p: int, n: int) -> list[Round]:
    rem = p - pow2_below(p)
    if not rem:
        return []
    if rank >= 2 * rem:
        return [Round()]
    if rank % 2 == 0:
        return [Round(sends=(Send(rank + 1, 0, n),))]
    return [Round(recvs=(Recv(rank - 1, 0, n, reduce=True, incoming_first=True),))]


def _halving(rank: int, p: int, bounds: tuple[int, ...]) -> list[Round]:
    """Survivor ``i`` ends owning ``[bounds[i], bounds[i+1])``, fully reduced."""
    p2 = pow2_below(p)
    me = new_rank(rank, p)
    rounds = []
    mask = p2 // 2
    while mask >= 1:
        if me < 0:
            rounds.append(Round())
        else:
            partner = me ^ mask
            group = me & ~(2 * mask - 1)
            lower = (bounds[group], bounds[group + mask])
            upper = (bounds[group + mask], bounds[group + 2 * mask])
            keep, give = (lower, upper) if me < partner else (upper, lower)
            peer = old_rank(partner, p)
            rounds.append(
                Round((Send(peer, *give),), (Recv(peer, *keep, reduce=True),))
            )
        mask //= 2
    return rounds


def _doubling(rank: int, p: int, bounds: tuple[int, ...]) -> list[Round]:
    """Inverse of :func:`_halving`: afterwards survivors hold ``[bounds[0], bounds[p2])``."""
    p2 = pow2_below(p)
    me = new_rank(rank, p)
    rounds = []
    mask = 1
    while mask < p2:
        if me < 0:
            rounds.append(Round())
        else:
            partner = me ^ mask
            mine = me & ~(mask - 1)
            theirs = partner & ~(mask - 1)
            peer = old_rank(partner, p)
            rounds.append(
                Round(
                    (Send(peer, bounds[mine], bounds[mine + mask]),),
                    (Recv(peer, bounds[theirs], bounds[theirs + mask]),),
                )
            )
        mask *= 2
    return rounds


@lru_cache(maxsize=256)
def reduce_scatter_rounds(rank: int, p: int, offsets: tuple[int, ...]) -> tuple[Round, ...]:
    """Recursive-halving reduce-scatter: rank ``r`` ends with block ``r`` reduced.

    Survivor ``i`` finishes owning the blocks of ranks ``first[i] ..
    first[i+1]-1``; a survivor standing for an extra then sends it its block.
    """
    p2 = pow2_below(p)
    rem = p - p2
    first = first_ranks(p)
    bounds = tuple(offsets[first[i]] for i in range(p2 + 1))
    rounds = _fold_in(rank, p, offsets[p]) + _halving(rank, p, bounds)
    if rem and rank < 2 * rem:
        block = (offsets[rank - 1], offsets[rank]) if rank % 2 else (offsets[rank], offsets[rank + 1])
        rounds.append(
            Round(sends=(Send(rank - 1, *block),)) if rank % 2 else Round(recvs=(Recv(rank + 1, *block),))
        )
    return tuple(rounds)


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int) -> tuple[Round, ...]:
    """Rabenseifner all-reduce of ``n`` elements, any P.

    The vector is cut into ``p2`` blocks (``p2`` = largest power of two
    <= P), one per survivor, so the work is balanced over the ranks that take
    part in the halving and doubling.
    """
    p2 = pow2_below(p)
    rem = p - p2
    bounds = partition(n, p2)
    rounds = _fold_in(rank, p, n) + _halving(rank, p, bounds) + _doubling(rank, p, bounds)
    if rem and rank < 2 * rem:
        rounds.append(
            Round(sends=(Send(rank - 1, 0, n),)) if rank % 2 else Round(recvs=(Recv(rank + 1, 0, n),))
        )
    return tuple(rounds)
