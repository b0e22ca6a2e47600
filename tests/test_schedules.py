"""Schedules without MPI: hand-worked tables, matching, simulation, and round/volume formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collectives import (
    binomial,
    bruck,
    naive_ps,
    rabenseifner,
    ring,
    scatter_allgather,
    sharded_ps,
)
from collectives import double_binary_tree as dbt
from collectives import recursive_doubling as rd
from collectives.schedule import Recv, Round, Send, check_matched, partition, simulate

PS = range(1, 18)


def sizes(p):
    return sorted({0, 1, p - 1, 7, 13, 100, 5 * p + 3})


def everyone(fn, p, *args):
    return [fn(r, p, *args) for r in range(p)]


def live(rounds):
    """Rounds in which something of non-zero length moves."""
    return [r for r in rounds if any(x.count for x in r.sends + r.recvs)]


def sent(rounds):
    return [s for r in rounds for s in r.sends if s.count]


# ---------------------------------------------------------------------------
# 1. Hand-worked tables
# ---------------------------------------------------------------------------

# Ring, from the docstrings: reduce-scatter step s sends block r-s-1 to r+1 and
# reduces block r-s-2 from r-1; all-gather step s sends block r-s, copies r-s-1.
# Rows: (send peer, send block, recv peer, recv block, reduce?).
RING = {
    (1, 0): [],
    (2, 1): [(0, 0, 0, 1, True), (0, 1, 0, 0, False)],
    (3, 1): [(2, 0, 0, 2, True), (2, 2, 0, 1, True), (2, 1, 0, 0, False), (2, 0, 0, 2, False)],
    (5, 0): [
        (1, 4, 4, 3, True), (1, 3, 4, 2, True), (1, 2, 4, 1, True), (1, 1, 4, 0, True),
        (1, 0, 4, 4, False), (1, 4, 4, 3, False), (1, 3, 4, 2, False), (1, 2, 4, 1, False),
    ],
    (5, 2): [
        (3, 1, 1, 0, True), (3, 0, 1, 4, True), (3, 4, 1, 3, True), (3, 3, 1, 2, True),
        (3, 2, 1, 1, False), (3, 1, 1, 0, False), (3, 0, 1, 4, False), (3, 4, 1, 3, False),
    ],
    (6, 5): [
        (0, 4, 4, 3, True), (0, 3, 4, 2, True), (0, 2, 4, 1, True), (0, 1, 4, 0, True),
        (0, 0, 4, 5, True),
        (0, 5, 4, 4, False), (0, 4, 4, 3, False), (0, 3, 4, 2, False), (0, 2, 4, 1, False),
        (0, 1, 4, 0, False),
    ],
    (8, 0): [
        (1, 7, 7, 6, True), (1, 6, 7, 5, True), (1, 5, 7, 4, True), (1, 4, 7, 3, True),
        (1, 3, 7, 2, True), (1, 2, 7, 1, True), (1, 1, 7, 0, True),
        (1, 0, 7, 7, False), (1, 7, 7, 6, False), (1, 6, 7, 5, False), (1, 5, 7, 4, False),
        (1, 4, 7, 3, False), (1, 3, 7, 2, False), (1, 2, 7, 1, False),
    ],
}


@pytest.mark.parametrize("per_block", [1, 4])
@pytest.mark.parametrize("p, rank", sorted(RING))
def test_ring_allreduce_table(p, rank, per_block):
    n = per_block * p
    off = partition(n, p)
    want = tuple(
        Round((Send(sp, off[sb], off[sb + 1]),), (Recv(rp, off[rb], off[rb + 1], 0, red),))
        for sp, sb, rp, rb, red in RING[p, rank]
    )
    assert ring.allreduce_rounds(rank, p, n) == want


def test_ring_allreduce_segments_table():
    # P=2, n=8, segment 3: blocks [0,4) and [4,8) go as pieces of <= 3, tagged by piece.
    want = (
        Round(
            (Send(1, 4, 7, 0), Send(1, 7, 8, 1)),
            (Recv(1, 0, 3, 0, True), Recv(1, 3, 4, 1, True)),
        ),
        Round((Send(1, 0, 3, 0), Send(1, 3, 4, 1)), (Recv(1, 4, 7, 0), Recv(1, 7, 8, 1))),
    )
    assert ring.allreduce_rounds(0, 2, 8, 3) == want


# Recursive doubling all-reduce, MPICH fold: the even ranks below 2*rem send to
# rank+1 first and get the result back last; survivors renumbered (odd r < 2rem
# -> r//2, r >= 2rem -> r-rem) exchange with new XOR 2**k.
# Per round: (send to, receive from); None = nothing.  Ranks >= 2rem have no
# fold-out round at all.
_ = None
RD = {
    1: [[]],
    2: [[(1, 1)], [(0, 0)]],
    3: [
        [(1, _), (_, _), (_, 1)],
        [(_, 0), (2, 2), (0, _)],
        [(_, _), (1, 1)],
    ],
    5: [
        [(1, _), (_, _), (_, _), (_, 1)],
        [(_, 0), (2, 2), (3, 3), (0, _)],
        [(_, _), (1, 1), (4, 4)],
        [(_, _), (4, 4), (1, 1)],
        [(_, _), (3, 3), (2, 2)],
    ],
    6: [
        [(1, _), (_, _), (_, _), (_, 1)],
        [(_, 0), (3, 3), (4, 4), (0, _)],
        [(3, _), (_, _), (_, _), (_, 3)],
        [(_, 2), (1, 1), (5, 5), (2, _)],
        [(_, _), (5, 5), (1, 1)],
        [(_, _), (4, 4), (3, 3)],
    ],
    8: [
        [(1, 1), (2, 2), (4, 4)],
        [(0, 0), (3, 3), (5, 5)],
        [(3, 3), (0, 0), (6, 6)],
        [(2, 2), (1, 1), (7, 7)],
        [(5, 5), (6, 6), (0, 0)],
        [(4, 4), (7, 7), (1, 1)],
        [(7, 7), (4, 4), (2, 2)],
        [(6, 6), (5, 5), (3, 3)],
    ],
}


@pytest.mark.parametrize("p", sorted(RD))
def test_recursive_doubling_partners_table(p):
    n = 5
    for rank, want in enumerate(RD[p]):
        rounds = rd.allreduce_rounds(rank, p, n)
        got = []
        for t, r in enumerate(rounds):
            assert len(r.sends) <= 1 and len(r.recvs) <= 1
            for x in r.sends + r.recvs:
                assert (x.lo, x.hi) == (0, n)
            for v in r.recvs:
                fold_out = t == len(rounds) - 1 and not r.sends
                assert v.reduce is (not fold_out), (rank, t)
            got.append(
                (r.sends[0].peer if r.sends else None, r.recvs[0].peer if r.recvs else None)
            )
        assert got == want, f"rank {rank}"


# Rabenseifner reduce-scatter (recursive halving, largest distance first; the
# lower survivor keeps the lower half of its group's range).  Forms:
#   ("swap", peer, kept, sent)   send `sent`, reduce `kept` from peer
#   ("send", peer, lo, hi)       ("fold_in", peer, lo, hi): reducing receive, incoming first
#   ("copy", peer, lo, hi)       plain receive            None: idle round
RS_N = {2: 7, 3: 7, 5: 7, 8: 10}
# P=2 n=7: blocks (0,4,7).  P=3 n=7: blocks (0,3,5,7); survivors 1 (blocks 0,1), 2.
# P=5 n=7: blocks (0,2,4,5,6,7); survivors 1 (blocks 0,1), 2, 3, 4 -> bounds (0,4,5,6,7).
# P=8 n=10: blocks (0,2,4,5,6,7,8,9,10).
RABENSEIFNER_RS = {
    2: [
        [("swap", 1, (0, 4), (4, 7))],
        [("swap", 0, (4, 7), (0, 4))],
    ],
    3: [
        [("send", 1, 0, 7), None, ("copy", 1, 0, 3)],
        [("fold_in", 0, 0, 7), ("swap", 2, (0, 5), (5, 7)), ("send", 0, 0, 3)],
        [None, ("swap", 1, (5, 7), (0, 5))],
    ],
    5: [
        [("send", 1, 0, 7), None, None, ("copy", 1, 0, 2)],
        [("fold_in", 0, 0, 7), ("swap", 3, (0, 5), (5, 7)), ("swap", 2, (0, 4), (4, 5)),
         ("send", 0, 0, 2)],
        [None, ("swap", 4, (0, 5), (5, 7)), ("swap", 1, (4, 5), (0, 4))],
        [None, ("swap", 1, (5, 7), (0, 5)), ("swap", 4, (5, 6), (6, 7))],
        [None, ("swap", 2, (5, 7), (0, 5)), ("swap", 3, (6, 7), (5, 6))],
    ],
    8: [
        [("swap", 4, (0, 6), (6, 10)), ("swap", 2, (0, 4), (4, 6)), ("swap", 1, (0, 2), (2, 4))],
        [("swap", 5, (0, 6), (6, 10)), ("swap", 3, (0, 4), (4, 6)), ("swap", 0, (2, 4), (0, 2))],
        [("swap", 6, (0, 6), (6, 10)), ("swap", 0, (4, 6), (0, 4)), ("swap", 3, (4, 5), (5, 6))],
        [("swap", 7, (0, 6), (6, 10)), ("swap", 1, (4, 6), (0, 4)), ("swap", 2, (5, 6), (4, 5))],
        [("swap", 0, (6, 10), (0, 6)), ("swap", 6, (6, 8), (8, 10)), ("swap", 5, (6, 7), (7, 8))],
        [("swap", 1, (6, 10), (0, 6)), ("swap", 7, (6, 8), (8, 10)), ("swap", 4, (7, 8), (6, 7))],
        [("swap", 2, (6, 10), (0, 6)), ("swap", 4, (8, 10), (6, 8)), ("swap", 7, (8, 9), (9, 10))],
        [("swap", 3, (6, 10), (0, 6)), ("swap", 5, (8, 10), (6, 8)), ("swap", 6, (9, 10), (8, 9))],
    ],
}


def _form(f):
    if f is None:
        return Round()
    kind, peer, *rest = f
    if kind == "swap":
        kept, give = rest
        return Round((Send(peer, *give),), (Recv(peer, *kept, reduce=True),))
    if kind == "send":
        return Round(sends=(Send(peer, *rest),))
    if kind == "fold_in":
        return Round(recvs=(Recv(peer, *rest, reduce=True, incoming_first=True),))
    assert kind == "copy"
    return Round(recvs=(Recv(peer, *rest),))


@pytest.mark.parametrize("p", sorted(RABENSEIFNER_RS))
def test_rabenseifner_reduce_scatter_table(p):
    off = partition(RS_N[p], p)
    for rank, forms in enumerate(RABENSEIFNER_RS[p]):
        want = tuple(_form(f) for f in forms)
        assert rabenseifner.reduce_scatter_rounds(rank, p, off) == want, f"rank {rank}"


# Bruck: round k (dist = 2**k) sends the first min(dist, P-dist) held blocks to
# r-dist and appends what comes from r+dist.  Rows: (dest, src, blocks).
BRUCK = {
    3: [
        [(2, 1, 1), (1, 2, 1)],
        [(0, 2, 1), (2, 0, 1)],
        [(1, 0, 1), (0, 1, 1)],
    ],
    5: [
        [(4, 1, 1), (3, 2, 2), (1, 4, 1)],
        [(0, 2, 1), (4, 3, 2), (2, 0, 1)],
        [(1, 3, 1), (0, 4, 2), (3, 1, 1)],
        [(2, 4, 1), (1, 0, 2), (4, 2, 1)],
        [(3, 0, 1), (2, 1, 2), (0, 3, 1)],
    ],
    6: [
        [(5, 1, 1), (4, 2, 2), (2, 4, 2)],
        [(0, 2, 1), (5, 3, 2), (3, 5, 2)],
        [(1, 3, 1), (0, 4, 2), (4, 0, 2)],
        [(2, 4, 1), (1, 5, 2), (5, 1, 2)],
        [(3, 5, 1), (2, 0, 2), (0, 2, 2)],
        [(4, 0, 1), (3, 1, 2), (1, 3, 2)],
    ],
    8: [
        [(7, 1, 1), (6, 2, 2), (4, 4, 4)],
        [(0, 2, 1), (7, 3, 2), (5, 5, 4)],
        [(1, 3, 1), (0, 4, 2), (6, 6, 4)],
        [(2, 4, 1), (1, 5, 2), (7, 7, 4)],
        [(3, 5, 1), (2, 6, 2), (0, 0, 4)],
        [(4, 6, 1), (3, 7, 2), (1, 1, 4)],
        [(5, 7, 1), (4, 0, 2), (2, 2, 4)],
        [(6, 0, 1), (5, 1, 2), (3, 3, 4)],
    ],
}


@pytest.mark.parametrize("p", sorted(BRUCK))
def test_bruck_table(p):
    b = 3  # elements per block; rotated buffer holds blocks r, r+1, ... in order
    off = partition(b * p, p)
    for rank, rows in enumerate(BRUCK[p]):
        want = tuple(
            Round((Send(dst, 0, cnt * b),), (Recv(src, (1 << k) * b, ((1 << k) + cnt) * b),))
            for k, (dst, src, cnt) in enumerate(rows)
        )
        assert bruck.allgather_rounds(rank, p, off) == want, f"rank {rank}"


# NCCL's btree (tree 0), worked by hand; tree 1 is its mirror (even P) or shift (odd P).
TREE0 = {
    1: [(-1, ())],
    2: [(-1, (1,)), (0, ())],
    3: [(-1, (2,)), (2, ()), (0, (1,))],
    5: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2,))],
    6: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2, 5)), (4, ())],
    8: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2, 6)), (6, ()), (4, (5, 7)), (6, ())],
}
TREE1 = {
    1: [(-1, ())],
    2: [(1, ()), (-1, (0,))],
    3: [(1, (2,)), (-1, (0,)), (0, ())],
    5: [(1, (3,)), (-1, (0,)), (3, ()), (0, (2, 4)), (3, ())],
    6: [(1, ()), (5, (3, 0)), (3, ()), (1, (4, 2)), (3, ()), (-1, (1,))],
    8: [(1, ()), (3, (2, 0)), (1, ()), (7, (5, 1)), (5, ()), (3, (6, 4)), (5, ()), (-1, (3,))],
}


@pytest.mark.parametrize("p", sorted(TREE0))
def test_btree_table(p):
    assert [dbt.btree(p, r) for r in range(p)] == TREE0[p]
    assert [list(t) for t in dbt.trees(p)] == [TREE0[p], TREE1[p]]


def _map(p):
    return (lambda r: (r + 1) % p) if p % 2 else (lambda r: p - 1 - r)


def _check_spanning(tree, p):
    roots = [r for r in range(p) if tree[r][0] < 0]
    assert len(roots) == 1
    for r, (parent, kids) in enumerate(tree):
        assert len(kids) <= 2 and len(set(kids)) == len(kids)
        if parent >= 0:
            assert r in tree[parent][1], (r, parent)
        for k in kids:
            assert tree[k][0] == r, (r, k)
        seen, x = set(), r
        while tree[x][0] >= 0:
            assert x not in seen, f"cycle through {r}"
            seen.add(x)
            x = tree[x][0]
        assert x == roots[0]
    return roots[0]


def inner(tree):
    return {r for r, (_, kids) in enumerate(tree) if kids}


@pytest.mark.parametrize("p", range(1, 33))
def test_double_tree_shape(p):
    t0, t1 = dbt.trees(p)
    assert t0 == tuple(dbt.btree(p, r) for r in range(p))
    assert _check_spanning(t0, p) == 0
    assert _check_spanning(t1, p) == _map(p)(0)
    m = _map(p)
    for r in range(p):  # tree 1 is tree 0 relabelled by m
        parent, kids = t0[r]
        assert t1[m(r)] == (-1 if parent < 0 else m(parent), tuple(m(k) for k in kids))
    if p > 1:  # rank 0 has one child, the largest power of two below P
        assert t0[0][1] == (1 << ((p - 1).bit_length() - 1),)
        assert inner(t0) == set(range(0, p, 2))  # odd ranks are the leaves of tree 0
        assert inner(t0) | inner(t1) == set(range(p))  # a leaf in one tree is inner in the other
    # Strongest true statement (checked for P = 1..32): no rank is inner in both trees
    # for even P; for odd P > 1 exactly one is, rank 0 (the root of tree 0, and the
    # image of P-1, always inner in tree 0, under the shift).  With (P+1)/2 inner
    # nodes per tree, odd P cannot do better.
    assert inner(t0) & inner(t1) == (set() if p % 2 == 0 or p == 1 else {0})


# Binomial broadcast: in round k a rank at distance v < 2**k from the root sends
# to distance v + 2**k.  Per round: the set of (sender, receiver).
BINOMIAL = {
    (5, 0): [{(0, 1)}, {(0, 2), (1, 3)}, {(0, 4)}],
    (5, 2): [{(2, 3)}, {(2, 4), (3, 0)}, {(2, 1)}],
    (6, 0): [{(0, 1)}, {(0, 2), (1, 3)}, {(0, 4), (1, 5)}],
    (6, 2): [{(2, 3)}, {(2, 4), (3, 5)}, {(2, 0), (3, 1)}],
}


@pytest.mark.parametrize("p, root", sorted(BINOMIAL))
def test_binomial_table(p, root):
    n = 4
    scheds = everyone(binomial.broadcast_rounds, p, n, root)
    check_matched(scheds)
    rounds = max(len(s) for s in scheds)
    got = [
        {(r, s.peer) for r in range(p) for s in scheds[r][t].sends if t < len(scheds[r])}
        for t in range(rounds)
    ]
    assert got == BINOMIAL[p, root]
    for s in scheds:
        for r in s:
            assert all((x.lo, x.hi) == (0, n) for x in r.sends + r.recvs)


def test_naive_ps_p3():
    n = 7
    assert everyone(naive_ps.allreduce_rounds, 3, n) == [
        (
            Round(recvs=(Recv(1, 0, 7, reduce=True), Recv(2, 0, 7, reduce=True))),
            Round(sends=(Send(1, 0, 7), Send(2, 0, 7))),
        ),
        (Round(sends=(Send(0, 0, 7),)), Round(recvs=(Recv(0, 0, 7),))),
        (Round(sends=(Send(0, 0, 7),)), Round(recvs=(Recv(0, 0, 7),))),
    ]


def test_sharded_ps_p3():
    # n = 7: slices [0,3) [3,5) [5,7) owned by ranks 0, 1, 2
    red = dict(reduce=True)
    assert everyone(sharded_ps.allreduce_rounds, 3, 7) == [
        (
            Round((Send(1, 3, 5), Send(2, 5, 7)), (Recv(1, 0, 3, **red), Recv(2, 0, 3, **red))),
            Round((Send(1, 0, 3), Send(2, 0, 3)), (Recv(1, 3, 5), Recv(2, 5, 7))),
        ),
        (
            Round((Send(0, 0, 3), Send(2, 5, 7)), (Recv(0, 3, 5, **red), Recv(2, 3, 5, **red))),
            Round((Send(0, 3, 5), Send(2, 3, 5)), (Recv(0, 0, 3), Recv(2, 5, 7))),
        ),
        (
            Round((Send(0, 0, 3), Send(1, 3, 5)), (Recv(0, 5, 7, **red), Recv(1, 5, 7, **red))),
            Round((Send(0, 5, 7), Send(1, 5, 7)), (Recv(0, 0, 3), Recv(1, 3, 5))),
        ),
    ]


# ---------------------------------------------------------------------------
# 2. Matching and simulation for every schedule, P = 1..17
#    (simulate() calls check_matched() before it runs anything)
# ---------------------------------------------------------------------------

ALLREDUCE = {
    "ring": lambda r, p, n: ring.allreduce_rounds(r, p, n),
    "ring_seg3": lambda r, p, n: ring.allreduce_rounds(r, p, n, 3),
    "recursive_doubling": rd.allreduce_rounds,
    "rabenseifner": rabenseifner.allreduce_rounds,
    "dbt_chunk1": lambda r, p, n: dbt.allreduce_rounds(r, p, n, 1),
    "dbt_chunk3": lambda r, p, n: dbt.allreduce_rounds(r, p, n, 3),
    "dbt_chunk1000": lambda r, p, n: dbt.allreduce_rounds(r, p, n, 1000),
    "naive_ps": naive_ps.allreduce_rounds,
    "sharded_ps": sharded_ps.allreduce_rounds,
}
REDUCE_SCATTER = {
    "ring": lambda r, p, off: ring.reduce_scatter_rounds(r, p, off),
    "ring_seg3": lambda r, p, off: ring.reduce_scatter_rounds(r, p, off, 3),
    "recursive_halving": rabenseifner.reduce_scatter_rounds,
}
ALLGATHER = {
    "ring": lambda r, p, off: ring.allgather_rounds(r, p, off),
    "ring_seg3": lambda r, p, off: ring.allgather_rounds(r, p, off, 3),
    "recursive_doubling": rd.allgather_rounds,
}
BROADCAST = {
    "binomial": binomial.broadcast_rounds,
    "scatter_allgather": scatter_allgather.broadcast_rounds,
}


def _data(p, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1000, size=(p, n)), rng


def _run_allreduce(fn, p, n, seed=0):
    data, _ = _data(p, n, seed)
    out = simulate(everyone(fn, p, n), [d.copy() for d in data])
    want = data.sum(axis=0)
    for r in range(p):
        np.testing.assert_array_equal(out[r], want, err_msg=f"rank {r}, P={p}, n={n}")


def _run_reduce_scatter(fn, p, off, seed=0):
    n = off[p]
    data, _ = _data(p, n, seed)
    out = simulate(everyone(fn, p, off), [d.copy() for d in data])
    want = data.sum(axis=0)
    for r in range(p):
        lo, hi = off[r], off[r + 1]
        np.testing.assert_array_equal(out[r][lo:hi], want[lo:hi], err_msg=f"rank {r}, {off}")


def _run_allgather(fn, p, off, seed=0):
    n = off[p]
    data, rng = _data(p, n, seed)
    full = data[0]
    works = []
    for r in range(p):  # junk everywhere except the rank's own block
        w = rng.integers(5000, 6000, size=n)
        w[off[r] : off[r + 1]] = full[off[r] : off[r + 1]]
        works.append(w)
    out = simulate(everyone(fn, p, off), works)
    for r in range(p):
        np.testing.assert_array_equal(out[r], full, err_msg=f"rank {r}, {off}")


def _run_bruck(p, off, seed=0):
    n = off[p]
    data, rng = _data(p, n, seed)
    full = data[0]
    works = []
    for r in range(p):  # as registry._bruck_allgather: own block first, junk after
        rot = bruck.rotated_offsets(r, p, off)
        w = rng.integers(5000, 6000, size=n)
        w[: rot[1]] = full[off[r] : off[r + 1]]
        works.append(w)
    out = simulate(everyone(bruck.allgather_rounds, p, off), works)
    for r in range(p):
        res = np.empty(n, dtype=full.dtype)
        split = off[p] - off[r]
        res[off[r] :] = out[r][:split]
        res[: off[r]] = out[r][split:]
        np.testing.assert_array_equal(res, full, err_msg=f"rank {r}, {off}")


def _run_broadcast(fn, p, n, root, seed=0):
    data, rng = _data(1, n, seed)
    works = [rng.integers(5000, 6000, size=n) for _ in range(p)]
    works[root] = data[0].copy()
    out = simulate(everyone(fn, p, n, root), works)
    for r in range(p):
        np.testing.assert_array_equal(out[r], data[0], err_msg=f"rank {r}, root {root}")


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("name", sorted(ALLREDUCE))
def test_allreduce_simulated(name, p):
    for n in sizes(p):
        _run_allreduce(ALLREDUCE[name], p, n, seed=n)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("name", sorted(REDUCE_SCATTER))
def test_reduce_scatter_simulated(name, p):
    for n in sizes(p):
        _run_reduce_scatter(REDUCE_SCATTER[name], p, partition(n, p), seed=n)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("name", sorted(ALLGATHER))
def test_allgather_simulated(name, p):
    for n in sizes(p):
        _run_allgather(ALLGATHER[name], p, partition(n, p), seed=n)


@pytest.mark.parametrize("p", PS)
def test_bruck_simulated(p):
    for n in sizes(p):
        _run_bruck(p, partition(n, p), seed=n)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("name", sorted(BROADCAST))
def test_broadcast_simulated(name, p):
    for n in sizes(p):
        for root in range(p):
            _run_broadcast(BROADCAST[name], p, n, root, seed=n)


def _random_offsets(p, rng):
    cuts = np.sort(rng.integers(0, 30, size=p - 1))
    return (0,) + tuple(int(c) for c in cuts) + (30,)


@pytest.mark.parametrize("p", PS)
def test_uneven_offsets_simulated(p):
    """Registry callers may pass any offsets (empty blocks included), not just partition()."""
    rng = np.random.default_rng(p)
    for trial in range(3):
        off = _random_offsets(p, rng)
        for fn in REDUCE_SCATTER.values():
            _run_reduce_scatter(fn, p, off, seed=trial)
        for fn in ALLGATHER.values():
            _run_allgather(fn, p, off, seed=trial)
        _run_bruck(p, off, seed=trial)


def _all_schedules(p, n):
    off = partition(n, p)
    for name, fn in ALLREDUCE.items():
        yield name, everyone(fn, p, n)
    for name, fn in REDUCE_SCATTER.items():
        yield name, everyone(fn, p, off)
    for name, fn in ALLGATHER.items():
        yield name, everyone(fn, p, off)
    yield "bruck", everyone(bruck.allgather_rounds, p, off)
    for name, fn in BROADCAST.items():
        for root in sorted({0, p // 2, p - 1}):
            yield f"{name}@{root}", everyone(fn, p, n, root)


@pytest.mark.parametrize("p", PS)
def test_round_hazards(p):
    """The Round contract the engine relies on: ranges inside the buffer, peers valid,
    and no copy-receive overlapping a send or another receive of the same round."""
    n = 5 * p + 3

    def meet(a, b):
        return a.lo < b.hi and b.lo < a.hi

    for name, scheds in _all_schedules(p, n):
        for rank, rounds in enumerate(scheds):
            for t, rnd in enumerate(rounds):
                for x in rnd.sends + rnd.recvs:
                    assert 0 <= x.lo <= x.hi <= n and 0 <= x.peer < p, (name, rank, t, x)
                copies = [v for v in rnd.recvs if not v.reduce and v.count]
                for v in copies:
                    assert not any(meet(v, s) for s in rnd.sends if s.count), (name, rank, t, v)
                    others = [w for w in rnd.recvs if w is not v and w.count]
                    assert not any(meet(v, w) for w in others), (name, rank, t, v)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("name", sorted(ALLREDUCE))
def test_allreduce_same_order_everywhere(name, p):
    """With a non-commutative combine (string concatenation) every rank still ends
    with the same result, each rank contributing exactly once per element."""
    n = 2 * p + 1
    works = [np.array([f"{r}," for _ in range(n)], dtype=object) for r in range(p)]
    out = simulate(everyone(ALLREDUCE[name], p, n), works, combine=np.add)
    for i in range(n):
        vals = {str(out[r][i]) for r in range(p)}
        assert len(vals) == 1, (i, vals)
        (v,) = vals
        assert sorted(int(x) for x in v.split(",")[:-1]) == list(range(p))
        if name in ("recursive_doubling", "naive_ps"):  # documented: rank order
            assert v == "".join(f"{r}," for r in range(p))


# ---------------------------------------------------------------------------
# 3. Round counts and volumes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", range(2, 18))
def test_ring_volume(p):
    n = 6 * p
    for rank in range(p):
        msgs = sent(ring.allreduce_rounds(rank, p, n))
        assert len(msgs) == 2 * (p - 1)
        assert sum(s.count for s in msgs) * p == 2 * (p - 1) * n


@pytest.mark.parametrize("p", PS)
def test_recursive_doubling_rounds(p):
    n = 4
    p2 = 1 << (p.bit_length() - 1)
    rem = p - p2
    lg = p2.bit_length() - 1
    scheds = everyone(rd.allreduce_rounds, p, n)
    for rank, rounds in enumerate(scheds):
        busy = len(live(rounds))
        if rem == 0:
            assert len(rounds) == busy == lg
        elif rank < 2 * rem:
            assert len(rounds) == lg + 2
            assert busy == (2 if rank % 2 == 0 else lg + 2)
        else:
            assert len(rounds) == lg + 1 and busy == lg
    if p > 1:
        assert max(len(s) for s in scheds) == (lg if rem == 0 else lg + 2)


@pytest.mark.parametrize("p", [1, 2, 4, 8, 16])
def test_rabenseifner_volume(p):
    n = 8 * p
    lg = p.bit_length() - 1
    for rank in range(p):
        ar = sent(rabenseifner.allreduce_rounds(rank, p, n))
        assert len(ar) == 2 * lg
        assert sum(s.count for s in ar) * p == 2 * (p - 1) * n
        rs = sent(rabenseifner.reduce_scatter_rounds(rank, p, partition(n, p)))
        assert len(rs) == lg
        assert sum(s.count for s in rs) * p == (p - 1) * n


@pytest.mark.parametrize("p", range(2, 18))
def test_parameter_server_volume(p):
    n = 3 * p
    root = naive_ps.allreduce_rounds(0, p, n)
    assert sum(v.count for r in root for v in r.recvs) == (p - 1) * n
    assert sum(s.count for s in sent(root)) == (p - 1) * n
    for rank in range(p):
        rounds = sharded_ps.allreduce_rounds(rank, p, n)
        assert len(rounds) == 2
        msgs = sent(rounds)
        assert len(msgs) == 2 * (p - 1)
        assert sum(v.count for r in rounds for v in r.recvs) == len(msgs) * 3
        assert sum(s.count for s in msgs) * p == 2 * (p - 1) * n


@pytest.mark.parametrize("p", PS)
def test_log_round_counts(p):
    lg = math.ceil(math.log2(p)) if p > 1 else 0
    off = partition(2 * p, p)
    for rank in range(p):
        b = bruck.allgather_rounds(rank, p, off)
        assert len(b) == len(live(b)) == lg
        assert sum(v.count for r in b for v in r.recvs) == 2 * (p - 1)
        assert len(binomial.broadcast_rounds(rank, p, 3, 0)) == lg


# Height (leaves 0) and depth (root 0) of each rank in tree 0, by hand from TREE0
# and, for P=16: 0 -> 8 -> {4, 12} -> {2, 6, 10, 14} -> odd leaves.
SHAPE0 = {
    2: ([1, 0], [0, 1]),
    5: ([3, 0, 1, 0, 2], [0, 3, 2, 3, 1]),
    8: ([3, 0, 1, 0, 2, 0, 1, 0], [0, 3, 2, 3, 1, 3, 2, 3]),
    16: (
        [4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0],
        [0, 4, 3, 4, 2, 4, 3, 4, 1, 4, 3, 4, 2, 4, 3, 4],
    ),
}


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("n", [1, 10, 37, 64])
@pytest.mark.parametrize("p", sorted(SHAPE0))
def test_double_tree_steps(p, n, chunk):
    """Docstring: height h sends chunk c up in step c + h; depth d sends it down in
    step c + H + d.  So the all-reduce takes exactly C + 2H - 1 rounds (C = chunks
    of the larger half): the deepest inner node has depth H - 1."""
    h0, d0 = SHAPE0[p]
    H = max(h0)
    src = (lambda r: (r - 1) % p) if p % 2 else (lambda r: p - 1 - r)
    shape = [(h0, d0), ([h0[src(r)] for r in range(p)], [d0[src(r)] for r in range(p)])]
    halves = partition(n, 2)
    scheds = everyone(dbt.allreduce_rounds, p, n, chunk)
    check_matched(scheds)
    for rank, rounds in enumerate(scheds):
        for step, rnd in enumerate(rounds):
            for x in rnd.sends + rnd.recvs:
                t, down = divmod(x.tag, 2)
                h, d = shape[t]
                parent, kids = dbt.trees(p)[t][rank]
                c = (x.lo - halves[t]) // chunk
                assert x.lo == halves[t] + c * chunk and x.hi == min(x.lo + chunk, halves[t + 1])
                if isinstance(x, Send) and not down:
                    assert x.peer == parent and step == c + h[rank]
                elif isinstance(x, Send):
                    assert x.peer in kids and step == c + H + d[rank]
                elif not down:
                    assert x.peer in kids and x.reduce and step == c + h[x.peer]
                else:
                    assert x.peer == parent and step == c + H + d[rank] - 1
    chunks = -(-halves[1] // chunk)  # the first half is the larger one
    assert max(len(s) for s in scheds) == chunks + 2 * H - 1


# ---------------------------------------------------------------------------
# 4. check_matched catches errors;  5. incoming_first
# ---------------------------------------------------------------------------


def test_check_matched_accepts_matched():
    check_matched([(Round(sends=(Send(1, 0, 3),)),), (Round(recvs=(Recv(0, 5, 8),)),)])


@pytest.mark.parametrize(
    "scheds",
    [
        pytest.param([(Round(sends=(Send(1, 0, 3),)),), (Round(),)], id="unmatched_send"),
        pytest.param([(Round(),), (Round(recvs=(Recv(0, 0, 3),)),)], id="unmatched_recv"),
        pytest.param(
            [(Round(sends=(Send(1, 0, 3),)),), (Round(recvs=(Recv(0, 0, 2),)),)],
            id="size_mismatch",
        ),
        pytest.param(
            [(Round(sends=(Send(1, 0, 3),)),), (Round(), Round(recvs=(Recv(0, 0, 3),)))],
            id="wrong_round",
        ),
        pytest.param(
            [(Round(sends=(Send(1, 0, 3, tag=1),)),), (Round(recvs=(Recv(0, 0, 3),)),)],
            id="wrong_tag",
        ),
        pytest.param([(Round((Send(0, 0, 1),), (Recv(0, 0, 1),)),)], id="self_send"),
    ],
)
def test_check_matched_rejects(scheds):
    with pytest.raises(AssertionError):
        check_matched(scheds)


@pytest.mark.parametrize("p", PS)
def test_incoming_first_higher_rank(p):
    for name, fn in [("rd", rd.allreduce_rounds), ("rabenseifner", rabenseifner.allreduce_rounds)]:
        scheds = everyone(fn, p, 6)
        for rank, rounds in enumerate(scheds):
            for t, rnd in enumerate(rounds):
                for v in rnd.recvs:
                    if v.reduce and name == "rd":
                        # both partners reduce the same pair (or the survivor folds its extra in)
                        mirror = [w for w in scheds[v.peer][t].recvs if w.peer == rank]
                        assert len(mirror) <= 1
                        flags = {rank: v.incoming_first}
                        if mirror:
                            flags[v.peer] = mirror[0].incoming_first
                        else:
                            assert v.peer == rank - 1 and t == 0  # fold-in from an extra
                        assert [r for r, f in flags.items() if f] == [max(rank, v.peer)]
                    elif v.reduce and v.peer < rank:
                        if not any(s.peer == v.peer for s in rnd.sends):
                            assert v.incoming_first  # rabenseifner fold-in
