"""Measured messages, bytes and rounds per rank against each algorithm's textbook formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

import collectives
from collectives.runtime import traffic
from collectives.algorithms._fold import pow2_below
from collectives.algorithms.double_binary_tree import trees
from collectives.algorithms.schedule import partition
from conftest import collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

ITEM = 8  # float64


def measure(family: str, algorithm: str, n: int) -> traffic.Traffic:
    x = np.ones(n, np.float64)
    with traffic.count() as t:
        if family == "allreduce":
            collectives.allreduce(x, algorithm=algorithm)
        elif family == "allgather":
            collectives.allgather(x, algorithm=algorithm)
        elif family == "reduce_scatter":
            collectives.reduce_scatter(x, algorithm=algorithm)
        else:
            collectives.broadcast(x, 0, algorithm=algorithm)
    return t


def verdict(ok: bool, t, expected: str) -> None:
    collective_assert(world(), ok, f"measured {t}, expected {expected}")


def test_ring_allreduce():
    p = world().Get_size()
    n = 840 * 6  # divisible by 1..8
    t = measure("allreduce", "ring", n)
    want_bytes = 2 * (p - 1) * n // p * ITEM
    verdict(t.messages_sent == 2 * (p - 1) and t.bytes_sent == want_bytes and t.bytes_received == want_bytes
            and t.rounds == 2 * (p - 1), t, f"2(P-1) messages, {want_bytes} bytes")


def test_ring_allreduce_with_uneven_chunks_stays_within_rounding():
    p = world().Get_size()
    n = 1009
    t = measure("allreduce", "ring", n)
    exact = 2 * (p - 1) / p * n * ITEM
    verdict(abs(t.bytes_sent - exact) <= 2 * (p - 1) * ITEM, t, f"about {exact} bytes")


def test_naive_ps_root_receives_p_minus_one_vectors():
    comm = world()
    p, n = comm.Get_size(), 1000
    t = measure("allreduce", "naive_ps", n)
    if comm.Get_rank() == 0:
        ok = t.bytes_received == (p - 1) * n * ITEM and t.bytes_sent == (p - 1) * n * ITEM
    else:
        ok = t.bytes_sent == n * ITEM and t.bytes_received == n * ITEM
    verdict(ok and t.rounds == (2 if p > 1 else 0), t, "root: (P-1)n in and out; others n")


@pytest.mark.parametrize("n", [840, 1009])
def test_sharded_ps(n):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    t = measure("allreduce", "sharded_ps", n)
    off = partition(n, p)
    own = off[rank + 1] - off[rank]
    want = ((n - own) + (p - 1) * own) * ITEM  # others' slices out, then own slice to everyone
    nonempty = sum(off[r + 1] > off[r] for r in range(p) if r != rank) + (p - 1) * (own > 0)
    verdict(t.messages_sent == nonempty and t.bytes_sent == want and t.rounds <= 2, t,
            f"{nonempty} messages, {want} bytes: 2(P-1)/P n up to rounding")


def test_recursive_doubling_rounds():
    comm = world()
    p, rank, n = comm.Get_size(), comm.Get_rank(), 999
    t = measure("allreduce", "recursive_doubling", n)
    p2 = pow2_below(p)
    rem = p - p2
    lg = int(math.log2(p2))
    if rank < 2 * rem and rank % 2 == 0:  # an extra: hands its vector over, gets the result back
        want_rounds, want_sends = 2, 1
    elif rank < 2 * rem:  # its partner: log2(p2) exchanges between the fold-in and fold-out
        want_rounds, want_sends = lg + 2, lg + 1
    else:
        want_rounds, want_sends = lg, lg
    verdict(t.rounds == want_rounds and t.bytes_sent == want_sends * n * ITEM,
            t, f"{want_rounds} rounds, {want_sends} sends of n elements")


def test_rabenseifner_volume():
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    n = 1024 * 3
    t = measure("allreduce", "rabenseifner", n)
    p2 = pow2_below(p)
    rem = p - p2
    lg = int(math.log2(p2))
    if rank < 2 * rem and rank % 2 == 0:
        ok = t.rounds == 2 and t.bytes_sent == n * ITEM
    else:
        core = 2 * (p2 - 1) * n // p2 * ITEM  # halving + doubling among the survivors
        extra = n * ITEM if rank < 2 * rem else 0
        ok = t.rounds == 2 * lg + (2 if rank < 2 * rem else 0) and t.bytes_sent == core + extra
    verdict(ok, t, "2 log2(p2) rounds, 2(p2-1)/p2 n bytes (+ fold)")


def test_double_binary_tree_carries_about_n_per_rank():
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    n = 4096
    registry = collectives.runtime.registry
    t = measure("allreduce", "double_binary_tree", n)
    # each tree moves its half once up and once down each edge touching this rank
    halves = (n // 2, n - n // 2)
    want = 0
    for k, tree in enumerate(trees(p)):
        parent, kids = tree[rank]
        want += halves[k] * ((parent >= 0) + len(kids))
    chunk = registry.TREE_CHUNK_BYTES // ITEM
    verdict(t.bytes_sent == want * ITEM and t.bytes_received == want * ITEM and chunk > 0, t, f"{want * ITEM} bytes")


def test_bruck_and_recursive_doubling_allgather_rounds():
    p = world().Get_size()
    m = 100
    t = measure("allgather", "bruck", m)
    want = math.ceil(math.log2(p)) if p > 1 else 0
    verdict(t.rounds == want and t.bytes_received == (p - 1) * m * ITEM, t, f"{want} rounds, (P-1)m bytes in")
    t = measure("allgather", "ring", m)
    verdict(t.rounds == p - 1 and t.bytes_sent == (p - 1) * m * ITEM, t, "P-1 rounds, (P-1)m bytes")


def test_binomial_broadcast():
    comm = world()
    p, n = comm.Get_size(), 500
    t = measure("broadcast", "binomial", n)
    total = comm.allreduce(t.bytes_received)
    verdict(total == (p - 1) * n * ITEM and (comm.Get_rank() == 0 or t.bytes_received == n * ITEM), t, "every non-root receives n once")


def test_mpi_is_opaque_to_the_counter():
    t = measure("allreduce", "mpi", 100)
    verdict(t.messages_sent == 0 and t.rounds == 0, t, "nothing counted for the library's own")
