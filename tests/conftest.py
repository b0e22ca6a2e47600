"""Shared fixtures: check mode on, fresh seeds, and collective assertions."""

from __future__ import annotations

import hashlib
import os

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
    from collectives import mpi_native

    if algorithm != "mpi" or mpi_native.unsupported(np.dtype(dtype)) is None:
        return False
    with pytest.raises(collectives.CollectiveError, match="cannot reduce"):
        call()
    return True
