"""CUDA buffers (cupy): the same bits as numpy buffers, on the path this MPI allows (``collectives.cuda_aware``).

Skipped without cupy and a usable GPU; ``scripts/gpu_check.sh`` runs them on one.
"""

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


def _input(rng, n: int, dtype: str, op: str = "sum") -> np.ndarray:
    """Integers as values, and signed zeros; for min and max on floats a NaN on rank 0 too.

    Only there: min and max pick one operand, so a NaN keeps its bits,
    while CUDA's arithmetic returns its own canonical NaN where the host
    returns the operand's.
    """
    x = rng.integers(-100, 100, n).astype(dtype)
    if x.dtype.kind == "f" and n > 2:
        x[-1], x[-2] = (-0.0 if world().Get_rank() % 2 else 0.0), 0.0
        if op in ("min", "max") and world().Get_rank() == 0:
            x[0] = np.nan
    return x


@pytest.mark.parametrize("op", ["sum", "prod", "min", "max", "avg"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("algorithm", collectives.ALGORITHMS["allreduce"])
def test_allreduce_cupy_equals_numpy(algorithm, dtype, op, rng):
    """The device kernels reduce as the host kernels do, bit for bit (staged or direct, as the MPI allows)."""
    if op == "avg" and dtype.startswith("int"):
        pytest.skip("avg is for floating dtypes")
    if algorithm == "mpi" and collectives.runtime.mpi_native.unsupported(np.dtype(dtype)):
        pytest.skip("this MPI library cannot reduce this dtype (tested in test_allreduce_mpi)")
    x = _input(rng, 100_003, dtype, op)
    if op == "prod":
        x = np.ones_like(x) if dtype == "float16" else np.sign(x) + (x == 0)  # no overflow
    want = collectives.allreduce(x, op=op, algorithm=algorithm)
    gx = cupy.asarray(x)
    got = collectives.allreduce(gx, op=op, algorithm=algorithm)
    assert isinstance(got, cupy.ndarray)
    collective_assert(world(), cupy.asnumpy(got).tobytes() == want.tobytes(), f"{algorithm} {op} {dtype}")
    collectives.allreduce(gx, gx, op=op, algorithm=algorithm)  # in place
    collective_assert(world(), cupy.asnumpy(gx).tobytes() == want.tobytes(), f"{algorithm} {op} {dtype} in place")
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


def test_cuda_awareness_is_reported():
    aware = collectives.cuda_aware(world())
    print(f"collectives.cuda_aware: {aware}")
    assert isinstance(aware, bool)
