"""Halo geometry against hand-worked tables: who needs which rows of whom, for any split (no MPI)."""

from __future__ import annotations

import pytest

from training.parallel.halo import AxisGeometry, axis_geometry, output_size


def test_ten_rows_on_four_ranks_kernel_2_stride_2():
    """5 outputs cut 2, 1, 1, 1; 10 inputs cut 3, 3, 2, 2: rank 0 needs row 3 of rank 1, which needs none of it."""
    assert axis_geometry(10, 4, 2, 2, 0) == [
        AxisGeometry((0, 3), (0, 4), (0, 2), ((1, 3, 4),), ()),
        AxisGeometry((3, 6), (4, 6), (2, 3), (), ((0, 3, 4),)),
        AxisGeometry((6, 8), (6, 8), (3, 4), (), ()),
        AxisGeometry((8, 10), (8, 10), (4, 5), (), ()),
    ]


def test_ten_by_seven_on_a_three_by_three_grid_kernel_3():
    """Rows 4, 3, 3 and columns 3, 2, 2, one row or column of halo each side, the edges padded."""
    assert axis_geometry(10, 3, 3, 1, 1) == [
        AxisGeometry((0, 4), (-1, 5), (0, 4), ((1, 4, 5),), ((1, 3, 4),)),
        AxisGeometry((4, 7), (3, 8), (4, 7), ((0, 3, 4), (2, 7, 8)), ((0, 4, 5), (2, 6, 7))),
        AxisGeometry((7, 10), (6, 11), (7, 10), ((1, 6, 7),), ((1, 7, 8),)),
    ]
    assert axis_geometry(7, 3, 3, 1, 1) == [
        AxisGeometry((0, 3), (-1, 4), (0, 3), ((1, 3, 4),), ((1, 2, 3),)),
        AxisGeometry((3, 5), (2, 6), (3, 5), ((0, 2, 3), (2, 5, 6)), ((0, 3, 4), (2, 4, 5))),
        AxisGeometry((5, 7), (4, 8), (5, 7), ((1, 4, 5),), ((1, 5, 6),)),
    ]


def test_tiles_thinner_than_the_halo_take_rows_from_further_away():
    """7 rows on 5 ranks (2, 2, 1, 1, 1), kernel 5: a halo of 2 reaches two ranks away."""
    g = axis_geometry(7, 5, 5, 1, 2)
    assert g[2] == AxisGeometry((4, 5), (2, 7), (4, 5), ((1, 2, 4), (3, 5, 6), (4, 6, 7)),
                                ((1, 4, 5), (3, 4, 5), (4, 4, 5)))
    assert g[0].recv == ((1, 2, 4),) and g[4].recv == ((2, 4, 5), (3, 5, 6))


def test_every_send_is_a_receive_and_covers_the_need():
    for n, parts, k, s, p in [(10, 4, 2, 2, 0), (13, 5, 5, 1, 2), (9, 3, 4, 1, 1), (31, 4, 3, 2, 1), (8, 8, 3, 1, 1)]:
        g = axis_geometry(n, parts, k, s, p)
        sends = {(r, q, lo, hi) for r in range(parts) for q, lo, hi in g[r].send}
        recvs = {(q, r, lo, hi) for r in range(parts) for q, lo, hi in g[r].recv}
        assert sends == recvs
        for r in range(parts):
            lo, hi = max(g[r].needed[0], 0), min(g[r].needed[1], n)
            own = set(range(*g[r].owned)) & set(range(lo, hi))
            got = own | {i for _, a, b in g[r].recv for i in range(a, b)}
            assert got == set(range(lo, hi))
        assert sum(b - a for gr in g for a, b in [gr.out]) == output_size(n, k, s, p)


@pytest.mark.parametrize("args, message", [
    ((4, 5, 3, 1, 1), "5 ranks cannot split 4 input rows"),
    ((10, 2, 3, 1, 3), "need kernel >= 1, stride >= 1 and 0 <= padding < kernel"),
    ((2, 1, 5, 1, 0), "a kernel of 5 with padding 0 does not fit in 2 rows"),
    ((10, 6, 2, 2, 0), "6 ranks cannot split 10 input rows (5 output rows)"),
])
def test_refusals(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        axis_geometry(*args)
