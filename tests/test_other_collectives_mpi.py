"""All-gather, reduce-scatter and broadcast against the MPI library's own, on every rank count."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.algorithms.schedule import partition
from conftest import library_refuses, assert_identical_everywhere, collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

MPI = pytest.importorskip("mpi4py.MPI")
MPI_OP = {"sum": MPI.SUM, "avg": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}
DTYPES = ["float16", "float32", "float64", "int32", "int64"]


def data(rng, n, dtype):
    if dtype.startswith("int"):
        return rng.integers(-1000, 1000, n).astype(dtype)
    return rng.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("m", [0, 1, 3, 1009, (1 << 17) + 1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allgather"])
def test_allgather_matches_mpi(algorithm, dtype, m, rng):
    comm = world()
    x = data(rng, m, dtype)
    ref = np.empty(m * comm.Get_size(), dtype)
    comm.Allgather([x.view(np.uint8), MPI.BYTE], [ref.view(np.uint8), MPI.BYTE])  # any dtype
    y = collectives.allgather(x, algorithm=algorithm)
    collective_assert(comm, np.array_equal(y, ref), "all-gather differs from MPI_Allgather")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allgather"])
def test_allgather_in_place(algorithm, rng):
    comm = world()
    p, rank, m = comm.Get_size(), comm.Get_rank(), 37
    x = data(rng, m, "int32")
    ref = np.empty(m * p, "int32")
    comm.Allgather(x, ref)
    buf = np.full(m * p, -7, "int32")
    buf[rank * m : (rank + 1) * m] = x
    out = collectives.allgather(buf, buf, algorithm=algorithm)
    assert out is buf
    collective_assert(comm, np.array_equal(buf, ref))


CASES = [(d, o) for d in DTYPES for o in MPI_OP if not (o == "avg" and d.startswith("int"))]


@pytest.mark.parametrize("n", ["zero", "one", "fewer_than_p", "prime", "large"])
@pytest.mark.parametrize("dtype,op", CASES)
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["reduce_scatter"])
def test_reduce_scatter_matches_mpi(algorithm, dtype, op, n, rng):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    n = {"zero": 0, "one": 1, "fewer_than_p": max(p - 1, 0), "prime": 1009, "large": (1 << 18) + 3}[n]
    x = rng.uniform(0.5, 2.0, n).astype(dtype) if op == "prod" and dtype[0] == "f" else data(rng, n, dtype)
    if op == "prod" and dtype.startswith("int"):
        x = rng.integers(1, 4, n).astype(dtype)
    off = partition(n, p)
    if library_refuses(algorithm, dtype, lambda: collectives.reduce_scatter(x, op=op, algorithm=algorithm)):
        return
    y = collectives.reduce_scatter(x, op=op, algorithm=algorithm)
    assert y.size == off[rank + 1] - off[rank]
    counts = [off[i + 1] - off[i] for i in range(p)]
    if dtype.startswith("int"):
        ref = np.empty(counts[rank], dtype)
        comm.Reduce_scatter(x, ref, counts, op=MPI_OP[op])
        collective_assert(comm, np.array_equal(y, ref))
        return
    ref = np.empty(counts[rank])
    comm.Reduce_scatter(x.astype(np.float64), ref, counts, op=MPI_OP[op])
    size = np.empty(counts[rank])
    comm.Reduce_scatter(np.abs(x.astype(np.float64)), size, counts, op=MPI.SUM)
    if op == "avg":
        ref /= p
        size /= p
    eps = float(np.finfo(dtype).eps)
    bound = 0 if op in ("min", "max") else (p + 1) * eps * (np.abs(ref) if op == "prod" else size)
    err = np.abs(y.astype(np.float64) - ref)
    collective_assert(comm, bool(np.all(err <= bound)), f"max error {err.max() if err.size else 0}")


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["reduce_scatter"])
def test_reduce_scatter_in_place(algorithm, rng):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    x = data(rng, 1001, "int64")
    off = partition(1001, p)
    ref = np.empty(off[rank + 1] - off[rank], "int64")
    comm.Reduce_scatter(x, ref, [off[i + 1] - off[i] for i in range(p)], op=MPI.SUM)
    buf = x.copy()
    out = collectives.reduce_scatter(buf, buf, algorithm=algorithm)
    collective_assert(comm, np.array_equal(out, ref) and np.shares_memory(out, buf))


@pytest.mark.parametrize("n", [0, 1, 3, 1009, (1 << 18) + 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["broadcast"])
def test_broadcast_from_every_root(algorithm, dtype, n, rng):
    comm = world()
    for root in range(comm.Get_size()):
        x = data(rng, n, dtype)
        ref = x.copy()
        comm.Bcast([ref.view(np.uint8), MPI.BYTE], root=root)  # bytes: any dtype, any MPI
        out = collectives.broadcast(x, root, algorithm=algorithm)
        assert out is x
        collective_assert(comm, np.array_equal(x, ref), f"root {root}")
        assert_identical_everywhere(comm, x)
