"""CUDA buffers (cupy): staged through host memory, same results as numpy buffers."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
import collectives.runtime.mpi_native
from conftest import assert_identical_everywhere, collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

cupy = pytest.importorskip("cupy")
try:
    cupy.cuda.runtime.getDeviceCount()
except Exception as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allreduce"])
def test_allreduce_cupy_equals_numpy(algorithm, dtype, rng):
    x = rng.integers(-100, 100, 100_003).astype(dtype)
    if algorithm == "mpi" and collectives.runtime.mpi_native.unsupported(np.dtype(dtype)):
        pytest.skip("this MPI library cannot reduce this dtype (tested in test_allreduce_mpi)")
    want = collectives.allreduce(x, algorithm=algorithm)
    gx = cupy.asarray(x)
    got = collectives.allreduce(gx, algorithm=algorithm)
    assert isinstance(got, cupy.ndarray)
    collective_assert(world(), np.array_equal(cupy.asnumpy(got), want))
    collectives.allreduce(gx, gx, algorithm=algorithm)  # in place
    collective_assert(world(), np.array_equal(cupy.asnumpy(gx), want))
    assert_identical_everywhere(world(), cupy.asnumpy(got))


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allgather"])
def test_allgather_cupy(algorithm, rng):
    x = rng.standard_normal(1001).astype(np.float32)
    want = collectives.allgather(x, algorithm=algorithm)
    got = collectives.allgather(cupy.asarray(x), algorithm=algorithm)
    collective_assert(world(), np.array_equal(cupy.asnumpy(got), want))


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["reduce_scatter"])
def test_reduce_scatter_cupy(algorithm, rng):
    x = rng.integers(0, 9, 1001).astype(np.int64)
    want = collectives.reduce_scatter(x, algorithm=algorithm)
    got = collectives.reduce_scatter(cupy.asarray(x), algorithm=algorithm)
    collective_assert(world(), np.array_equal(cupy.asnumpy(got), want))


@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["broadcast"])
def test_broadcast_cupy(algorithm, rng):
    comm = world()
    x = rng.standard_normal(999)
    ref = comm.bcast(x if comm.Get_rank() == 0 else None)
    g = cupy.asarray(x)
    collectives.broadcast(g, 0, algorithm=algorithm)
    collective_assert(comm, np.array_equal(cupy.asnumpy(g), ref))


def test_mixed_numpy_and_cupy_is_refused():
    with pytest.raises(collectives.CollectiveError, match="both"):
        collectives.allreduce(cupy.ones(4), np.empty(4))
