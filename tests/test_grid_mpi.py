"""The process grid under MPI: every axis communicator holds the ranks the pure tables list."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from conftest import collective_assert, world
from training.parallel.grid import AXES, Layout, ProcessGrid, coords, groups

pytestmark = pytest.mark.mpi(min_size=1)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layouts(p: int) -> list[Layout]:
    """Every layout of ``p`` ranks: at P=4 pure data, tensor 4, data 2 x tensor 2, ... (10)."""
    return [Layout(p, pipeline=a, spatial=b, tensor=c)
            for a in divisors(p) for b in divisors(p // a) for c in divisors(p // a // b)]


LAYOUTS = layouts(world().Get_size())


def my_group(layout: Layout, axis: str, rank: int) -> list[int]:
    (group,) = [g for g in groups(layout.dims, axis) if rank in g]
    return group


@pytest.fixture(params=LAYOUTS, ids=["x".join(map(str, lay.dims)) for lay in LAYOUTS])
def grid(request):
    """A grid of every layout that fits the world, freed after the test."""
    built = ProcessGrid(world(), request.param)
    yield built
    built.free()


def test_axis_communicators_hold_the_tabled_groups_in_coordinate_order(grid):
    rank, layout = world().Get_rank(), grid.layout
    problems = []
    if (grid.rank, grid.coords) != (rank, coords(rank, layout.dims)):
        problems.append(f"grid rank {grid.rank} at {grid.coords}, expected {rank} at "
                        f"{coords(rank, layout.dims)}")
    for i, axis in enumerate(AXES):
        comm = grid.comm(axis)
        members = comm.allgather(rank)
        if comm is not getattr(grid, axis) or members != my_group(layout, axis, rank) \
                or comm.Get_rank() != grid.coords[i]:
            problems.append(f"{axis}: members {members}, rank {comm.Get_rank()} in them; "
                            f"expected {my_group(layout, axis, rank)}, rank {grid.coords[i]}")
    collective_assert(world(), not problems, "; ".join(problems))


def test_allreduce_of_rank_numbers_over_each_axis_sums_its_group(grid):
    rank = world().Get_rank()
    problems = []
    for axis in AXES:
        want = sum(my_group(grid.layout, axis, rank))
        ours = collectives.allreduce(np.array([rank], np.int64), algorithm="ring", comm=grid.comm(axis))
        theirs = grid.comm(axis).allreduce(rank)
        if (int(ours[0]), theirs) != (want, want):
            problems.append(f"{axis}: ring {ours[0]}, mpi4py {theirs}, expected {want}")
    collective_assert(world(), not problems, "; ".join(problems))


def test_a_layout_for_another_size_is_refused_before_any_message():
    p = world().Get_size()
    with pytest.raises(ValueError, match=f"communicator has {p} ranks .* is for P={p + 1}"):
        ProcessGrid(world(), Layout(p + 1))
