"""Naive parameter server: everyone sends its vector to rank 0, which reduces and sends back.

Two rounds.  The root receives and sends ``(P-1) * n`` bytes and does all
``(P-1) * n`` reductions, in rank order, so its link and its memory are the
bottleneck: the baseline every other algorithm is measured against.
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send

__all__ = ["allreduce_rounds"]

ROOT = 0


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int) -> tuple[Round, ...]:
    """Gather-to-root with reduction (round 0), then broadcast from the root (round 1)."""
    if p == 1:
        return ()
    if rank == ROOT:
        others = [r for r in range(p) if r != ROOT]
        return (
            Round(recvs=tuple(Recv(r, 0, n, reduce=True) for r in others)),
            Round(sends=tuple(Send(r, 0, n) for r in others)),
        )
    return (Round(sends=(Send(ROOT, 0, n),)), Round(recvs=(Recv(ROOT, 0, n),)))
