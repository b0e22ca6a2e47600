"""Predicted time of every hand-written collective from a measured :class:`~collectives.model.profile.Profile`.

The model is the textbook one (Hockney, as in Thakur, Rabenseifner and
Gropp 2005), made to follow *our* schedules round by round so that it can
be checked against them and against the clock:

- A collective is a sequence of global rounds (see :mod:`collectives.algorithms.schedule`);
  its time is the sum over rounds of the busiest rank's time in that round,
  plus the algorithm's software overhead per call (:meth:`Profile.overhead`)
  and the API's local copy of the send buffer.
- A rank's round costs ``round_overhead`` plus its messages.  Its receives
  arrive one after another (``L(b) = alpha + beta*b`` each) and each
  reducing receive then costs ``gamma*b`` more: the receiving process does
  the copy and the reduction in turn.  (With no asynchronous progress, as
  in MPICH and Open MPI by default, a large message moves only while its
  receiver sits in an MPI call, so the engine's reduce-while-the-next-
  message-is-in-flight does not overlap much on shared memory; the model
  does not pretend it does.)  Sends go out concurrently with the receives
  (full duplex) and one after another among themselves.  Reductions cost
  what they cost with every rank of the node reducing at once, except the
  naive parameter server's root's, which run while the other ranks wait
  (``Profile.reduce_alone``), and into a buffer of the rank's own, except
  recursive doubling's, which reduce into the range just sent: the peer's
  core has just read it, so every line written must first be taken back
  (``Profile.reduce_sent``).
- Ranks are placed in blocks of ``ranks_per_node`` consecutive ranks.  A
  round whose pattern joins two nodes is charged the inter-node link, and
  when ``f`` ranks of one node send off the node at once they share its
  network port: ``alpha + f*beta*b``.
- Costs are piecewise (:mod:`collectives.model.hockney`): a message's alpha is
  that of the regime its size falls in, and every cost per byte (beta,
  gamma, the copy) that of the regime the collective's working set falls
  in (:func:`footprint`): a 4 MiB block of an 8 MiB all-reduce moves at the
  speed of the cache level or memory that holds 40 MiB, not 4.  The
  exception is the tree's pipeline: a chunk is forwarded right after it
  arrives or is reduced, so its messages move at their own size's speed
  (only its reductions read the cold vector).

A rank that both sends and receives in a round pays the exchange's cost
(``Profile.intra_exchange``), one that only sends or only receives the
one-way cost.  With fewer elements than ranks some blocks are empty, and
the ring, the fans of the sharded parameter server and the halves of
Rabenseifner and recursive halving then move data one way in some rounds
(:func:`_duplex_blocks`, :func:`_pair_moves`); so do the double binary
tree's ranks while its pipeline fills and drains.

Non-power-of-two P: recursive doubling, Rabenseifner and the recursive
all-gather pay the MPICH fold (one extra round of ``n`` bytes before, one
after); Bruck pays a last partial round; the ring and the trees pay nothing
extra.  Pipelining: the double binary tree's chunks (``C + 2H - 1`` rounds,
every round charged for its busiest rank across both trees, so the fill and
drain of the pipeline are counted) and the ring's optional segments (more
messages of fewer bytes per round).

``predict(family, "mpi", ...)`` is not defined: the library's own algorithm is
its business.  :func:`predictable` lists the names that are.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..runtime import registry
from ..algorithms._fold import first_ranks, old_rank, pow2_below
from ..algorithms.double_binary_tree import _shape, trees
from .profile import Profile
from ..algorithms.schedule import partition

__all__ = ["predict", "predictable", "best", "footprint", "scratch_elements", "Placement"]


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


def _pattern(place: Placement, src, dst) -> tuple[bool, bool, int]:
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if place.nodes == 1 or len(src) == 0:
        return bool(len(src)), False, 0
    return _crossing(place.rpn, src.tobytes(), dst.tobytes())


#: Buffers of a message's size each rank touches in a round that reduces
#: (send block, receive scratch, reduce destination) or only moves data
#: (send block, receive block): the working set of hot data.
REDUCING, MOVING = 3, 2


class _Cost:
    """Message, reduce and copy costs of one profile on one placement.

    ``resident``: bytes the collective keeps on its fullest node (see
    :func:`footprint`); every cost per byte is taken at that working set.
    """

    def __init__(self, prof: Profile, place: Placement, resident: float = 0.0):
        self.prof = prof
        self.place = place
        self.o = prof.round_overhead
        self.resident = resident

    def msg(self, nbytes: float, pattern=(True, False, 0), duplex: bool = True, hot: int = 0) -> float:
        """Slowest message of a round whose pairs form ``pattern`` (see :func:`_pattern`).

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


def _ring_pattern(place):
    return _ring_cached(*place.key())


def _xor_pattern(place, mask):
    return _xor_cached(*place.key(), mask)


def _fold_pattern(place):
    return _fold_cached(*place.key())


@lru_cache(maxsize=1024)
def _ring_cached(p, rpn):
    r = np.arange(p)
    return _pattern(Placement(p, rpn), r, (r + 1) % p)


@lru_cache(maxsize=4096)
def _xor_cached(p, rpn, mask):
    """Survivors ``i`` and ``i ^ mask`` of the fold, in original ranks."""
    i = np.arange(pow2_below(p))
    old = np.array([old_rank(int(x), p) for x in i])
    return _pattern(Placement(p, rpn), old, old[i ^ mask])


@lru_cache(maxsize=1024)
def _fold_cached(p, rpn):
    rem = p - pow2_below(p)
    return _pattern(Placement(p, rpn), 2 * np.arange(rem), 2 * np.arange(rem) + 1)


def _max_range(bounds: np.ndarray, mask: int) -> int:
    """Largest ``bounds[g+mask] - bounds[g]`` over groups ``g`` aligned to ``mask``."""
    g = np.arange(0, len(bounds) - 1, mask)
    return int(np.max(bounds[np.minimum(g + mask, len(bounds) - 1)] - bounds[g]))


# ---------------------------------------------------------------- all-reduce


def _ar_ring(c: _Cost, n: int, item: int) -> float:
    p = c.place.p
    if p == 1:
        return 0.0
    block = -(-n // p)
    pat = _ring_pattern(c.place)
    seg = registry.RING_SEGMENT_BYTES // item if registry.RING_SEGMENT_BYTES else 0
    b = block * item
    duplex = _duplex_blocks(n)
    if seg <= 0 or block <= seg:  # every block after the first was reduced or received just before
        return (c.step(b, pat, True, duplex) + (p - 2) * c.step(b, pat, True, duplex, hot=True)
                + (p - 1) * c.step(b, pat, False, duplex, hot=True))
    k = -(-block // seg)
    piece = seg * item
    cold, reducing, moving = (c.msg(piece, pat, hot=h) for h in (0, REDUCING, MOVING))
    return 2 * (p - 1) * c.o + k * ((p - 1) * c.red(piece) + cold + (p - 2) * reducing
                                    + (p - 1) * moving)


def _duplex_blocks(n: int) -> bool:
    """Whether a ring's or fan's round over ``partition(n, p)`` has a rank sending and receiving.

    Blocks are empty when there are fewer elements than ranks; with one
    element only one block holds data, so every round moves it one way
    (the ring's round ``j`` has rank ``j + 1`` receive block 0 and send
    block 1, both non-empty from two elements on).
    """
    return n >= 2


def _fold_rounds(c: _Cost, nbytes_in: float, nbytes_out: float, reduce: bool) -> float:
    if c.place.p == pow2_below(c.place.p):
        return 0.0
    pat = _fold_pattern(c.place)  # the result goes back hot
    return c.step(nbytes_in, pat, reduce, False) + c.step(nbytes_out, pat, False, False, hot=True)


def _ar_recursive_doubling(c: _Cost, n: int, item: int) -> float:
    p2 = pow2_below(c.place.p)
    t = _fold_rounds(c, n * item, n * item, True)
    mask = 1
    while mask < p2:  # each round sends what the round before reduced (the first: the fold's)
        t += c.step(n * item, _xor_pattern(c.place, mask), True, hot=mask > 1 or p2 < c.place.p,
                    into_sent=True)  # and reduces into what it sent
        mask <<= 1
    return t


def _pair_moves(bounds: np.ndarray, mask: int) -> set[tuple[int, bool]]:
    """``(elements received, also sends)`` of every rank in a halving or doubling round at ``mask``.

    Partners hold the two halves ``L``, ``U`` of a group of ``2 * mask``
    survivor blocks; in halving each keeps one half and sends the other, in
    doubling each sends its half and receives the other, so either way one
    receives ``L`` while sending ``U`` and the other the reverse.  A half is
    empty when there are fewer elements than blocks: then its rank only
    receives, at the one-way cost.
    """
    last = len(bounds) - 1
    g = np.arange(0, last, 2 * mask)
    lo = bounds[np.minimum(g + mask, last)] - bounds[g]
    hi = bounds[np.minimum(g + 2 * mask, last)] - bounds[np.minimum(g + mask, last)]
    pairs = zip(np.concatenate([lo, hi]).tolist(), np.concatenate([hi > 0, lo > 0]).tolist())
    return {(int(b), bool(d)) for b, d in pairs if b > 0}


def _halving_doubling(c: _Cost, bounds: np.ndarray, item: int) -> tuple[float, float]:
    """Recursive halving (reducing) and doubling over survivor block ``bounds``.

    Every round but the first halving sends what the round before reduced or
    received (the first too after a fold).  A round costs its busiest rank
    (see :func:`_pair_moves`).
    """
    p2 = len(bounds) - 1
    folded = p2 < c.place.p
    down = up = 0.0
    mask = p2 // 2
    while mask >= 1:
        pat = _xor_pattern(c.place, mask)
        moves = _pair_moves(bounds, mask)
        hot = folded or mask < p2 // 2
        down += max((c.step(b * item, pat, True, d, hot=hot) for b, d in moves), default=0.0)
        up += max((c.step(b * item, pat, False, d, hot=True) for b, d in moves), default=0.0)
        mask //= 2
    return down, up


def _ar_rabenseifner(c: _Cost, n: int, item: int) -> float:
    p2 = pow2_below(c.place.p)
    down, up = _halving_doubling(c, np.array(partition(n, p2)), item)
    return _fold_rounds(c, n * item, n * item, True) + down + up


def _fan(c: _Cost, nbytes: float, flows: int = 1, duplex: bool = False, hot: int = 0) -> float:
    """One rank moving a message of ``nbytes`` with every other rank, one after another.

    ``flows`` ranks of a node talk off the node at once (they share its
    port); ``duplex``: the rank sends as much as it receives meanwhile;
    ``hot``: see :meth:`_Cost.working_set`.
    """
    place = c.place
    local = min(place.rpn, place.p) - 1
    t = local * c.link(False, duplex, nbytes, 1.0, hot)
    if place.p - 1 > local:
        t += (place.p - 1 - local) * c.link(True, duplex, nbytes, flows, hot)
    return t


def _ar_naive_ps(c: _Cost, n: int, item: int) -> float:
    p = c.place.p
    if p == 1:
        return 0.0
    b = n * item  # the root only receives, reduces while the rest wait, then sends the result
    return 2 * c.o + _fan(c, b) + (p - 1) * c.red(b, alone=True) + _fan(c, b, hot=MOVING)


def _ar_sharded_ps(c: _Cost, n: int, item: int) -> float:
    p = c.place.p
    if p == 1:
        return 0.0
    b = -(-n // p) * item  # every rank sends and receives, all at once; then its reduced shard
    rpn, duplex = c.place.rpn, _duplex_blocks(n)
    return 2 * c.o + _fan(c, b, rpn, duplex) + (p - 1) * c.red(b) + _fan(c, b, rpn, duplex, MOVING)


@lru_cache(maxsize=256)
def _tree_tables(p: int, rpn: int):
    """Per tree ``(kids padded with -1, has_parent, height, depth, top)``, and the link pattern."""
    tabs = []
    crossing_per_node = np.zeros(-(-p // rpn), int)
    any_intra = any_inter = False
    for tree in trees(p):
        height, depth, root = _shape(tree)
        kids = np.full((p, 2), -1)
        for r, (parent, ks) in enumerate(tree):
            kids[r, : len(ks)] = ks
            if parent >= 0:
                if parent // rpn != r // rpn:
                    any_inter = True
                    crossing_per_node[r // rpn] += 1
                else:
                    any_intra = True
        has_parent = np.array([tree[r][0] >= 0 for r in range(p)])
        tabs.append((kids, has_parent, np.array(height), np.array(depth), height[root]))
    return tabs, (any_intra, any_inter, int(crossing_per_node.max()) if any_inter else 0)


def _ar_double_binary_tree(c: _Cost, n: int, item: int) -> float:
    """Walks the ``C + 2H - 1`` global rounds, counting each rank's messages per round.

    Chunk ``c`` leaves a node of height ``h`` upwards in round ``c + h`` and
    goes down from depth ``d`` in round ``c + H + d`` (see
    :mod:`collectives.algorithms.double_binary_tree`); a rank's round costs its
    receives (and reductions) or its sends, whichever is longer, each
    message at the exchange's cost if the rank both sends and receives in
    the round, else at the one-way cost (the pipeline's fill and drain).
    """
    p = c.place.p
    if p == 1:
        return 0.0
    tabs, pattern = _tree_tables(*c.place.key())
    halves = partition(n, 2)
    sizes = [halves[1] - halves[0], halves[2] - halves[1]]
    chunk = registry.TREE_CHUNK_BYTES // item if registry.TREE_CHUNK_BYTES > 0 else 0
    steps = [min(max(chunk, 1), sz) if chunk > 0 else sz for sz in sizes]
    counts = [-(-sz // st) if sz else 0 for sz, st in zip(sizes, steps)]
    rounds = max(cnt + 2 * tab[4] - 1 for cnt, tab in zip(counts, tabs) if cnt)
    s = np.arange(rounds)[:, None]  # rounds x ranks
    # seconds of arriving messages (and their reductions) and of leaving ones, at the
    # exchange's cost [0] and the one-way cost [1]; and how many of each a rank has
    recv = np.zeros((2, rounds, p))
    send = np.zeros((2, rounds, p))
    n_recv = np.zeros((rounds, p))
    n_send = np.zeros((rounds, p))
    one = np.ones(2)
    for (kids, has_parent, height, depth, top), cnt, st, sz in zip(tabs, counts, steps, sizes):
        if not cnt:
            continue
        last = sz - (cnt - 1) * st  # the last chunk is shorter
        chunks = (st * item, last * item)
        # a chunk goes on as soon as it is reduced (up) or arrives (down): hot in cache
        up, down = (np.array([[c.msg(b, pattern, duplex, hot=h) for b in chunks]
                              for duplex in (True, False)]) for h in (REDUCING, MOVING))
        rm = np.array([c.red(b) for b in chunks])

        def cost(start, table):
            """Seconds of the chunk a node handles in each round, by chunk index ``s - start``."""
            idx = s - start
            table = np.asarray(table)[..., None, None]
            return (np.where((idx >= 0) & (idx < cnt - 1), table[..., 0, :, :], 0.0)
                    + np.where(idx == cnt - 1, table[..., 1, :, :], 0.0))

        for j in range(2):
            k = kids[:, j]
            has = k >= 0
            kh = height[np.where(has, k, 0)]
            recv += has * (cost(kh, up) + cost(kh, rm))  # up from a child, reduced
            send += has * cost(top + depth, down)  # down to a child
            n_recv += has * cost(kh, one)
            n_send += has * cost(top + depth, one)
        send += has_parent * cost(height, up)  # up to the parent
        recv += has_parent * cost(top + depth - 1, down)  # down from the parent
        n_send += has_parent * cost(height, one)
        n_recv += has_parent * cost(top + depth - 1, one)
    both = (n_recv > 0) & (n_send > 0)  # the exchange's cost, else the one-way cost
    busy = np.maximum(np.where(both, recv[0], recv[1]), np.where(both, send[0], send[1]))
    worst = np.where(n_recv + n_send > 0, c.o + busy, 0.0)
    return float(worst.max(axis=1).sum())


# ---------------------------------------------------------------- other families


def _ag_ring(c: _Cost, m: int, item: int) -> float:
    p = c.place.p
    return (p - 1) * c.step(m * item, _ring_pattern(c.place), False)


def _ag_recursive_doubling(c: _Cost, m: int, item: int) -> float:
    p = c.place.p
    p2 = pow2_below(p)
    bounds = np.array([f * m for f in first_ranks(p)])
    t = _fold_rounds(c, m * item, p * m * item, False)
    mask = 1
    while mask < p2:
        t += c.step(_max_range(bounds, mask) * item, _xor_pattern(c.place, mask), False)
        mask <<= 1
    return t


def _ag_bruck(c: _Cost, m: int, item: int) -> float:
    p = c.place.p
    r = np.arange(p)
    t = c.copy(m * item) + c.copy(p * m * item)  # into the rotated buffer, and back
    d = 1
    while d < p:
        t += c.step(min(d, p - d) * m * item, _pattern(c.place, r, (r - d) % p), False)
        d *= 2
    return t


def _rs_ring(c: _Cost, n: int, item: int) -> float:
    p = c.place.p
    block = -(-n // p)
    return (p - 1) * c.step(block * item, _ring_pattern(c.place), True, _duplex_blocks(n))


def _rs_recursive_halving(c: _Cost, n: int, item: int) -> float:
    p = c.place.p
    offsets = partition(n, p)
    first = first_ranks(p)
    bounds = np.array([offsets[first[i]] for i in range(pow2_below(p) + 1)])
    down, _ = _halving_doubling(c, bounds, item)
    return _fold_rounds(c, n * item, -(-n // p) * item, True) + down


def _bc_binomial(c: _Cost, n: int, item: int, root: int = 0) -> float:
    p = c.place.p
    t, mask = 0.0, 1
    while mask < p:
        v = np.arange(min(mask, p - mask))
        t += c.step(n * item, _pattern(c.place, (v + root) % p, (v + mask + root) % p), False, False)
        mask <<= 1
    return t


def _bc_scatter_allgather(c: _Cost, n: int, item: int, root: int = 0) -> float:
    p = c.place.p
    off = np.array(partition(n, p))
    top = 1 << max(p - 1, 0).bit_length()
    t, mask = 0.0, top >> 1
    while mask >= 1:
        v = np.arange(0, p, 2 * mask)
        v = v[v + mask < p]
        if len(v):
            b = int(np.max(off[np.minimum(v + 2 * mask, p)] - off[v + mask])) * item
            t += c.step(b, _pattern(c.place, (v + root) % p, (v + mask + root) % p), False, False)
        mask >>= 1
    r = np.arange(p)
    return t + (p - 1) * c.step(-(-n // p) * item, _pattern(c.place, r, (r + 1) % p), False,
                                _duplex_blocks(n))


_MODELS = {
    "allreduce": {
        "naive_ps": _ar_naive_ps,
        "sharded_ps": _ar_sharded_ps,
        "ring": _ar_ring,
        "recursive_doubling": _ar_recursive_doubling,
        "rabenseifner": _ar_rabenseifner,
        "double_binary_tree": _ar_double_binary_tree,
    },
    "allgather": {
        "ring": _ag_ring,
        "recursive_doubling": _ag_recursive_doubling,
        "bruck": _ag_bruck,
    },
    "reduce_scatter": {
        "ring": _rs_ring,
        "recursive_halving": _rs_recursive_halving,
    },
    "broadcast": {
        "binomial": _bc_binomial,
        "scatter_allgather": _bc_scatter_allgather,
    },
}


def scratch_elements(family: str, algorithm: str, n: int, p: int, itemsize: int = 4) -> int:
    """Most elements of engine scratch one rank holds (its reducing receives in one round).

    The formulas match the schedules to within ``p`` elements or 1 % (tested);
    the all-gathers and broadcasts reduce nothing.
    """
    if p == 1 or family not in ("allreduce", "reduce_scatter"):
        return 0
    block = -(-n // p)
    if algorithm == "naive_ps":
        return (p - 1) * n  # the root takes every other rank's vector in one round
    if algorithm == "sharded_ps":
        return (p - 1) * block
    if algorithm == "ring":
        return block
    if algorithm == "recursive_doubling":
        return n
    if algorithm in ("rabenseifner", "recursive_halving"):
        return n if p != pow2_below(p) else -(-n // 2)  # the fold's whole vector, else the first halving
    if algorithm == "double_binary_tree":
        chunk = max(registry.TREE_CHUNK_BYTES // itemsize, 1) if registry.TREE_CHUNK_BYTES > 0 else n
        return min(-(-n // 2), chunk) * (1 if p <= 3 else 2)  # up to two children per round
    raise KeyError(f"no model for {family} {algorithm!r}")


def footprint(
    family: str, algorithm: str, nbytes: int, p: int, *, ranks_per_node: int | None = None,
    itemsize: int = 4, in_place: bool = False,
) -> int:
    """Bytes one call keeps resident on its fullest node: every rank's buffers and scratch.

    What the bench's repeated calls cycle through, so what decides whether
    the collective runs from cache or from memory.  Per rank: all-reduce,
    the input and (unless ``in_place``) the result; all-gather, the block
    and the result (Bruck also its rotated copy); reduce-scatter, the input,
    its working copy and the result block; broadcast, the buffer.  Plus
    :func:`scratch_elements`, which for the naive parameter server only its
    root holds.
    """
    rpn = Placement(p, ranks_per_node).rpn
    n = nbytes // itemsize
    if family == "allreduce":
        own = n * (1 if in_place else 2)
    elif family == "allgather":
        m = max(n // p, 1)
        own = m + p * m * (2 if algorithm == "bruck" else 1)
    elif family == "reduce_scatter":
        own = 2 * n + -(-n // p)
    else:
        own = n
    scratch = scratch_elements(family, algorithm, n, p, itemsize)
    every = rpn * scratch if algorithm != "naive_ps" else scratch
    return (rpn * own + every) * itemsize


def predictable(family: str) -> tuple[str, ...]:
    """The algorithms of ``family`` that the model predicts (all but ``mpi`` and ``auto``)."""
    return tuple(_MODELS[family])


def predict(
    family: str,
    algorithm: str,
    nbytes: int,
    p: int,
    profile: Profile,
    *,
    ranks_per_node: int | None = None,
    itemsize: int = 4,
    in_place: bool = False,
) -> float:
    """Predicted seconds of one call, as ``collectives.bench`` times it.

    Parameters
    ----------
    family : {"allreduce", "allgather", "reduce_scatter", "broadcast"}
    algorithm : str
        A name from :func:`predictable`.
    nbytes : int
        The size ``auto`` and the bench use: the full vector for all-reduce,
        reduce-scatter and broadcast; ``P * m`` elements' bytes for all-gather.
    p : int
        Ranks.
    profile : Profile
        Measured costs; ``Profile.hockney(alpha, beta, gamma)`` gives the
        plain textbook model.
    ranks_per_node : int, optional
        Consecutive ranks per node (default: all on one node).
    itemsize : int
        Bytes per element (block boundaries are whole elements).
    in_place : bool
        All-reduce only: skip the copy of the send buffer into the result.

    Returns
    -------
    float
        Seconds.
    """
    try:
        model = _MODELS[family][algorithm]
    except KeyError:
        raise KeyError(f"no model for {family} {algorithm!r}; have {predictable(family)}") from None
    resident = footprint(family, algorithm, nbytes, p, ranks_per_node=ranks_per_node,
                         itemsize=itemsize, in_place=in_place)
    c = _Cost(profile, Placement(p, ranks_per_node), resident)
    n = nbytes // itemsize
    if n == 0:
        return 0.0
    overhead = profile.overhead(family, algorithm)
    if p == 1 and family != "allgather":
        return overhead + (0.0 if in_place or family != "allreduce" else c.copy(nbytes))
    if family == "allreduce":
        body = model(c, n, itemsize) + (0.0 if in_place else c.copy(n * itemsize))
    elif family == "allgather":
        m = max(n // p, 1)
        body = c.copy(m * itemsize) + model(c, m, itemsize)
    elif family == "reduce_scatter":
        body = c.copy(n * itemsize) + model(c, n, itemsize) + c.copy(-(-n // p) * itemsize)
    else:
        body = model(c, n, itemsize)
    return overhead + body


def best(
    family: str, nbytes: int, p: int, profile: Profile, *, ranks_per_node: int | None = None,
    itemsize: int = 4,
) -> tuple[str, float]:
    """The algorithm with the least predicted time, and that time (ties: registry order)."""
    times = {
        a: predict(family, a, nbytes, p, profile, ranks_per_node=ranks_per_node, itemsize=itemsize)
        for a in predictable(family)
    }
    name = min(times, key=lambda a: (times[a], predictable(family).index(a)))
    return name, times[name]


def hockney_terms(family: str, algorithm: str, p: int) -> tuple[float, float, float]:
    """Coefficients ``(a, b, g)`` of ``a*alpha + b*n*beta + g*n*gamma`` for a power-of-two P.

    The textbook formulas of ../shared/DESIGN.md, kept for the README and
    tests: :func:`predict` with ``Profile.hockney`` and in-place all-reduce
    reproduces them for power-of-two P with divisible n.
    """
    lg = math.log2(p)
    f = (p - 1) / p
    table = {
        ("allreduce", "naive_ps"): (2 * (p - 1), 2 * (p - 1), p - 1),
        ("allreduce", "sharded_ps"): (2 * (p - 1), 2 * f, f),
        ("allreduce", "ring"): (2 * (p - 1), 2 * f, f),
        ("allreduce", "recursive_doubling"): (lg, lg, lg),
        ("allreduce", "rabenseifner"): (2 * lg, 2 * f, f),
        ("allgather", "ring"): (p - 1, f, 0),
        ("allgather", "recursive_doubling"): (lg, f, 0),
        ("reduce_scatter", "ring"): (p - 1, f, f),
        ("reduce_scatter", "recursive_halving"): (lg, f, f),
        ("broadcast", "binomial"): (lg, lg, 0),
    }
    return table[(family, algorithm)]
