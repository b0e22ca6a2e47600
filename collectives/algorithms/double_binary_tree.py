"""NCCL-style double binary tree: two complementary trees, each carrying half the data.

Tree 0 is NCCL's in-order binary tree rooted at rank 0, in which the odd
ranks are leaves.  Tree 1 is its mirror (``r -> P-1-r``) when P is even and
its shift by one (``r -> r+1``) when P is odd, so a rank that is a leaf in one
tree is an inner node in the other (for even P no rank is inner in both; for
odd P only rank 0), and each rank sends between ``n`` and ``2n`` bytes.  Each
half is cut into chunks that are pipelined up the tree (reduce) and straight
back down (broadcast); with ``C`` chunks and height ``H`` the all-reduce takes
``C + 2H - 1`` rounds.

The schedule is in global steps: the node of height ``h`` sends chunk ``c``
to its parent in step ``c + h``; the node of depth ``d`` sends chunk ``c`` to
its children in step ``c + H + d``.
"""

from __future__ import annotations

from functools import lru_cache

from .schedule import Recv, Round, Send, partition

__all__ = ["btree", "trees", "allreduce_rounds"]


def btree(p: int, rank: int) -> tuple[int, tuple[int, ...]]:
    """NCCL's binary tree over ranks ``0 .. p-1``: ``(parent, children)`` of ``rank``.

    The parent of the root (rank 0) is -1.  Rank 0 has one child, the
    largest power of two below ``p``.
    """
    bit = 1
    while bit < p and not bit & rank:
        bit <<= 1
    if rank == 0:
        return -1, ((bit >> 1,) if p > 1 else ())
    up = (rank ^ bit) | (bit << 1)
    if up >= p:
        up = rank ^ bit
    low = bit >> 1
    children = []
    if low:
        children.append(rank - low)
        while low and rank + low >= p:
            low >>= 1
        if low:
            children.append(rank + low)
    return up, tuple(children)


@lru_cache(maxsize=64)
def trees(p: int) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]:
    """The two trees: ``trees(p)[t][r] == (parent, children)`` of rank ``r`` in tree ``t``."""
    first = tuple(btree(p, r) for r in range(p))
    if p % 2:
        m = lambda r: (r + 1) % p  # noqa: E731
        src = lambda r: (r - 1) % p  # noqa: E731
    else:
        m = lambda r: p - 1 - r  # noqa: E731
        src = m
    second = []
    for r in range(p):
        parent, kids = first[src(r)]
        second.append((-1 if parent < 0 else m(parent), tuple(m(k) for k in kids)))
    return first, tuple(second)


def _shape(tree) -> tuple[list[int], list[int], int]:
    """Height of every node (leaves 0), depth of every node (root 0), and the root."""
    p = len(tree)
    root = next(r for r in range(p) if tree[r][0] < 0)
    depth = [0] * p
    order = [root]
    for r in order:
        for k in tree[r][1]:
            depth[k] = depth[r] + 1
            order.append(k)
    height = [0] * p
    for r in reversed(order):
        for k in tree[r][1]:
            height[r] = max(height[r], height[k] + 1)
    return height, depth, root


@lru_cache(maxsize=256)
def allreduce_rounds(rank: int, p: int, n: int, chunk: int) -> tuple[Round, ...]:
    """Double-binary-tree all-reduce of ``n`` elements in chunks of ``chunk`` elements.

    ``chunk <= 0`` sends each half as one chunk (no pipelining).

    Tree ``t`` reduces and broadcasts ``work[half[t]:half[t+1]]`` with
    ``half = partition(n, 2)``.  Tags: ``2t`` going up, ``2t + 1`` going down.
    """
    halves = partition(n, 2)
    steps: dict[int, tuple[list, list]] = {}

    def at(step):
        return steps.setdefault(step, ([], []))

    for t, tree in enumerate(trees(p)):
        lo, hi = halves[t], halves[t + 1]
        if hi == lo or p == 1:
            continue
        step = chunk if chunk > 0 else hi - lo  # chunk <= 0: no pipelining, one chunk per half
        chunks = [(a, min(a + step, hi)) for a in range(lo, hi, step)]
        height, depth, root = _shape(tree)
        top = height[root]
        parent, kids = tree[rank]
        for c, (a, b) in enumerate(chunks):
            for k in kids:  # reduce: receive chunk c from child k in k's send step
                at(c + height[k])[1].append(Recv(k, a, b, 2 * t, reduce=True))
            if parent >= 0:
                at(c + height[rank])[0].append(Send(parent, a, b, 2 * t))
                at(c + top + depth[rank] - 1)[1].append(Recv(parent, a, b, 2 * t + 1))
            for k in kids:
                at(c + top + depth[rank])[0].append(Send(k, a, b, 2 * t + 1))
    if not steps:
        return ()
    last = max(steps)
    return tuple(
        Round(tuple(steps[s][0]), tuple(steps[s][1])) if s in steps else Round()
        for s in range(last + 1)
    )
