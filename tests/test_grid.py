"""The process grid's rank tables against literal lists worked out by hand (no MPI)."""

from __future__ import annotations

import math
import re

import pytest

from training.parallel.grid import AXES, Layout, coords, groups, rank_of

SINGLETONS8 = [[r] for r in range(8)]

# (layout, {axis: groups}); dims are (pipeline, data, spatial, tensor), tensor fastest
TABLES = [
    (Layout(8, tensor=4), {  # data 2 x tensor 4: rank = 4d + t
        "tensor": [[0, 1, 2, 3], [4, 5, 6, 7]],
        "data": [[0, 4], [1, 5], [2, 6], [3, 7]],
        "pipeline": SINGLETONS8,
        "spatial": SINGLETONS8,
    }),
    (Layout(8, tensor=2), {  # data 4 x tensor 2: rank = 2d + t
        "tensor": [[0, 1], [2, 3], [4, 5], [6, 7]],
        "data": [[0, 2, 4, 6], [1, 3, 5, 7]],
        "pipeline": SINGLETONS8,
        "spatial": SINGLETONS8,
    }),
    (Layout(12, pipeline=3, tensor=2), {  # pipeline 3 x data 2 x tensor 2: rank = 4p + 2d + t
        "tensor": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]],
        "data": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11]],
        "pipeline": [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]],
        "spatial": [[r] for r in range(12)],
    }),
    (Layout(16, pipeline=2, spatial=2, tensor=2), {  # all four 2: rank = 8p + 4d + 2s + t
        "tensor": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]],
        "spatial": [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]],
        "data": [[0, 4], [1, 5], [2, 6], [3, 7], [8, 12], [9, 13], [10, 14], [11, 15]],
        "pipeline": [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]],
    }),
    (Layout(4), {  # pure data parallelism
        "data": [[0, 1, 2, 3]],
        "tensor": [[0], [1], [2], [3]],
        "pipeline": [[0], [1], [2], [3]],
        "spatial": [[0], [1], [2], [3]],
    }),
    (Layout(1), {a: [[0]] for a in AXES}),
]


@pytest.mark.parametrize("layout, table", TABLES, ids=[repr(t[0]) for t in TABLES])
def test_groups_match_the_hand_worked_table(layout, table):
    for axis in AXES:
        assert groups(layout.dims, axis) == table[axis], axis


def test_groups_by_index_on_a_plain_grid():
    assert groups((2, 3), 0) == [[0, 3], [1, 4], [2, 5]]
    assert groups((2, 3), 1) == [[0, 1, 2], [3, 4, 5]]


def test_coords_match_the_hand_worked_table():
    dims = Layout(12, pipeline=3, tensor=2).dims
    assert dims == (3, 2, 1, 2)
    assert [coords(r, dims) for r in (0, 1, 2, 5, 6, 7, 11)] == [
        (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 0, 0), (1, 0, 0, 1), (1, 1, 0, 0), (1, 1, 0, 1),
        (2, 1, 0, 1)]
    assert rank_of((2, 0, 0, 1), dims) == 9


GRIDS = [(1,), (5,), (2, 4), (4, 2), (3, 2, 1, 2), (2, 2, 2, 2), (1, 3, 5, 1), (2, 3, 1, 7)]


@pytest.mark.parametrize("dims", GRIDS)
def test_coords_and_rank_of_round_trip_in_row_major_order(dims):
    table = [coords(r, dims) for r in range(math.prod(dims))]
    assert table == sorted(table)  # row-major: coordinates grow lexicographically with the rank
    assert len(set(table)) == len(table)
    assert all(rank_of(c, dims) == r for r, c in enumerate(table))


@pytest.mark.parametrize("dims", GRIDS)
def test_groups_of_each_axis_partition_the_ranks(dims):
    for axis in range(len(dims)):
        gs = groups(dims, axis)
        assert sorted(r for g in gs for r in g) == list(range(math.prod(dims)))
        assert all(len(g) == dims[axis] for g in gs)
        assert all([coords(r, dims)[axis] for r in g] == list(range(dims[axis])) for g in gs)


def test_layout_derives_data_from_the_other_degrees():
    assert Layout(8, tensor=2).dims == (1, 4, 1, 2)
    assert Layout(12, pipeline=3, tensor=2).data == 2
    assert Layout(5).dims == (1, 5, 1, 1)
    assert Layout(5, tensor=5).data == 1
    assert Layout(8, data=2, tensor=4) == Layout(8, tensor=4)


@pytest.mark.parametrize("kwargs, words", [
    (dict(p=8, tensor=3), ["P=8", "tensor=3", "multiply to 3, which does not divide P"]),
    (dict(p=12, pipeline=3, tensor=3), ["P=12", "pipeline=3", "tensor=3", "multiply to 9"]),
    (dict(p=6, pipeline=4), ["P=6", "pipeline=4"]),
    (dict(p=8, tensor=0), ["P=8", "tensor=0 is below 1"]),
    (dict(p=8, spatial=-2), ["P=8", "spatial=-2 is below 1"]),
    (dict(p=8, data=0), ["data=0 is below 1"]),
    (dict(p=0), ["P=0 is below 1", "at least one rank"]),
    (dict(p=8, data=2, tensor=2), ["P=8", "data=2", "tensor=2", "multiply to 4, not P"]),
])
def test_bad_degrees_raise_naming_p_and_the_degrees(kwargs, words):
    with pytest.raises(ValueError) as e:
        Layout(**kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_degree_that_is_not_an_integer_raises_type_error():
    with pytest.raises(TypeError, match=re.escape("P=8 with tensor=2.0")):
        Layout(8, tensor=2.0)


@pytest.mark.parametrize("call", [lambda: coords(8, (2, 4)), lambda: coords(-1, (2, 4)),
                                  lambda: rank_of((2, 0), (2, 4)), lambda: rank_of((0,), (2, 4)),
                                  lambda: groups((2, 4), 2), lambda: groups((2, 4), "tensor"),
                                  lambda: groups((1, 2, 1, 4), "model")])
def test_out_of_range_ranks_coordinates_and_axes_raise(call):
    with pytest.raises(ValueError):
        call()
