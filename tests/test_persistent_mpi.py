"""Persistent all-reduces (``allreduce_init``): the same bits as the call, every algorithm, and the check at each run."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.runtime import traffic
from collectives.runtime.communicator import unchecked
from conftest import collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

MPI = pytest.importorskip("mpi4py.MPI")
ALL = collectives.ALGORITHMS["allreduce"]


def _input(n: int, rank: int, step: int) -> np.ndarray:
    return np.random.default_rng(100 * rank + step).standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("algorithm", ALL)
def test_runs_equal_the_call_bit_for_bit(algorithm):
    comm = world()
    rank = comm.Get_rank()
    for n, op, how in ((1, "sum", "in place"), (1009, "avg", "out of place"), (3, "min", "new recvbuf")):
        send = _input(n, rank, 0)
        recv = send if how == "in place" else np.empty_like(send) if how == "out of place" else None
        step = collectives.allreduce_init(send, recv, op=op, algorithm=algorithm, comm=comm)
        collective_assert(comm, step.algorithm in ALL and step.algorithm != "auto", step.algorithm)
        for k in range(3):  # new contents each run, as a training step's gradients
            send[...] = _input(n, rank, k)
            want = collectives.allreduce(send.copy(), op=op, algorithm=step.algorithm, comm=comm)
            got = step.run()
            collective_assert(comm, got is step.recvbuf and (how != "in place" or got is send))
            collective_assert(comm, got.tobytes() == want.tobytes(), f"{algorithm} {op} {how} run {k}")


@pytest.mark.parametrize("dtype,n", [("float16", 7), ("float32", (1 << 18) + 1), ("float64", 0)])
def test_what_is_not_compiled_runs_as_the_call(dtype, n):
    comm = world()
    send = np.full(n, comm.Get_rank() + 1, dtype)
    step = collectives.allreduce_init(send, algorithm="ring", comm=comm)
    for _ in range(2):
        got = step.run()
    p = comm.Get_size()
    np.testing.assert_array_equal(got, np.full(n, p * (p + 1) // 2, dtype))


def test_runs_count_the_calls_traffic():
    comm = world()
    send = np.ones(100, np.float32)
    with traffic.count() as call:
        collectives.allreduce(send, algorithm="ring", comm=comm)
    step = collectives.allreduce_init(send, algorithm="ring", comm=comm)
    with traffic.count() as run:
        step.run()
    assert run == call


def test_the_init_refuses_a_bad_buffer_on_every_rank():
    with pytest.raises(collectives.CollectiveError, match="not C-contiguous"):
        collectives.allreduce_init(np.ones(8, np.float32)[::2], comm=world())


@pytest.mark.mpi(min_size=2)
def test_ranks_running_different_operations_raise_together_under_the_check():
    comm = world()
    four = collectives.allreduce_init(np.ones(4, np.float32), comm=comm)
    five = collectives.allreduce_init(np.ones(5, np.float32), comm=comm)
    with pytest.raises(collectives.CollectiveError, match="disagree"):
        (four if comm.Get_rank() == 0 else five).run()


def test_runs_without_the_check_send_no_agreement():
    comm = world()
    step = collectives.allreduce_init(np.ones(4, np.float32), algorithm="mpi", comm=comm)
    with unchecked():
        got = step.run()
    np.testing.assert_array_equal(got, np.full(4, comm.Get_size(), np.float32))


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize("algorithm", ["ring", "mpi"])
def test_a_run_refuses_buffers_changed_since_the_init(algorithm, checked):
    """Every rank changes its receive buffer alike, so every rank raises, with the check mode or without."""
    comm = world()
    send, recv = np.ones(6, np.float32), np.zeros(6, np.float32)
    step = collectives.allreduce_init(send, recv, algorithm=algorithm, comm=comm)
    recv.flags.writeable = False
    with pytest.raises(collectives.CollectiveError, match="recvbuf of a persistent all-reduce changed"):
        if checked:
            step.run()
        else:
            with unchecked():
                step.run()
    recv.flags.writeable = True
    send.dtype = np.int32  # re-typed in place
    with pytest.raises(collectives.CollectiveError, match="sendbuf of a persistent all-reduce changed"):
        step.run()
    send.dtype = np.float32
    np.testing.assert_array_equal(step.run(), np.full(6, comm.Get_size(), np.float32))
