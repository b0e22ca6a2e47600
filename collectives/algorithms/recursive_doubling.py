"""Recursive doubling: in round k each rank exchanges with ``rank XOR 2**k``.

All-reduce swaps the whole vector every round: ``log2 P`` rounds of ``n``
bytes, the latency-optimal choice for small messages.  All-gather swaps
everything gathered so far, doubling it each round.  A non-power-of-two P is
folded onto the largest power of two below it (see :mod:`collectives.algorithms._fold`):
one extra round before and one after.
"""

from __future__ import annotations

from functools import lru_cache

from ._fold import first_ranks, new_rank, old_rank, pow2_below
from .schedule import Recv, Round, Send

__all__ = ["allreduce_rounds", "allgather_rounds"]


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int) -> tuple[Round, ...]:
    """Recursive-doubling all-reduce of ``n`` elements.

    Both partners reduce the same pair of vectors; the higher rank puts the
    incoming (lower rank's) operand first, so both compute ``low (op) high``
    and end with identical bits.
    """
    p2 = pow2_below(p)
    rem = p - p2
    me = new_rank(rank, p)
    rounds = []
    if rem:
        if rank < 2 * rem:
            rounds.append(
                Round(sends=(Send(rank + 1, 0, n),))
                if me < 0
                else Round(recvs=(Recv(rank - 1, 0, n, reduce=True, incoming_first=True),))
            )
        else:
            rounds.append(Round())
    mask = 1
    while mask < p2:
        if me >= 0:
            partner = old_rank(me ^ mask, p)
            rounds.append(
                Round(
                    (Send(partner, 0, n),),
                    (Recv(partner, 0, n, reduce=True, incoming_first=partner < rank),),
                )
            )
        else:
            rounds.append(Round())
        mask <<= 1
    if rem and rank < 2 * rem:
        rounds.append(
            Round(recvs=(Recv(rank + 1, 0, n),)) if me < 0 else Round(sends=(Send(rank - 1, 0, n),))
        )
    return tuple(rounds)


@lru_cache(maxsize=256)
def allgather_rounds(rank: int, p: int, offsets: tuple[int, ...]) -> tuple[Round, ...]:
    """Recursive-doubling all-gather; block ``r`` is ``work[offsets[r]:offsets[r+1]]``.

    Survivor ``i`` holds the blocks of ranks ``first[i] .. first[i+1]-1``;
    at each round a survivor group's blocks form one contiguous range.
    """
    p2 = pow2_below(p)
    rem = p - p2
    me = new_rank(rank, p)
    first = first_ranks(p)
    total = offsets[p]
    rounds = []
    if rem:
        if rank < 2 * rem:
            lo, hi = offsets[rank], offsets[rank + 1]
            rounds.append(
                Round(sends=(Send(rank + 1, lo, hi),))
                if me < 0
                else Round(recvs=(Recv(rank - 1, offsets[rank - 1], offsets[rank]),))
            )
        else:
            rounds.append(Round())
    mask = 1
    while mask < p2:
        if me >= 0:
            partner_new = me ^ mask
            mine = me & ~(mask - 1)
            theirs = partner_new & ~(mask - 1)
            rounds.append(
                Round(
                    (Send(old_rank(partner_new, p), offsets[first[mine]], offsets[first[mine + mask]]),),
                    (Recv(old_rank(partner_new, p), offsets[first[theirs]], offsets[first[theirs + mask]]),),
                )
            )
        else:
            rounds.append(Round())
        mask <<= 1
    if rem and rank < 2 * rem:
        rounds.append(
            Round(recvs=(Recv(rank + 1, 0, total),)) if me < 0 else Round(sends=(Send(rank - 1, 0, total),))
        )
    return tuple(rounds)
