"""On real MPI: the first collective gives each rank its share of the node's cores (no oversubscription)."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest
from mpi4py import MPI

import collectives
from conftest import world

pytestmark = pytest.mark.mpi(min_size=1)


def test_ranks_share_the_cores_after_the_first_collective():
    if "NUMBA_NUM_THREADS" in os.environ:
        pytest.skip("NUMBA_NUM_THREADS is set: the user's count wins")
    comm = world()
    collectives.allreduce(np.ones(3, np.float32), comm=comm)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    masks = node.allgather(frozenset(os.sched_getaffinity(0)))
    counts = node.allgather(numba.get_num_threads())
    size = node.Get_size()
    node.Free()
    if size > 1 and len(frozenset().union(*masks)) == sum(map(len, masks)):
        want = [len(m) for m in masks]  # bound by the launcher: each rank its own cores
    else:
        want = [max(1, len(m) // size) for m in masks]  # one shared mask: divided
    assert counts == [min(w, numba.config.NUMBA_NUM_THREADS) for w in want]
