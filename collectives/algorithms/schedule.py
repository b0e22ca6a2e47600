"""Schedules: who sends which element range to whom in which round, as plain data.

A schedule is what one rank does in a collective, written as a tuple of
:class:`Round` objects.  Rounds are *global steps*: a message that rank ``a``
sends in round ``t`` is received by rank ``b`` in its round ``t``.  This makes
every schedule deadlock-free by construction (round ``t`` only waits for peers
that have finished round ``t - 1``) and lets the tests check a whole
collective without MPI: :func:`check_matched` pairs every send with its
receive, and :func:`simulate` runs all ranks' schedules on numpy arrays.

Offsets are element offsets into the rank's *work buffer*, whose meaning each
collective defines (the result buffer for all-reduce and all-gather, a copy of
the input for reduce-scatter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["Send", "Recv", "Round", "partition", "check_matched", "simulate"]


@dataclass(frozen=True)
class Send:
    """Send ``work[lo:hi]`` to ``peer``; ``tag`` tells apart messages of one round."""

    peer: int
    lo: int
    hi: int
    tag: int = 0

    @property
    def count(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Recv:
    """Receive from ``peer`` into ``work[lo:hi]``, combining with ``op`` if ``reduce``.

    With ``incoming_first`` the result is ``incoming (op) work`` rather than
    ``work (op) incoming``; two partners that reduce the same pair use it to
    get the same bits (it matters only for ``min``/``max`` ties).
    """

    peer: int
    lo: int
    hi: int
    tag: int = 0
    reduce: bool = False
    incoming_first: bool = False

    @property
    def count(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Round:
    """One global step: post every send and receive, then complete them all.

    Sends read the work buffer as it was at the start of the round; receives
    are applied (copied, or reduced in order) once they arrive.  A range that
    is sent in a round must not also be written by a copy-receive of the
    same round.
    """

    sends: tuple[Send, ...] = ()
    recvs: tuple[Recv, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sends or self.recvs)


def partition(n: int, parts: int) -> tuple[int, ...]:
    """Offsets of ``parts`` nearly equal blocks of ``n`` elements.

    Block ``i`` is ``[offsets[i], offsets[i + 1])``; the first ``n % parts``
    blocks hold one element more.  Blocks may be empty when ``n < parts``.

    >>> partition(7, 3)
    (0, 3, 5, 7)
    """
    q, r = divmod(n, parts)
    out = [0]
    for i in range(parts):
        out.append(out[-1] + q + (1 if i < r else 0))
    return tuple(out)


def check_matched(schedules: Sequence[Sequence[Round]]) -> None:
    """Raise ``AssertionError`` unless every send meets one receive of equal size.

    The checks are explicit raises, not ``assert``, so they hold under ``python -O``.

    ``schedules[r]`` is rank ``r``'s schedule.  A send from ``a`` to ``b`` in
    round ``t`` with tag ``g`` must match exactly one receive by ``b`` from
    ``a`` in round ``t`` with tag ``g``, and the two must cover the same
    number of elements.
    """
    sends: dict[tuple[int, int, int, int], int] = {}
    recvs: dict[tuple[int, int, int, int], int] = {}
    for rank, rounds in enumerate(schedules):
        for t, rnd in enumerate(rounds):
            for s in rnd.sends:
                key = (rank, s.peer, t, s.tag)
                if key in sends:
                    raise AssertionError(f"duplicate send {key}")
                if s.peer == rank:
                    raise AssertionError(f"rank {rank} sends to itself in round {t}")
                sends[key] = s.count
            for v in rnd.recvs:
                key = (v.peer, rank, t, v.tag)
                if key in recvs:
                    raise AssertionError(f"duplicate receive {key}")
                recvs[key] = v.count
    if sends.keys() != recvs.keys():
        raise AssertionError(
            f"unmatched: sends only {sorted(sends.keys() - recvs.keys())[:5]}, "
            f"receives only {sorted(recvs.keys() - sends.keys())[:5]}"
        )
    for key, count in sends.items():
        if recvs[key] != count:
            raise AssertionError(f"size mismatch {key}: send {count}, receive {recvs[key]}")


def simulate(
    schedules: Sequence[Sequence[Round]],
    works: list[np.ndarray],
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.add,
) -> list[np.ndarray]:
    """Run every rank's schedule on in-memory arrays, round by round, without MPI.

    ``works[r]`` is rank ``r``'s work buffer and is updated in place; it is
    also returned.  Receives that reduce apply ``combine(work_slice, incoming)``.
    """
    check_matched(schedules)
    n_rounds = max((len(s) for s in schedules), default=0)
    for t in range(n_rounds):
        inbox = {}
        for rank, rounds in enumerate(schedules):
            if t < len(rounds):
                for s in rounds[t].sends:
                    inbox[(rank, s.peer, s.tag)] = works[rank][s.lo : s.hi].copy()
        for rank, rounds in enumerate(schedules):
            if t < len(rounds):
                for v in rounds[t].recvs:
                    data = inbox[(v.peer, rank, v.tag)]
                    view = works[rank][v.lo : v.hi]
                    if not v.reduce:
                        view[...] = data
                    elif v.incoming_first:
                        view[...] = combine(data, view)
                    else:
                        view[...] = combine(view, data)
    return works
