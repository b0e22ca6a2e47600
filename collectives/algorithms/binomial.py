"""Binomial-tree broadcast: the set of ranks holding the data doubles every round.

In round k, each rank whose distance from the root (``(rank - root) mod P``)
is below ``2**k`` sends the whole buffer to the rank ``2**k`` further on.
``ceil(log2 P)`` rounds of ``n`` bytes: best for small messages.
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send

__all__ = ["broadcast_rounds"]


@lru_cache(maxsize=256)
def broadcast_rounds(rank: int, p: int, n: int, root: int) -> tuple[Round, ...]:
    """Binomial broadcast of ``n`` elements from ``root``."""
    v = (rank - root) % p
    rounds = []
    mask = 1
    while mask < p:
        if v < mask and v + mask < p:
            rounds.append(Round(sends=(Send((rank + mask) % p, 0, n),)))
        elif mask <= v < 2 * mask:
            rounds.append(Round(recvs=(Recv((rank - mask) % p, 0, n),)))
        else:
            rounds.append(Round())
        mask <<= 1
    return tuple(rounds)
