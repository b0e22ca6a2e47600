"""collectives.allreduce_start: many all-reduces in flight at once, progressed in any pattern, against MPI's own."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import CollectiveError
from collectives.runtime.communicator import PENDING_SLOTS
from conftest import world

pytestmark = pytest.mark.mpi(min_size=1)
NAMES = collectives.ALGORITHMS["allreduce"]


def _same_everywhere(comm, a) -> bool:
    return len(set(comm.allgather(a.tobytes()))) == 1


@pytest.mark.parametrize("algorithm", NAMES)
@pytest.mark.parametrize("op", ["sum", "max", "avg"])
def test_more_in_flight_than_slots_match_mpi(algorithm, op):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    counts = [0, 1, 7, max(p - 1, 1), 1000, 3 * p + 1, 50_003] * 2  # 14 > PENDING_SLOTS
    assert len(counts) > PENDING_SLOTS
    rng = np.random.default_rng(rank)
    xs = [rng.integers(-100, 100, n).astype(np.int64 if op != "avg" else np.float64) for n in counts]
    from mpi4py import MPI

    want = []
    for x in xs:
        w = np.empty_like(x)
        comm.Allreduce(x, w, op=MPI.MAX if op == "max" else MPI.SUM)
        want.append(w / p if op == "avg" else w)
    outs = [np.empty_like(x) for x in xs]
    pending = [collectives.allreduce_start(x, y, op=op, algorithm=algorithm, comm=comm) for x, y in zip(xs, outs)]
    # a blocking all-reduce in the middle must not disturb them
    z = collectives.allreduce(np.full(5, rank, np.int64), algorithm="ring", comm=comm)
    np.testing.assert_array_equal(z, np.full(5, p * (p - 1) // 2))
    for k in range(3):
        for pend in pending[k::2]:
            pend.progress()
    for pend, y, w in zip(reversed(pending), reversed(outs), reversed(want)):
        assert pend.wait() is y and pend.done and pend.progress()
    for y, w in zip(outs, want):
        if op == "avg":
            np.testing.assert_allclose(y, w, rtol=1e-12)
        else:
            np.testing.assert_array_equal(y, w)
        assert _same_everywhere(comm, y)


def test_bad_input_raises_on_every_rank_before_any_message():
    from collectives.runtime.communicator import check_enabled

    comm = world()
    was = check_enabled()
    collectives.set_check(True)
    try:
        if comm.Get_size() > 1:
            bad = np.zeros(3, np.float32) if comm.Get_rank() else np.zeros(4, np.float32)
            with pytest.raises(CollectiveError, match="disagree"):
                collectives.allreduce_start(bad, algorithm="ring", comm=comm)
        with pytest.raises(CollectiveError, match="unknown allreduce algorithm"):
            collectives.allreduce_start(np.zeros(3), algorithm="smoke_signals", comm=comm)
    finally:
        collectives.set_check(was)
