"""Schedules without MPI: hand-worked tables for small P, and a simulated sweep over P and n."""

from __future__ import annotations

import numpy as np
import pytest

from collectives.algorithms import binomial, bruck, double_binary_tree, naive_ps, rabenseifner
from collectives.algorithms import recursive_doubling, ring, scatter_allgather, sharded_ps
from collectives.algorithms.schedule import Recv, Round, Send, check_matched, partition, simulate


def peers(rounds):
    """Per round: (sorted send peers, sorted recv peers)."""
    return [(sorted(s.peer for s in r.sends), sorted(v.peer for v in r.recvs)) for r in rounds]


def test_ring_p3_rank0_by_hand():
    # RS step s: send block r-s-1 right, reduce block r-s-2 from the left; AG: send r-s, copy r-s-1
    want = [(1, 2, 2, 1, True), (1, 1, 2, 0, True), (1, 0, 2, 2, False), (1, 2, 2, 1, False)]
    got = [(r.sends[0].peer, r.sends[0].lo, r.recvs[0].peer, r.recvs[0].lo, r.recvs[0].reduce)
           for r in ring.allreduce_rounds(0, 3, 3)]
    assert got == want


@pytest.mark.parametrize("p", [1, 2, 3, 5, 6, 8])
def test_ring_rank_owns_its_block_after_reduce_scatter(p):
    off = partition(6 * p, p)
    for r in range(p):
        last = ring.reduce_scatter_rounds(r, p, off)[-1] if p > 1 else None
        if last:
            assert (last.recvs[0].lo, last.recvs[0].hi) == (off[r], off[r + 1])


RD = {  # rank -> per round (sends, recvs); P=6: extras 0 and 2 fold into 1 and 3
    (6, 0): [([1], []), ([], []), ([], []), ([], [1])],
    (6, 1): [([], [0]), ([3], [3]), ([4], [4]), ([0], [])],
    (6, 3): [([], [2]), ([1], [1]), ([5], [5]), ([2], [])],
    (6, 4): [([], []), ([5], [5]), ([1], [1])],
    (6, 5): [([], []), ([4], [4]), ([3], [3])],
    (5, 0): [([1], []), ([], []), ([], []), ([], [1])],
    (5, 1): [([], [0]), ([2], [2]), ([3], [3]), ([0], [])],
    (5, 4): [([], []), ([3], [3]), ([2], [2])],
    (8, 5): [([4], [4]), ([7], [7]), ([1], [1])],
    (3, 2): [([], []), ([1], [1])],
    (2, 0): [([1], [1])],
    (1, 0): [],
}


@pytest.mark.parametrize("p,rank", sorted(RD))
def test_recursive_doubling_partners_by_hand(p, rank):
    assert peers(recursive_doubling.allreduce_rounds(rank, p, 10)) == RD[(p, rank)]


def test_recursive_doubling_higher_rank_puts_incoming_first():
    for p in range(2, 18):
        for r in range(p):
            for rnd in recursive_doubling.allreduce_rounds(r, p, 4):
                for v in rnd.recvs:
                    if v.reduce:
                        assert v.incoming_first == (v.peer < r)


def test_rabenseifner_halving_p8_rank5_by_hand():
    # n = 8, one element per block: 5 keeps upper half [4,8) vs 1, then [4,6) vs 7, then [5,6) vs 4
    rounds = rabenseifner.reduce_scatter_rounds(5, 8, partition(8, 8))
    got = [(r.sends[0].peer, (r.sends[0].lo, r.sends[0].hi), (r.recvs[0].lo, r.recvs[0].hi)) for r in rounds]
    assert got == [(1, (0, 4), (4, 8)), (7, (6, 8), (4, 6)), (4, (4, 5), (5, 6))]


def test_rabenseifner_reduce_scatter_p3_by_hand():
    off = partition(3, 3)  # one element each; rank 0 is the extra, folded into rank 1
    assert peers(rabenseifner.reduce_scatter_rounds(0, 3, off)) == [([1], []), ([], []), ([], [1])]
    r1 = rabenseifner.reduce_scatter_rounds(1, 3, off)
    assert peers(r1) == [([], [0]), ([2], [2]), ([0], [])]
    assert (r1[1].recvs[0].lo, r1[1].recvs[0].hi) == (0, 2)  # survivor 0 owns ranks 0 and 1's blocks
    assert (r1[2].sends[0].lo, r1[2].sends[0].hi) == (0, 1)  # and hands block 0 to rank 0


BRUCK = {  # (p, rank) -> per round (dest, src, blocks sent)
    (3, 1): [(0, 2, 1), (2, 0, 1)],
    (5, 2): [(1, 3, 1), (0, 4, 2), (3, 1, 1)],
    (6, 0): [(5, 1, 1), (4, 2, 2), (2, 4, 2)],
    (8, 3): [(2, 4, 1), (1, 5, 2), (7, 7, 4)],
}


@pytest.mark.parametrize("key", sorted(BRUCK))
def test_bruck_by_hand(key):
    p, rank = key
    off = partition(p, p)
    got = [(r.sends[0].peer, r.recvs[0].peer, r.sends[0].count) for r in bruck.allgather_rounds(rank, p, off)]
    assert got == BRUCK[key]


TREES = {
    1: [(-1, ())],
    2: [(-1, (1,)), (0, ())],
    3: [(-1, (2,)), (2, ()), (0, (1,))],
    5: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2,))],
    6: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2, 5)), (4, ())],
    8: [(-1, (4,)), (2, ()), (4, (1, 3)), (2, ()), (0, (2, 6)), (6, ()), (4, (5, 7)), (6, ())],
}


@pytest.mark.parametrize("p", sorted(TREES))
def test_btree_by_hand(p):
    assert [double_binary_tree.btree(p, r) for r in range(p)] == TREES[p]


@pytest.mark.parametrize("p", range(1, 33))
def test_double_tree_is_two_spanning_trees_mirrored_or_shifted(p):
    t0, t1 = double_binary_tree.trees(p)
    m = (lambda r: (r + 1) % p) if p % 2 else (lambda r: p - 1 - r)
    for tree in (t0, t1):
        for r, (parent, kids) in enumerate(tree):
            for k in kids:
                assert tree[k][0] == r
            seen, x = 0, r
            while tree[x][0] >= 0:
                x, seen = tree[x][0], seen + 1
                assert seen <= p
    for r in range(p):
        parent, kids = t0[r]
        assert t1[m(r)] == ((-1 if parent < 0 else m(parent)), tuple(m(k) for k in kids))
    if p % 2 == 0:  # mirrored: inner nodes of tree 0 are even, of tree 1 odd
        assert not [r for r in range(p) if t0[r][1] and t1[r][1]]


def test_binomial_p5_root2_by_hand():
    got = [[(r, s.peer) for r in range(5) for s in binomial.broadcast_rounds(r, 5, 4, 2)[k].sends]
           for k in range(3)]
    assert got == [[(2, 3)], [(2, 4), (3, 0)], [(2, 1)]]


def test_parameter_servers_p3_by_hand():
    assert naive_ps.allreduce_rounds(0, 3, 6) == (
        Round(recvs=(Recv(1, 0, 6, reduce=True), Recv(2, 0, 6, reduce=True))),
        Round(sends=(Send(1, 0, 6), Send(2, 0, 6))),
    )
    assert naive_ps.allreduce_rounds(2, 3, 6) == (Round(sends=(Send(0, 0, 6),)), Round(recvs=(Recv(0, 0, 6),)))
    assert sharded_ps.allreduce_rounds(1, 3, 6) == (
        Round((Send(0, 0, 2), Send(2, 4, 6)), (Recv(0, 2, 4, reduce=True), Recv(2, 2, 4, reduce=True))),
        Round((Send(0, 2, 4), Send(2, 2, 4)), (Recv(0, 0, 2), Recv(2, 4, 6))),
    )


def test_check_matched_catches_mistakes():
    with pytest.raises(AssertionError, match="unmatched"):
        check_matched([(Round(sends=(Send(1, 0, 2),)),), (Round(),)])
    with pytest.raises(AssertionError, match="size mismatch"):
        check_matched([(Round(sends=(Send(1, 0, 2),)),), (Round(recvs=(Recv(0, 0, 3),)),)])


SWEEP_P = list(range(1, 18))


def _counts(p):
    return sorted({0, 1, max(p - 1, 0), 7, 13, 100, 5 * p + 3})


@pytest.mark.parametrize("p", SWEEP_P)
def test_simulated_allreduce_every_algorithm(p):
    rng = np.random.default_rng()
    for n in _counts(p):
        xs = [rng.integers(-100, 100, n) for _ in range(p)]
        ref = np.sum(xs, axis=0)
        for name, f in [
            ("ring", lambda r: ring.allreduce_rounds(r, p, n)),
            ("ring segmented", lambda r: ring.allreduce_rounds(r, p, n, 3)),
            ("recursive_doubling", lambda r: recursive_doubling.allreduce_rounds(r, p, n)),
            ("rabenseifner", lambda r: rabenseifner.allreduce_rounds(r, p, n)),
            ("tree chunk 1", lambda r: double_binary_tree.allreduce_rounds(r, p, n, 1)),
            ("tree chunk 3", lambda r: double_binary_tree.allreduce_rounds(r, p, n, 3)),
            ("tree chunk 1000", lambda r: double_binary_tree.allreduce_rounds(r, p, n, 1000)),
            ("tree chunk 0", lambda r: double_binary_tree.allreduce_rounds(r, p, n, 0)),
            ("naive_ps", lambda r: naive_ps.allreduce_rounds(r, p, n)),
            ("sharded_ps", lambda r: sharded_ps.allreduce_rounds(r, p, n)),
        ]:
            out = simulate([f(r) for r in range(p)], [x.copy() for x in xs])
            assert all(np.array_equal(o, ref) for o in out), (name, n)


@pytest.mark.parametrize("p", SWEEP_P)
def test_simulated_reduce_scatter_allgather_broadcast(p):
    rng = np.random.default_rng()
    for n in _counts(p):
        off = partition(n, p)
        xs = [rng.integers(-100, 100, n) for _ in range(p)]
        ref = np.sum(xs, axis=0)
        for f in (ring.reduce_scatter_rounds, rabenseifner.reduce_scatter_rounds):
            out = simulate([f(r, p, off) for r in range(p)], [x.copy() for x in xs])
            for r in range(p):
                assert np.array_equal(out[r][off[r]:off[r + 1]], ref[off[r]:off[r + 1]])
        full = rng.integers(-100, 100, n)
        for f in (ring.allgather_rounds, recursive_doubling.allgather_rounds):
            works = [np.full(n, -1) for _ in range(p)]
            for r in range(p):
                works[r][off[r]:off[r + 1]] = full[off[r]:off[r + 1]]
            assert all(np.array_equal(o, full) for o in simulate([f(r, p, off) for r in range(p)], works))
        works = []
        for r in range(p):
            rot = bruck.rotated_offsets(r, p, off)
            w = np.full(n, -1)
            w[: rot[1]] = full[off[r]:off[r + 1]]
            works.append(w)
        out = simulate([bruck.allgather_rounds(r, p, off) for r in range(p)], works)
        for r in range(p):
            want = np.concatenate([full[off[(r + i) % p]:off[(r + i) % p + 1]] for i in range(p)])
            assert np.array_equal(out[r], want)
        for root in range(p):
            for f in (binomial.broadcast_rounds, scatter_allgather.broadcast_rounds):
                works = [np.full(n, -1) for _ in range(p)]
                works[root] = full.copy()
                assert all(np.array_equal(o, full) for o in simulate([f(r, p, n, root) for r in range(p)], works))
