"""All-reduce against MPI_Allreduce: every algorithm x dtype x op x count class, every rank count."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from conftest import library_refuses, assert_identical_everywhere, collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

MPI = pytest.importorskip("mpi4py.MPI")
MPI_OP = {"sum": MPI.SUM, "avg": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}
DTYPES = ["float16", "float32", "float64", "int32", "int64"]
OPS = list(MPI_OP)
ALGS = collectives.ALGORITHMS["allreduce"]
COUNTS = ["zero", "one", "fewer_than_p", "prime", "large"]


def count_of(kind: str, p: int) -> int:
    return {"zero": 0, "one": 1, "fewer_than_p": max(p - 1, 0), "prime": 1009, "large": (1 << 18) + 3}[kind]


def make_input(rng, n: int, dtype: str, op: str) -> np.ndarray:
    if dtype.startswith("int"):
        lo, hi = (1, 4) if op == "prod" else (-1000, 1000)
        return rng.integers(lo, hi, n).astype(dtype)
    if op == "prod":
        return rng.uniform(0.5, 2.0, n).astype(dtype)
    return rng.standard_normal(n).astype(dtype)


def check_against_mpi(comm, x: np.ndarray, y: np.ndarray, op: str) -> None:
    """Integers exactly equal to MPI's; floats within a bound of a float64 reference."""
    p = comm.Get_size()
    if x.dtype.kind == "i":
        ref = np.empty_like(x)
        comm.Allreduce(x, ref, op=MPI_OP[op])
        collective_assert(comm, np.array_equal(y, ref), f"{np.flatnonzero(y != ref)[:5]}")
        return
    x64 = x.astype(np.float64)
    ref = np.empty_like(x64)
    comm.Allreduce(x64, ref, op=MPI_OP[op])
    eps = float(np.finfo(x.dtype).eps)
    if op in ("min", "max"):
        ok = np.array_equal(y.astype(np.float64), ref)
        bound = 0.0
    elif op == "prod":
        bound = p * eps * np.abs(ref)
        ok = np.all(np.abs(y.astype(np.float64) - ref) <= bound)
    else:
        size = np.empty_like(x64)
        comm.Allreduce(np.abs(x64), size, op=MPI.SUM)
        if op == "avg":
            ref /= p
            size /= p
        bound = (p + 1) * eps * size
        ok = np.all(np.abs(y.astype(np.float64) - ref) <= bound)
    worst = float(np.max(np.abs(y.astype(np.float64) - ref))) if y.size else 0.0
    collective_assert(comm, bool(ok), f"max abs error {worst}")


# avg on integers is refused (tests/test_errors_mpi.py::test_avg_on_integers_is_refused)
CASES = [(d, o) for d in DTYPES for o in OPS if not (o == "avg" and d.startswith("int"))]


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("dtype,op", CASES)
@pytest.mark.parametrize("algorithm", ALGS)
def test_allreduce_matches_mpi(algorithm, dtype, op, count, rng):
    comm = world()
    n = count_of(count, comm.Get_size())
    x = make_input(rng, n, dtype, op)
    keep = x.copy()
    if library_refuses(algorithm, dtype, lambda: collectives.allreduce(x, op=op, algorithm=algorithm)):
        return
    y = collectives.allreduce(x, op=op, algorithm=algorithm)
    collective_assert(comm, np.array_equal(x, keep), "sendbuf was modified")
    assert y.shape == x.shape and y.dtype == x.dtype
    check_against_mpi(comm, x, y, op)
    assert_identical_everywhere(comm, y)


@pytest.mark.parametrize("algorithm", ALGS)
def test_in_place(algorithm, rng):
    comm = world()
    x = make_input(rng, 1013, "float64", "sum")
    keep = x.copy()
    out = collectives.allreduce(x, x, algorithm=algorithm)
    assert out is x
    check_against_mpi(comm, keep, x, "sum")


@pytest.mark.parametrize("algorithm", ALGS)
def test_shapes_are_kept_and_recvbuf_is_used(algorithm, rng):
    comm = world()
    x = make_input(rng, 6 * 7, "float32", "sum").reshape(6, 7)
    r = np.full_like(x, np.nan)
    out = collectives.allreduce(x, r, algorithm=algorithm)
    assert out is r and r.shape == (6, 7)
    check_against_mpi(comm, x.ravel(), r.ravel(), "sum")


@pytest.mark.parametrize("which", ["self", "dup", "split"])
@pytest.mark.parametrize("algorithm", ALGS)
def test_other_communicators(algorithm, which, rng):
    world_comm = world()
    if which == "self":
        comm = MPI.COMM_SELF
    elif which == "dup":
        comm = world_comm.Dup()
    else:
        comm = world_comm.Split(world_comm.Get_rank() % 2, -world_comm.Get_rank())
    x = make_input(rng, 777, "int64", "sum")
    y = collectives.allreduce(x, algorithm=algorithm, comm=comm)
    check_against_mpi(comm, x, y, "sum")
    if which != "self":
        comm.Free()


def test_user_messages_do_not_mix_with_library_traffic(rng):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    box = np.zeros(1, np.int64)
    pending = comm.Irecv(box, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    x = make_input(rng, 4099, "int64", "sum")
    for algorithm in ALGS:
        collectives.allreduce(x, algorithm=algorithm)
    collective_assert(comm, not pending.Test(), "a library message matched the user's wildcard receive")
    comm.Send(np.array([42 + rank], np.int64), dest=(rank + 1) % p, tag=7)
    pending.Wait()
    assert box[0] == 42 + (rank - 1) % p


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGS)
def test_64_mib(algorithm, rng):
    comm = world()
    n = (64 << 20) // 4 + 5  # just over 64 MiB of float32, not divisible by 2..5
    x = rng.standard_normal(n).astype(np.float32)
    y = collectives.allreduce(x, algorithm=algorithm)
    check_against_mpi(comm, x, y, "sum")
    assert_identical_everywhere(comm, y)
