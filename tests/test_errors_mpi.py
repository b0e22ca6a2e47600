"""Bad input raises CollectiveError on every rank before the first message, never hangs."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import CollectiveError
from collectives.runtime import traffic
from conftest import collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)


def raises_everywhere(call, match: str) -> None:
    """``call`` raises a CollectiveError matching ``match`` on every rank, having sent nothing."""
    comm = world()
    with traffic.count() as t:
        try:
            call()
            outcome = "no error"
        except CollectiveError as e:
            outcome = "ok" if match.lower() in str(e).lower() else f"wrong message: {e}"
    collective_assert(comm, outcome == "ok", outcome)
    collective_assert(comm, t.messages_sent == 0 and t.messages_received == 0, f"sent {t}")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allreduce"])
def test_counts_differ_across_ranks(algorithm):
    rank = world().Get_rank()
    x = np.ones(100 + (rank == 0), np.float32)
    raises_everywhere(lambda: collectives.allreduce(x, algorithm=algorithm), "disagree")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allreduce"])
def test_dtypes_differ_across_ranks(algorithm):
    rank = world().Get_rank()
    x = np.ones(100, np.float32 if rank == 0 else np.float64)
    raises_everywhere(lambda: collectives.allreduce(x, algorithm=algorithm), "disagree")


def test_non_contiguous_on_one_rank():
    rank = world().Get_rank()
    x = np.ones(200, np.float64)
    x = x[::2] if rank == 0 else x[:100]
    raises_everywhere(lambda: collectives.allreduce(x), "contiguous")


def test_wrong_recvbuf_size_on_one_rank():
    rank = world().Get_rank()
    x = np.ones(64, np.int32)
    r = np.empty(64 + (rank == world().Get_size() - 1), np.int32)
    raises_everywhere(lambda: collectives.allreduce(x, r), "recvbuf has")


def test_recvbuf_dtype_mismatch():
    x = np.ones(64, np.int32)
    raises_everywhere(lambda: collectives.allreduce(x, np.empty(64, np.int64)), "dtype")


def test_overlapping_buffers():
    x = np.ones(64, np.float32)
    raises_everywhere(lambda: collectives.allreduce(x[:32], x[16:48]), "overlaps")


@pytest.mark.parametrize("bad", [np.ones(4, np.complex64), np.ones(4, np.uint8), [1.0, 2.0], np.ones(4, bool)])
def test_unsupported_buffer(bad):
    raises_everywhere(lambda: collectives.allreduce(bad), "")


def test_unknown_op():
    raises_everywhere(lambda: collectives.allreduce(np.ones(4), op="mean"), "unknown op")


def test_unknown_algorithm():
    raises_everywhere(lambda: collectives.allreduce(np.ones(4), algorithm="butterfly"), "unknown allreduce algorithm")
    raises_everywhere(lambda: collectives.allgather(np.ones(4), algorithm="sharded_ps"), "unknown allgather")


def test_avg_on_integers_is_refused():
    raises_everywhere(lambda: collectives.allreduce(np.ones(4, np.int64), op="avg"), "floating dtype")


def test_bad_root():
    p = world().Get_size()
    raises_everywhere(lambda: collectives.broadcast(np.ones(4), root=p), "root")


@pytest.mark.mpi(min_size=2)
def test_root_differs_across_ranks():
    comm = world()
    raises_everywhere(lambda: collectives.broadcast(np.ones(4), root=comm.Get_rank() % 2), "disagree")


@pytest.mark.mpi(min_size=2)
def test_allgather_count_mismatch():
    rank = world().Get_rank()
    raises_everywhere(lambda: collectives.allgather(np.ones(3 + (rank == 0))), "disagree")


def test_allgather_and_reduce_scatter_validate_too():
    raises_everywhere(lambda: collectives.reduce_scatter(np.ones(10), np.empty(99)), "recvbuf has")
    raises_everywhere(lambda: collectives.allgather(np.ones(10)[::2]), "contiguous")


def test_unknown_names_raise_without_check_mode():
    collectives.set_check(False)
    try:
        raises_everywhere(lambda: collectives.allreduce(np.ones(4), algorithm="nope"), "unknown")
        raises_everywhere(lambda: collectives.allreduce(np.ones(4), op="nope"), "unknown op")
    finally:
        collectives.set_check(True)


def test_library_works_after_errors(rng):
    comm = world()
    x = rng.integers(0, 10, 50)
    ref = np.empty_like(x)
    from mpi4py import MPI

    comm.Allreduce(x, ref, op=MPI.SUM)
    collective_assert(comm, np.array_equal(collectives.allreduce(x, algorithm="ring"), ref))
