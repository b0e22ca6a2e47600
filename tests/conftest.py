"""Shared fixtures: check mode on, fresh seeds, and collective assertions."""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

os.environ.setdefault("COLLECTIVES_CHECK", "1")

try:
    from mpi4py import MPI
except ImportError:  # pragma: no cover
    MPI = None


def world():
    return MPI.COMM_WORLD


def collective_assert(comm, ok: bool, message: str = "") -> None:
    """Fail on every rank if the condition fails on any rank (a collective verdict)."""
    everyone = comm.allgather((bool(ok), message))
    bad = [f"rank {r}: {m}" for r, (good, m) in enumerate(everyone) if not good]
    assert not bad, "; ".join(bad)


def digest(a) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


def assert_identical_everywhere(comm, a) -> None:
    """Every rank holds bitwise the same array."""
    d = comm.allgather(digest(a))
    assert len(set(d)) == 1, f"results differ across ranks: {d}"


@pytest.fixture
def rng(request):
    """A generator with a fresh seed, agreed by rank 0 and offset per rank; the seed is shown on failure."""
    comm = world()
    seed = comm.bcast(int(np.random.SeedSequence().entropy % (1 << 63)) if comm.rank == 0 else None)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng([seed, comm.rank])


def pytest_collection_modifyitems(config, items):
    if MPI is None:
        return
    size = MPI.COMM_WORLD.Get_size()
    for item in items:
        item._nodeid = f"{item.nodeid}[P{size}]" if config.getoption("with_mpi", False) else item.nodeid


def library_refuses(algorithm: str, dtype: str, call) -> bool:
    """Where the MPI library cannot reduce ``dtype``, ``"mpi"`` must refuse it cleanly."""
    import collectives
    from collectives.runtime import mpi_native

    if algorithm != "mpi" or mpi_native.unsupported(np.dtype(dtype)) is None:
        return False
    with pytest.raises(collectives.CollectiveError, match="cannot reduce"):
        call()
    return True


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: ``python -m mpi4py -c RUN RECORD MODULE ARGS...``: write this rank's mapped /dev/shm segments to
#: ``RECORD.<rank>``, then run ``MODULE`` as ``__main__`` with ``ARGS``
RUN = """
import runpy, sys
from mpi4py import MPI
record, module = sys.argv.pop(1), sys.argv.pop(1)
with open(f"{record}.{MPI.COMM_WORLD.Get_rank()}", "w") as f:
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
            print(fields[5], file=f)
if module.endswith(".py"):  # a script, as python -m mpi4py script.py runs it
    sys.argv[0] = module
    runpy.run_path(module, run_name="__main__")
else:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def launch(tmp_path, ranks: int, module: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``module`` (or a script, ``path.py``) on ``ranks`` ranks under ``python -m mpi4py``; assert it left
    no segment of its own.

    Under ``python -m mpi4py`` a non-zero exit that escapes calls ``MPI_Abort``, which leaves MPICH's
    shared-memory segment in ``/dev/shm``; an agreed exit finalizes MPI, which removes it.  Other runs may
    leak segments meanwhile, so each rank first records the segments it has mapped, then runs ``module``
    as ``python -m`` would; after the job none of those may be left.
    """
    record = str(tmp_path / "segments")
    out = subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, "-m", "mpi4py", "-c", RUN, record, module,
                          *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    mapped = set()
    for rank in range(ranks):
        with open(f"{record}.{rank}") as f:
            mapped |= set(f.read().split())
    assert mapped, "the ranks mapped no MPICH segment: nothing to check"
    left = sorted(path for path in mapped if os.path.exists(path))
    assert not left, f"MPI was aborted, not finalized: {left} left behind\n{out.stderr}"
    return out


@contextmanager
def crashed_runs_cleaned_up():
    """Remove the MPICH segments that processes killed inside the block leave in /dev/shm.

    Only ``MPI_Finalize`` removes a segment, so a test that kills a rank on purpose leaves one (1-3 MB, in
    RAM) on every run.  Removed: those that appeared during the block and that no live process maps (the
    check :mod:`scripts/mpich_stale_shm` makes for Slurm jobs).
    """
    before = set(glob.glob("/dev/shm/mpich_*"))
    try:
        yield
    finally:
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        try:
            from mpich_stale_shm import mapped
        finally:
            sys.path.pop(0)
        for path in set(glob.glob("/dev/shm/mpich_*")) - before - mapped():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def tensor_slices(layer):
    """Where a tensor-parallel layer's ``(W, b)`` sit in the whole layer's arrays (whole for a serial layer)."""
    from training.parallel.tensor import ColumnParallelLinear, RowParallelLinear

    if isinstance(layer, ColumnParallelLinear):
        return np.s_[:, layer.lo:layer.hi], np.s_[layer.lo:layer.hi]
    if isinstance(layer, RowParallelLinear):
        return np.s_[layer.lo:layer.hi], np.s_[:]
    return np.s_[:], np.s_[:]


def assert_finite_differences(params: np.ndarray, grads: np.ndarray, loss, indices, h: float = 1e-6) -> None:
    """Every ``grads[i]`` (``i`` in ``indices``) equals the central difference of ``loss()`` in ``params[i]``."""
    for i in indices:
        old = params[i]
        params[i] = old + h
        up = loss()
        params[i] = old - h
        down = loss()
        params[i] = old
        assert grads[i] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8), i


def sync_sgd_exits_2_saying(argv, message: str, capsys) -> None:
    """``training.sync_sgd`` on ``argv`` exits 2 on every rank, rank 0 alone printing ``message``."""
    from training import sync_sgd

    comm = world()
    with pytest.raises(SystemExit) as e:
        sync_sgd.run(argv, comm)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert (message in err) if comm.Get_rank() == 0 else err == ""
