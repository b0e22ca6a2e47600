"""Threads per rank: the rule of numa.threads, and that it reaches Numba and BLAS."""

from __future__ import annotations

import os

import numba
import pytest

from numa import threads

VARS = ("NUMBA_NUM_THREADS", "SLURM_CPUS_PER_TASK", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
        "SLURM_NTASKS_PER_NODE")


@pytest.fixture
def machine(monkeypatch):
    """A 16-core machine with an empty launcher environment; returns a setter for the affinity mask."""
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    mask = {"cores": set(range(16))}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: mask["cores"])

    def set_mask(cores):
        mask["cores"] = set(cores)

    return set_mask


def test_the_rule_in_order(machine, monkeypatch):
    assert threads.threads_per_rank() == 16  # alone, unbound: the whole machine
    assert threads.threads_per_rank(local_size=4) == 4  # four unbound ranks share it
    monkeypatch.setenv("MPI_LOCALNRANKS", "8")  # MPICH says eight ranks here
    assert threads.threads_per_rank(local_size=4) == 2
    machine(range(4, 8))  # the launcher bound this rank to four cores
    assert threads.threads_per_rank() == 4
    assert threads.threads_per_rank(local_size=4, bound=False) == 1  # a shared 4-core mask, 8 ranks (MPICH)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert threads.threads_per_rank() == 3
    monkeypatch.setenv("NUMBA_NUM_THREADS", "5")
    assert threads.threads_per_rank() == 5
    assert threads.threads_per_rank(7) == 7  # explicit wins over everything
    with pytest.raises(ValueError, match=">= 1"):
        threads.threads_per_rank(0)


def test_shared_mask_is_divided_and_never_below_one(machine):
    machine(range(2))
    assert threads.threads_per_rank(local_size=5, bound=False) == 1
    assert threads.threads_per_rank(local_size=2, bound=False) == 1
    assert threads.threads_per_rank(local_size=1, bound=True) == 2


@pytest.mark.parametrize("value,want", [("4", 4), ("4(x2),3", 4), ("", 6), ("garbage", 6), ("0", 6)])
def test_local_ranks_reads_the_launchers(monkeypatch, value, want):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", value)
    assert threads.local_ranks(default=6) == want


def test_configure_sets_numba_and_blas_threads():
    pytest.importorskip("threadpoolctl")
    before = numba.get_num_threads()
    try:
        assert threads.configure(1) == 1
        assert threads.current() == {"numba": 1, "blas": 1} and threads.count() == 1
        # capped at what Numba started with
        assert threads.configure(10_000) == numba.config.NUMBA_NUM_THREADS
        assert threads.current()["numba"] == numba.config.NUMBA_NUM_THREADS
    finally:
        threads.configure(before)
