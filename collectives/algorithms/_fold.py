"""Folding a non-power-of-two rank count onto the largest power of two below it.

Following MPICH: with ``P = p2 + rem``, the even ranks below ``2 * rem`` are
*extras*.  Each hands its data to the odd rank just above it before the
power-of-two algorithm runs, and gets the result back after.  Survivors are
renumbered ``0 .. p2 - 1``: odd rank ``r < 2 * rem`` becomes ``r // 2``,
rank ``r >= 2 * rem`` becomes ``r - rem``.  Survivor ``i`` stands for the
original ranks ``first_rank(i) .. first_rank(i + 1) - 1``.
"""

from __future__ import annotations

from functools import lru_cache


def pow2_below(p: int) -> int:
    """Largest power of two ``<= p`` (for ``p >= 1``)."""
    return 1 << (p.bit_length() - 1)


def new_rank(rank: int, p: int) -> int:
    """Survivor number of ``rank``, or -1 if it is an extra."""
    rem = p - pow2_below(p)
    if rank < 2 * rem:
        return rank // 2 if rank % 2 else -1
    return rank - rem


def old_rank(new: int, p: int) -> int:
    """Original rank of survivor ``new``."""
    rem = p - pow2_below(p)
    return 2 * new + 1 if new < rem else new + rem


@lru_cache(maxsize=None)
def first_ranks(p: int) -> tuple[int, ...]:
    """``first_rank(i)`` for ``i = 0 .. p2``: survivor ``i`` covers ranks ``[f[i], f[i+1])``."""
    p2 = pow2_below(p)
    rem = p - p2
    return tuple(2 * i if i < rem else i + rem for i in range(p2)) + (p,)
