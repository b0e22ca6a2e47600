"""Scatter + all-gather broadcast (van de Geijn): binomial scatter, then a ring all-gather.

The root's buffer is cut into P blocks; a binomial tree scatters them so
that the rank at distance ``v`` from the root ends with block ``v``, then a
ring all-gather circulates the blocks.  About ``2n`` bytes cross each link
instead of ``n log2 P``, which wins for large messages.
"""

from __future__ import annotations

from functools import lru_cache

from . import ring
from .schedule import Recv, Round, Send, partition

__all__ = ["broadcast_rounds"]


def _relabel(rounds, shift: int, p: int) -> tuple[Round, ...]:
    return tuple(
        Round(
            tuple(Send((s.peer + shift) % p, s.lo, s.hi, s.tag) for s in r.sends),
            tuple(Recv((v.peer + shift) % p, v.lo, v.hi, v.tag, v.reduce) for v in r.recvs),
        )
        for r in rounds
    )


@lru_cache(maxsize=256)
def broadcast_rounds(rank: int, p: int, n: int, root: int) -> tuple[Round, ...]:
    """Scatter-allgather broadcast of ``n`` elements from ``root``.

    Blocks are numbered by distance from the root: block ``v`` is
    ``partition(n, P)[v:v+2]`` and belongs, after the scatter, to rank
    ``(root + v) mod P``.  The schedule is built on distances and relabelled.
    """
    off = partition(n, p)
    v = (rank - root) % p
    rounds = []
    top = 1
    while top < p:
        top <<= 1
    mask = top >> 1
    while mask >= 1:  # v holds blocks [v, v + 2*mask) when v % (2*mask) == 0
        if v % (2 * mask) == 0 and v + mask < p:
            hi = off[min(v + 2 * mask, p)]
            rounds.append(Round(sends=(Send(v + mask, off[v + mask], hi),)))
        elif v % (2 * mask) == mask:
            hi = off[min(v + mask, p)]
            rounds.append(Round(recvs=(Recv(v - mask, off[v], hi),)))
        else:
            rounds.append(Round())
        mask >>= 1
    rounds.extend(ring.allgather_rounds(v, p, off))
    return _relabel(rounds, root, p)
