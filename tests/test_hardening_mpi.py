"""Careless calls end in a correct result or a CollectiveError on every rank: threads, check mode, read-only
buffers, mismatches, the order of nonblocking starts, NaN under every algorithm, COMM_NULL."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from mpi4py import MPI

import collectives
from collectives import CollectiveError
from collectives.runtime import communicator as _comm
from numa import threads
from conftest import collective_assert, world
from test_errors_mpi import raises_everywhere

pytestmark = pytest.mark.mpi(min_size=1)
ALLREDUCE = collectives.ALGORITHMS["allreduce"]


@pytest.mark.parametrize("algorithm,n,rounds", [("ring", 1 << 14, 20), ("recursive_doubling", 1 << 18, 4)],
                         ids=["ring-128KiB", "rd-2MiB-threaded-kernels"])
def test_two_threads_on_their_own_communicators_get_their_own_results(algorithm, n, rounds):
    """Each thread runs all-reduces on its own duplicate; the engine's scratch must not be shared.

    Recursive doubling reduces the whole 2 MiB vector in every round, and with two Numba threads per
    rank it runs the multithreaded kernels, launched from both Python threads at once."""
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    comms = [comm.Dup() for _ in range(2)]
    wrong = [0, 0]
    _comm.library_comm(comm)  # threads per rank configured as by any call, so that they are restored after
    was = threads.count()
    if n * 8 >= collectives.runtime.reduce_ops.PARALLEL_BYTES:
        threads.configure(2)
    start = threading.Barrier(2)

    def work(t):
        start.wait()
        for i in range(rounds):
            x = np.full(n, (t + 1) * 1000 + i + rank, np.float64)
            y = collectives.allreduce(x, algorithm=algorithm, comm=comms[t])
            want = p * ((t + 1) * 1000 + i) + p * (p - 1) / 2
            wrong[t] += int(not np.all(y == want))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in workers:
        th.start()
    for th in workers:
        th.join(timeout=120)
    threads.configure(was)
    for c in comms:
        c.Free()
    collective_assert(comm, not any(th.is_alive() for th in workers), "a thread hung")
    collective_assert(comm, wrong == [0, 0], f"wrong results per thread: {wrong}")


def test_a_second_thread_on_a_busy_communicator_is_refused():
    comm = world()
    lib = _comm.library_comm(comm)
    caught = []
    with _comm.hold(lib):  # as a call running in another thread holds it
        th = threading.Thread(target=lambda: caught.append(_raises(lambda: collectives.allreduce(np.ones(3)))))
        th.start()
        th.join(timeout=60)
    collective_assert(comm, caught and "another thread" in caught[0], f"got {caught}")
    collective_assert(comm, np.all(collectives.allreduce(np.ones(3)) == comm.Get_size()), "not usable after")


def _raises(call) -> str:
    try:
        call()
    except CollectiveError as e:
        return str(e)
    return "no error"


@pytest.mark.mpi(min_size=2)
def test_set_check_on_one_rank_alone_raises_on_every_rank():
    """Rank 0 turns the check on again alone while the others call: every rank raises, nobody hangs."""
    comm = world()
    x = np.ones(8, np.float32)
    if comm.Get_rank() == 0:
        outcome = _raises(lambda: collectives.set_check(True))
    else:
        outcome = _raises(lambda: collectives.allreduce(x, algorithm="ring"))
    collective_assert(comm, "disagree" in outcome and "set_check" in outcome, outcome)
    collective_assert(comm, _comm.check_enabled(), "the mode changed on a rank")


@pytest.mark.mpi(min_size=2)
def test_check_modes_that_differ_when_a_communicator_is_first_used_raise_on_every_rank(monkeypatch):
    comm = world()
    if comm.Get_rank() == 0:
        monkeypatch.setattr(_comm, "_check", False)  # as COLLECTIVES_CHECK=0 on rank 0 alone
    fresh = comm.Dup()
    try:
        outcome = _raises(lambda: collectives.allreduce(np.ones(4), comm=fresh))
    finally:
        fresh.Free()
    collective_assert(comm, "check mode" in outcome and "rank 0: off" in outcome, outcome)


@pytest.mark.parametrize("value,on", [("", True), ("1", True), ("true", True), ("On", True), ("yes", True),
                                      ("0", False), ("False", False), ("off", False), ("NO", False)])
def test_the_environment_turns_the_check_on_or_off(monkeypatch, value, on):
    monkeypatch.setenv("COLLECTIVES_CHECK", value)
    assert _comm._check_from_environment() is on


def test_an_unclear_environment_value_is_refused(monkeypatch):
    monkeypatch.setenv("COLLECTIVES_CHECK", "maybe")
    with pytest.raises(CollectiveError, match="COLLECTIVES_CHECK='maybe'"):
        _comm._check_from_environment()
    monkeypatch.delenv("COLLECTIVES_CHECK")
    assert _comm._check_from_environment() is True  # on by default


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("everywhere", [True, False])
@pytest.mark.parametrize("call", ["allreduce", "allreduce_start", "allgather", "reduce_scatter", "broadcast"])
def test_a_read_only_buffer_used_in_place_is_refused_before_any_message(call, everywhere):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    x = np.ones(6 * p, np.float32)
    if everywhere or rank == p - 1:
        x = _read_only(x)
    run = {
        "allreduce": lambda: collectives.allreduce(x, x, algorithm="ring"),
        "allreduce_start": lambda: collectives.allreduce_start(x, x, algorithm="ring").wait(),
        "allgather": lambda: collectives.allgather(x, x, algorithm="ring"),
        "reduce_scatter": lambda: collectives.reduce_scatter(x, x, algorithm="ring"),
        "broadcast": lambda: collectives.broadcast(x, algorithm="binomial"),
    }[call]
    raises_everywhere(run, "read-only")


def test_a_read_only_send_buffer_out_of_place_is_fine():
    comm = world()
    x = _read_only(np.ones(10, np.int64))
    assert np.all(collectives.allreduce(x, algorithm="recursive_doubling") == comm.Get_size())


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("call", [
    pytest.param(lambda r: collectives.allreduce(np.ones(4, np.float32), op="sum" if r else "prod"), id="ops"),
    pytest.param(lambda r: collectives.broadcast(np.ones(4), root=1 if r else 0), id="roots"),
    pytest.param(lambda r: collectives.allreduce(np.ones(4, np.float32 if r else np.int32)), id="f32-i32"),
    pytest.param(lambda r: collectives.broadcast(np.ones(20 if r else 10)), id="bcast-10-20"),
    pytest.param(lambda r: collectives.allreduce(np.ones(4), algorithm="ring" if r else "mpi"), id="mpi-ring"),
    pytest.param(lambda r: collectives.allreduce(np.ones(4), algorithm="ring" if r else "nope"), id="unknown-1"),
    pytest.param(lambda r: collectives.broadcast(np.ones(4), root=0 if r else 99), id="bad-root-1"),
    pytest.param(lambda r: collectives.allreduce(np.ones(4), op="sum" if r else "mean"), id="bad-op-1"),
])
def test_mismatches_raise_on_every_rank_with_the_default_check(call):
    assert _comm.check_enabled()
    rank = world().Get_rank()
    raises_everywhere(lambda: call(rank), "rank")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("call", [
    pytest.param(lambda r: collectives.allreduce_start(np.ones(3), name="g" if r else 7).wait(), id="name-int"),
    pytest.param(lambda r: collectives.broadcast(np.ones(3), root=0 if r else 2 ** 70), id="root-2**70"),
    pytest.param(lambda r: collectives.allreduce(np.ones(3), op="sum" if r else (lambda a, b: a)), id="op-lambda"),
    pytest.param(lambda r: collectives.allreduce(np.ones(3), algorithm="ring" if r else np.int64(3)),
                 id="algorithm-int"),
])
def test_arguments_of_the_wrong_type_on_one_rank_raise_on_every_rank(call):
    rank = world().Get_rank()
    raises_everywhere(lambda: call(rank), "rank 0")


@pytest.mark.mpi(min_size=2)
def test_blocking_and_nonblocking_calls_in_a_different_order_raise():
    comm = world()
    x, y = np.ones(5), np.ones(5)
    if comm.Get_rank() == 0:
        run = lambda: (collectives.allreduce_start(x, x).wait(), collectives.allreduce(y, y))  # noqa: E731
    else:
        run = lambda: (collectives.allreduce(y, y), collectives.allreduce_start(x, x).wait())  # noqa: E731
    raises_everywhere(run, "allreduce_start")


@pytest.mark.mpi(min_size=2)
def test_named_starts_in_a_different_order_raise_instead_of_swapping():
    comm = world()
    a, b = np.ones(7, np.float32), np.full(7, 2, np.float32)
    order = ["a", "b"] if comm.Get_rank() == 0 else ["b", "a"]
    bufs = {"a": a, "b": b}

    def run():
        started = [collectives.allreduce_start(bufs[k], bufs[k], algorithm="ring", name=k) for k in order]
        for s in started:
            s.wait()

    raises_everywhere(run, "name=")
    started = [collectives.allreduce_start(bufs[k], bufs[k], algorithm="ring", name=k) for k in "ab"]
    for s in started:
        s.wait()
    p = comm.Get_size()
    collective_assert(comm, np.all(a == p) and np.all(b == 2 * p), "same order: wrong sums")


@pytest.mark.parametrize("algorithm", ALLREDUCE)
@pytest.mark.parametrize("op", ["min", "max"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_min_and_max_propagate_nan_with_every_algorithm(algorithm, op, dtype):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    if algorithm == "mpi" and collectives.runtime.mpi_native.unsupported(np.dtype(dtype)):
        pytest.skip(f"this MPI cannot reduce {dtype}")
    n = 2 * p + 3
    x = (np.arange(n) + rank).astype(dtype)
    x[rank] = np.nan  # element r is NaN on rank r only; the last three never
    want = np.empty(n, dtype)
    want[:] = np.arange(n) + (0 if op == "min" else p - 1)
    want[:p] = np.nan
    got = collectives.allreduce(x, op=op, algorithm=algorithm)
    started = collectives.allreduce_start(x, op=op, algorithm=algorithm).wait()
    collective_assert(comm, np.array_equal(got, want, equal_nan=True), f"{algorithm}: {got}")
    collective_assert(comm, np.array_equal(started, want, equal_nan=True), f"{algorithm} start: {started}")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["reduce_scatter"])
def test_reduce_scatter_min_propagates_nan(algorithm):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    x = np.arange(2 * p, dtype=np.float32)
    x[2 * rank] = np.nan
    got = collectives.reduce_scatter(x, op="min", algorithm=algorithm)
    collective_assert(comm, np.isnan(got[0]) and got[1] == 2 * rank + 1, f"{algorithm}: {got}")


def test_comm_null_says_so():
    with pytest.raises(CollectiveError, match="COMM_NULL"):
        collectives.allreduce(np.ones(3), comm=MPI.COMM_NULL)
    with pytest.raises(CollectiveError, match="intracommunicator"):
        collectives.allreduce(np.ones(3), comm="world")


def test_freeing_a_communicator_frees_the_library_duplicates_of_it():
    comm = world().Dup()
    x = np.ones(10, np.float32)
    collectives.allreduce(x, x, comm=comm)
    collectives.allreduce_start(x, x, algorithm="ring", comm=comm).wait()
    lib = _comm.library_comm(comm)
    pending = [c for c in lib.Get_attr(_comm._POOL).comms if c is not None]
    comm.Free()
    collective_assert(world(), lib == MPI.COMM_NULL and pending and all(c == MPI.COMM_NULL for c in pending),
                      "a duplicate outlived the communicator it was made for")
