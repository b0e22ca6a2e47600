"""The cost of one round of a schedule: where ranks sit, and what their messages, reductions
and copies cost on a measured profile (see :mod:`collectives.model.cost_model`)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..algorithms._fold import old_rank, pow2_below
from .profile import Profile


class Placement:
    """``p`` ranks in blocks of ``ranks_per_node`` consecutive ranks per node."""

    def __init__(self, p: int, ranks_per_node: int | None = None):
        if p < 1:
            raise ValueError(f"p must be >= 1, got {p}")
        self.p = p
        self.rpn = p if not ranks_per_node else max(1, min(int(ranks_per_node), p))
        self.nodes = -(-p // self.rpn)

    def key(self) -> tuple[int, int]:
        return self.p, self.rpn


@lru_cache(maxsize=4096)
def _crossing(rpn: int, src: bytes, dst: bytes) -> tuple[bool, bool, int]:
    """(any intra-node pair, any inter-node pair, most off-node senders of one node).

    ``src`` and ``dst`` are int64 rank arrays as bytes (hashable, for the cache).
    """
    s = np.frombuffer(src, np.int64) // rpn
    d = np.frombuffer(dst, np.int64) // rpn
    off = s != d
    if not off.any():
        return bool(len(s)), False, 0
    return bool((~off).any()), True, int(np.bincount(s[off]).max())


def pattern(place: Placement, src, dst) -> tuple[bool, bool, int]:
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if place.nodes == 1 or len(src) == 0:
        return bool(len(src)), False, 0
    return _crossing(place.rpn, src.tobytes(), dst.tobytes())


#: Buffers of a message's size each rank touches in a round that reduces
#: (send block, receive scratch, reduce destination) or only moves data
#: (send block, receive block): the working set of hot data.
REDUCING, MOVING = 3, 2


class Cost:
    """Message, reduce and copy costs of one profile on one placement.

    ``resident``: bytes the collective keeps on its fullest node (see
    :func:`.cost_model.footprint`); every cost per byte is taken at that working set.
    """

    def __init__(self, prof: Profile, place: Placement, resident: float = 0.0):
        self.prof = prof
        self.place = place
        self.o = prof.round_overhead
        self.resident = resident

    def msg(self, nbytes: float, pattern=(True, False, 0), duplex: bool = True, hot: int = 0) -> float:
        """Slowest message of a round whose pairs form ``pattern`` (see :func:`pattern`).

        ``duplex``: the ranks send and receive at once (the exchange cost).
        ``hot``: see :meth:`working_set`.
        """
        if nbytes <= 0:
            return 0.0
        intra, inter, flows = pattern
        t = self.link(False, duplex, nbytes, 1.0, hot) if intra else 0.0
        if inter:
            t = max(t, self.link(True, duplex, nbytes, flows, hot))
        return t

    def link(self, inter: bool, duplex: bool, nbytes: float, flows: float = 1.0, hot: int = 0) -> float:
        """One message of ``nbytes``: the exchange cost, or (``duplex`` False) the one-way cost.

        A one-way message is charged at most the exchange of its size: the
        exchange carries it and another at once.  Ping-pong's half round
        trip can measure more: on the dev VM (MPICH, P = 2) it was 1.2-1.5x
        the exchange at 2-3 MiB, in the cache-to-memory climb, and 0.7-0.95x
        at every other size, and the naive parameter server's one-way
        messages at 4 MiB, whose working set the model reads there, took
        no more than the exchange.
        """
        w = self.working_set(nbytes, hot)
        t = self.prof.link(inter, True)(nbytes, flows, w)
        if not duplex:
            t = min(t, self.prof.link(inter, False)(nbytes, flows, w))
        return t

    def working_set(self, nbytes: float, hot: int) -> float:
        """Node bytes a cost per byte of a ``nbytes`` message is taken at.

        Cold data (``hot=0``: last touched a whole call ago, or by the API's
        copy of the send buffer): the call's :attr:`resident` bytes.  Hot
        data (reduced or received in the round before: the ring's blocks
        after its first round, Rabenseifner's after its first halving, a
        parameter server's reduced vector, the tree's forwarded chunks):
        only what the node's ranks touch in the round, ``hot`` buffers of
        the message's size each (:data:`REDUCING` or :data:`MOVING`), if
        that is less.  (On the dev VM at P = 2 the 8 MiB all-reduces, whose
        40 MiB call outgrows the 32 MiB L3, ran 15-26 % faster than memory
        speed predicts: their later rounds run from cache.)
        """
        if not hot:
            return self.resident
        return min(self.resident, self.place.rpn * hot * nbytes)

    def red(self, nbytes: float, alone: bool = False, sent: bool = False) -> float:
        """Reducing ``nbytes``; ``alone``: while the node's other ranks wait (else all at once);
        ``sent``: into the range the rank has just sent (else into a buffer of its own)."""
        kernel = self.prof.reduce
        if alone and self.prof.reduce_alone is not None:
            kernel = self.prof.reduce_alone
        elif sent and self.prof.reduce_sent is not None:
            kernel = self.prof.reduce_sent
        return kernel(nbytes, 1.0, self.resident) if nbytes > 0 else 0.0

    def copy(self, nbytes: float) -> float:
        return self.prof.copy(nbytes, 1.0, self.resident) if nbytes > 0 else 0.0

    def step(self, nbytes: float, pattern, reduce: bool, duplex: bool = True, hot: bool = False,
             into_sent: bool = False) -> float:
        """One round in which every active rank moves ``nbytes`` (reducing them or not).

        ``duplex``: the busiest rank both sends and receives (most rounds);
        otherwise it only sends or only receives (folds, broadcast trees,
        rounds whose blocks are empty on one side).
        ``hot``: the data sent was touched in the round before (see
        :meth:`working_set`); reductions always read the working set.
        ``into_sent``: the reduction writes the range the round sends.
        """
        if nbytes <= 0:
            return 0.0
        touched = (REDUCING if reduce else MOVING) if hot else 0
        red = self.red(nbytes, sent=into_sent) if reduce else 0.0
        return self.o + self.msg(nbytes, pattern, duplex, touched) + red


# ---------------------------------------------------------------- patterns


def ring_pattern(place):
    return _ring_cached(*place.key())


def xor_pattern(place, mask):
    return _xor_cached(*place.key(), mask)


def fold_pattern(place):
    return _fold_cached(*place.key())


@lru_cache(maxsize=1024)
def _ring_cached(p, rpn):
    r = np.arange(p)
    return pattern(Placement(p, rpn), r, (r + 1) % p)


@lru_cache(maxsize=4096)
def _xor_cached(p, rpn, mask):
    """Survivors ``i`` and ``i ^ mask`` of the fold, in original ranks."""
    i = np.arange(pow2_below(p))
    old = np.array([old_rank(int(x), p) for x in i])
    return pattern(Placement(p, rpn), old, old[i ^ mask])


@lru_cache(maxsize=1024)
def _fold_cached(p, rpn):
    rem = p - pow2_below(p)
    return pattern(Placement(p, rpn), 2 * np.arange(rem), 2 * np.arange(rem) + 1)
