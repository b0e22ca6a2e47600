"""Each hand-written algorithm's time, round by round as its schedule runs them.

One function per (collective, algorithm), ``f(cost, n, itemsize) -> seconds``
for ``n`` elements (all-gather: per rank), collected in :data:`MODELS`; see
:mod:`collectives.model.cost_model` for the model and :func:`~collectives.model.cost_model.predict`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..algorithms._fold import first_ranks, pow2_below
from ..algorithms.double_binary_tree import _shape, trees
from ..algorithms.schedule import partition
from ..runtime import registry
from .round_cost import MOVING, REDUCING, Cost, fold_pattern, pattern, ring_pattern, xor_pattern


def _max_range(bounds: np.ndarray, mask: int) -> int:
    """Largest ``bounds[g+mask] - bounds[g]`` over groups ``g`` aligned to ``mask``."""
    g = np.arange(0, len(bounds) - 1, mask)
    return int(np.max(bounds[np.minimum(g + mask, len(bounds) - 1)] - bounds[g]))


# ---------------------------------------------------------------- all-reduce


def _ar_ring(c: Cost, n: int, item: int) -> float:
    p = c.place.p
    if p == 1:
        return 0.0
    block = -(-n // p)
    pat = ring_pattern(c.place)
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


def _fold_rounds(c: Cost, nbytes_in: float, nbytes_out: float, reduce: bool) -> float:
    if c.place.p == pow2_below(c.place.p):
        return 0.0
    pat = fold_pattern(c.place)  # the result goes back hot
    return c.step(nbytes_in, pat, reduce, False) + c.step(nbytes_out, pat, False, False, hot=True)


def _ar_recursive_doubling(c: Cost, n: int, item: int) -> float:
    p2 = pow2_below(c.place.p)
    t = _fold_rounds(c, n * item, n * item, True)
    mask = 1
    while mask < p2:  # each round sends what the round before reduced (the first: the fold's)
        t += c.step(n * item, xor_pattern(c.place, mask), True, hot=mask > 1 or p2 < c.place.p,
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


def _halving_doubling(c: Cost, bounds: np.ndarray, item: int) -> tuple[float, float]:
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
        pat = xor_pattern(c.place, mask)
        moves = _pair_moves(bounds, mask)
        hot = folded or mask < p2 // 2
        down += max((c.step(b * item, pat, True, d, hot=hot) for b, d in moves), default=0.0)
        up += max((c.step(b * item, pat, False, d, hot=True) for b, d in moves), default=0.0)
        mask //= 2
    return down, up


def _ar_rabenseifner(c: Cost, n: int, item: int) -> float:
    p2 = pow2_below(c.place.p)
    down, up = _halving_doubling(c, np.array(partition(n, p2)), item)
    return _fold_rounds(c, n * item, n * item, True) + down + up


def _fan(c: Cost, nbytes: float, flows: int = 1, duplex: bool = False, hot: int = 0) -> float:
    """One rank moving a message of ``nbytes`` with every other rank, one after another.

    ``flows`` ranks of a node talk off the node at once (they share its
    port); ``duplex``: the rank sends as much as it receives meanwhile;
    ``hot``: see :meth:`Cost.working_set`.
    """
    place = c.place
    local = min(place.rpn, place.p) - 1
    t = local * c.link(False, duplex, nbytes, 1.0, hot)
    if place.p - 1 > local:
        t += (place.p - 1 - local) * c.link(True, duplex, nbytes, flows, hot)
    return t


def _ar_naive_ps(c: Cost, n: int, item: int) -> float:
    p = c.place.p
    if p == 1:
        return 0.0
    b = n * item  # the root only receives, reduces while the rest wait, then sends the result
    return 2 * c.o + _fan(c, b) + (p - 1) * c.red(b, alone=True) + _fan(c, b, hot=MOVING)


def _ar_sharded_ps(c: Cost, n: int, item: int) -> float:
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


def _ar_double_binary_tree(c: Cost, n: int, item: int) -> float:
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
    tabs, links = _tree_tables(*c.place.key())
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
        up, down = (np.array([[c.msg(b, links, duplex, hot=h) for b in chunks]
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


def _ag_ring(c: Cost, m: int, item: int) -> float:
    p = c.place.p
    return (p - 1) * c.step(m * item, ring_pattern(c.place), False)


def _ag_recursive_doubling(c: Cost, m: int, item: int) -> float:
    p = c.place.p
    p2 = pow2_below(p)
    bounds = np.array([f * m for f in first_ranks(p)])
    t = _fold_rounds(c, m * item, p * m * item, False)
    mask = 1
    while mask < p2:
        t += c.step(_max_range(bounds, mask) * item, xor_pattern(c.place, mask), False)
        mask <<= 1
    return t


def _ag_bruck(c: Cost, m: int, item: int) -> float:
    p = c.place.p
    r = np.arange(p)
    t = c.copy(m * item) + c.copy(p * m * item)  # into the rotated buffer, and back
    d = 1
    while d < p:
        t += c.step(min(d, p - d) * m * item, pattern(c.place, r, (r - d) % p), False)
        d *= 2
    return t


def _rs_ring(c: Cost, n: int, item: int) -> float:
    p = c.place.p
    block = -(-n // p)
    return (p - 1) * c.step(block * item, ring_pattern(c.place), True, _duplex_blocks(n))


def _rs_recursive_halving(c: Cost, n: int, item: int) -> float:
    p = c.place.p
    offsets = partition(n, p)
    first = first_ranks(p)
    bounds = np.array([offsets[first[i]] for i in range(pow2_below(p) + 1)])
    down, _ = _halving_doubling(c, bounds, item)
    return _fold_rounds(c, n * item, -(-n // p) * item, True) + down


def _bc_binomial(c: Cost, n: int, item: int, root: int = 0) -> float:
    p = c.place.p
    t, mask = 0.0, 1
    while mask < p:
        v = np.arange(min(mask, p - mask))
        t += c.step(n * item, pattern(c.place, (v + root) % p, (v + mask + root) % p), False, False)
        mask <<= 1
    return t


def _bc_scatter_allgather(c: Cost, n: int, item: int, root: int = 0) -> float:
    p = c.place.p
    off = np.array(partition(n, p))
    top = 1 << max(p - 1, 0).bit_length()
    t, mask = 0.0, top >> 1
    while mask >= 1:
        v = np.arange(0, p, 2 * mask)
        v = v[v + mask < p]
        if len(v):
            b = int(np.max(off[np.minimum(v + 2 * mask, p)] - off[v + mask])) * item
            t += c.step(b, pattern(c.place, (v + root) % p, (v + mask + root) % p), False, False)
        mask >>= 1
    r = np.arange(p)
    return t + (p - 1) * c.step(-(-n // p) * item, pattern(c.place, r, (r + 1) % p), False,
                                _duplex_blocks(n))


MODELS = {
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
