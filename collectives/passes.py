"""Measurements in passes, and measurements interleaved pass by pass.

A shared machine (a VM beside other tenants, a node beside other jobs)
drifts.  On the dev VM, memory-bound work slows by 25 % for spells of about
0.3 s, and on a busy day by up to 80 % for spells of several seconds to tens
of seconds.  Two defences, used by :mod:`collectives.bench` and
:mod:`collectives.alphabeta`:

- Each size's samples are split over several *passes* through the sizes
  (:func:`visits`), so a slow spell hits one pass of a size rather than all
  of its samples.
- Measurements that will be compared with each other run *interleaved*, one
  pass of each in turn (:func:`interleave`): ``alphabeta --predict`` runs
  the profile's measurements and the bench its predictions are checked
  against this way, so both sample the same spells.  Measured one after the
  other, a profile taken in a fast spell and a bench in a slow one differed
  by 20-60 % at sizes the model gets within 10 % when both share a spell.

A *pass generator* does one pass per step: it yields after each pass
through its sizes, and returns its result (``StopIteration.value``) after
the last.  Its passes contain collective calls, so every rank must step it
alike, as :func:`drain` and :func:`interleave` do.
"""

from __future__ import annotations

from typing import Callable, Generator, Iterable, Sequence

__all__ = ["visits", "share", "drain", "interleave"]


def visits(plan: Sequence[int], passes: int, warmup: int):
    """Every size of ``plan``, ``passes`` times in order: yields one list per pass.

    Each list holds ``(n, warm, last)`` for every size of the pass:
    ``warm``, the untimed calls before this visit's timed ones (``warmup``
    in the first pass, at most one after); ``last``, whether this is the
    size's final visit.  Each visit times :func:`share` of the size's samples.
    """
    for i in range(passes):
        warm = warmup if i == 0 else min(warmup, 1)
        yield [(n, warm, i == passes - 1) for n in plan]


def share(total: int, passes: int) -> int:
    """Samples one pass takes of ``total``: ``ceil(total / passes)``."""
    return -(-total // passes)


def drain(gen: Generator):
    """Run a pass generator through all its passes; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def interleave(gens: Iterable[Generator], after_pass: Callable[[str], None] | None = None) -> list:
    """Step every pass generator in turn, one pass each, until all are done.

    Generators with fewer passes drop out when they finish.  Returns their
    results, in the order given.  ``after_pass``, if given, is called with
    ``"pass k"`` after the ``k``-th turn through the generators.
    """
    gens = list(gens)
    results: list = [None] * len(gens)
    live = list(range(len(gens)))
    turn = 0
    while live:
        for i in list(live):
            try:
                next(gens[i])
            except StopIteration as stop:
                results[i] = stop.value
                live.remove(i)
        turn += 1
        if after_pass is not None and live:
            after_pass(f"pass {turn}")
    return results
