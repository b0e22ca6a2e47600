"""Device arrays (a fake over host memory) on the direct and the staged path: the host path's bits and traffic.

Each case runs on a duplicate of the world whose CUDA-awareness is forced
by ``COLLECTIVES_CUDA_AWARE`` when it is first used: ``direct`` posts the
fake device memory to MPI, ``staged`` copies every message through pinned
host memory.  The oracle is the same call on numpy arrays, bit for bit,
with the same traffic; staged copies are counted against the bytes sent
and received.
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.runtime import traffic
from collectives.runtime.communicator import library_comm
from conftest import collective_assert, world
from fake_device import BACKEND, FakeDeviceArray, fake

pytestmark = pytest.mark.mpi(min_size=1)

MPI = pytest.importorskip("mpi4py.MPI")
PATHS = ["direct", "staged"]


@pytest.fixture(params=PATHS)
def comm(request, monkeypatch):
    """A duplicate of the world that passes device memory to MPI directly, or stages it."""
    monkeypatch.setenv("COLLECTIVES_CUDA_AWARE", "1" if request.param == "direct" else "0")
    dup = world().Dup()
    library_comm(dup)
    monkeypatch.delenv("COLLECTIVES_CUDA_AWARE")
    yield dup
    dup.Free()


def _input(n: int, dtype: str, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, rank])
    if dtype.startswith("int"):
        return rng.integers(-50, 50, n).astype(dtype)
    x = rng.standard_normal(n).astype(dtype)
    if n > 2:  # a NaN and signed zeros: min and max must treat them as the host kernels do
        x[rank % n], x[-1], x[-2] = np.nan if rank == 0 else x[rank % n], -0.0 if rank % 2 else 0.0, 0.0
    return x


def _same(comm, got, want, what: str) -> None:
    got = got.host if isinstance(got, FakeDeviceArray) else got
    collective_assert(comm, got.dtype == want.dtype and got.tobytes() == want.tobytes(), what)


def _staged_bytes():
    return BACKEND.to_host_bytes, BACKEND.from_host_bytes


def _check_staging(comm, before, counted, algorithm: str, op: str = "sum", dtype: str = "float32") -> None:
    """Staged: our algorithms copy exactly the bytes they send and receive; direct: nothing.

    The library's own call stages whole buffers, and always where its op
    is a Python user op (NaN-propagating min/max on floats), which reads
    its buffers on the host.
    """
    sent, received = BACKEND.to_host_bytes - before[0], BACKEND.from_host_bytes - before[1]
    user_op = algorithm == "mpi" and op in ("min", "max") and np.dtype(dtype).kind == "f"
    if library_comm(comm).cuda_aware and not user_op:
        collective_assert(comm, (sent, received) == (0, 0), f"direct, yet staged {sent}/{received} B")
    elif algorithm != "mpi":
        collective_assert(comm, (sent, received) == (counted.bytes_sent, counted.bytes_received),
                          f"staged {sent}/{received} B, traffic {counted.bytes_sent}/{counted.bytes_received}")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allreduce"])
def test_allreduce(comm, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for n, dtype, op in ((0, "float32", "sum"), (1, "float32", "sum"), (max(p - 1, 1), "int32", "prod"),
                         (1009, "float32", "avg"), (1009, "float64", "min"), (37, "float16", "max")):
        if algorithm == "mpi" and collectives.runtime.mpi_native.unsupported(np.dtype(dtype)):
            continue
        x = _input(n, dtype, rank)
        with traffic.count() as host:
            want = collectives.allreduce(x, op=op, algorithm=algorithm, comm=comm)
        before = _staged_bytes()
        with traffic.count() as dev:
            got = collectives.allreduce(fake(x), op=op, algorithm=algorithm, comm=comm)
        assert isinstance(got, FakeDeviceArray)
        _same(comm, got, want, f"{algorithm} {op} {dtype} n={n}")
        collective_assert(comm, dev == host, f"traffic {dev} against {host}")
        _check_staging(comm, before, dev, algorithm, op, dtype)
        buf = fake(x)
        collectives.allreduce(buf, buf, op=op, algorithm=algorithm, comm=comm)  # in place
        _same(comm, buf, want, f"{algorithm} {op} {dtype} n={n} in place")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allgather"])
def test_allgather(comm, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for m in (0, 1, 3, 1001):
        x = _input(m, "float32", rank, seed=1)
        with traffic.count() as host:
            want = collectives.allgather(x, algorithm=algorithm, comm=comm)
        before = _staged_bytes()
        with traffic.count() as dev:
            got = collectives.allgather(fake(x), algorithm=algorithm, comm=comm)
        _same(comm, got, want, f"{algorithm} m={m}")
        collective_assert(comm, dev == host, f"traffic {dev} against {host}")
        _check_staging(comm, before, dev, algorithm)
        buf = FakeDeviceArray(np.zeros(p * m, np.float32))
        buf[rank * m : (rank + 1) * m] = fake(x)
        collectives.allgather(buf, buf, algorithm=algorithm, comm=comm)
        _same(comm, buf, want, f"{algorithm} m={m} in place")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["reduce_scatter"])
def test_reduce_scatter(comm, algorithm):
    p, rank = comm.Get_size(), comm.Get_rank()
    for n, dtype, op in ((1, "int64", "sum"), (max(p - 1, 1), "float32", "max"), (1001, "float64", "avg")):
        x = _input(n, dtype, rank, seed=2)
        with traffic.count() as host:
            want = collectives.reduce_scatter(x, op=op, algorithm=algorithm, comm=comm)
        before = _staged_bytes()
        with traffic.count() as dev:
            got = collectives.reduce_scatter(fake(x), op=op, algorithm=algorithm, comm=comm)
        _same(comm, got, want, f"{algorithm} {op} {dtype} n={n}")
        collective_assert(comm, dev == host, f"traffic {dev} against {host}")
        _check_staging(comm, before, dev, algorithm, op, dtype)
        buf = fake(x)
        block = collectives.reduce_scatter(buf, buf, op=op, algorithm=algorithm, comm=comm)
        _same(comm, block, want, f"{algorithm} {op} {dtype} n={n} in place")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["broadcast"])
def test_broadcast(comm, algorithm):
    p = comm.Get_size()
    for n, root in ((1, 0), (999, p - 1)):
        want = _input(n, "float64", root, seed=3)
        x = want if comm.Get_rank() == root else np.zeros(n)
        before = _staged_bytes()
        with traffic.count() as dev:
            got = collectives.broadcast(fake(x), root, algorithm=algorithm, comm=comm)
        _same(comm, got, want, f"{algorithm} n={n} root={root}")
        _check_staging(comm, before, dev, algorithm)


def test_cuda_awareness_is_what_the_override_says(comm):
    aware = collectives.cuda_aware(comm)
    collective_assert(comm, aware == (library_comm(comm).cuda_aware_why == "COLLECTIVES_CUDA_AWARE=1"),
                      library_comm(comm).cuda_aware_why)


def test_device_and_host_buffers_are_not_mixed(comm):
    with pytest.raises(collectives.CollectiveError, match="both"):
        collectives.allreduce(fake(np.ones(4, np.float32)), np.empty(4, np.float32), comm=comm)


def test_a_bad_override_is_refused_on_every_rank(monkeypatch):
    monkeypatch.setenv("COLLECTIVES_CUDA_AWARE", "perhaps")
    dup = world().Dup()
    try:
        with pytest.raises(collectives.CollectiveError, match="COLLECTIVES_CUDA_AWARE='perhaps'"):
            library_comm(dup)
    finally:
        dup.Free()


@pytest.mark.mpi(min_size=2)
def test_one_rank_that_is_not_cuda_aware_makes_every_rank_stage(monkeypatch):
    rank = world().Get_rank()
    monkeypatch.setenv("COLLECTIVES_CUDA_AWARE", "0" if rank == 1 else "1")
    dup = world().Dup()
    try:
        lib = library_comm(dup)
        collective_assert(world(), not collectives.cuda_aware(dup), "rank 1 stages, so all must")
        collective_assert(world(), lib.cuda_aware_why == "rank 1: COLLECTIVES_CUDA_AWARE=0", lib.cuda_aware_why)
        x = np.arange(5, dtype=np.float32) + rank
        before = _staged_bytes()
        got = collectives.allreduce(fake(x), algorithm="ring", comm=dup)
        _same(world(), got, collectives.allreduce(x, algorithm="ring", comm=dup), "ring, staged everywhere")
        collective_assert(world(), _staged_bytes() != before, "nothing was staged")
    finally:
        dup.Free()
