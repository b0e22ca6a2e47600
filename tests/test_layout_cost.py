"""The collectives one training step issues under a layout, against hand-worked lists."""

from __future__ import annotations

import pytest

from collectives.model.profile import Profile
from training.parallel.layout_cost import Collective, local_parameters, predict_step, step_collectives


def test_course_scheme_data_2_tensor_2():
    # widths 8-6-4-3, B = 10: 5 rows per replica; hidden outputs 6 and 4 cut 3+3 and 2+2
    assert step_collectives([8, 6, 4, 3], 10, 2, 2, "course") == [
        Collective("tensor", "allgather", 2 * 5 * 3 * 4, 2),  # layer 0's output, forward
        Collective("tensor", "allgather", 2 * 5 * 2 * 4, 2),  # layer 1's output, forward
        Collective("tensor", "allreduce", 5 * 6 * 4, 2),  # layer 1's input gradient, backward
        Collective("data", "allreduce", ((8 + 1) * 3 + (6 + 1) * 2 + (4 + 1) * 3) * 4, 2),
    ]


def test_megatron_scheme_data_2_tensor_2():
    # pair 8->6->4 (the row layer's output all-reduced forward), then 4->3 replicated
    assert step_collectives([8, 6, 4, 3], 10, 2, 2, "megatron") == [
        Collective("tensor", "allreduce", 5 * 4 * 4, 2),
        Collective("data", "allreduce", ((8 + 1) * 3 + 3 * 4 + 4 + (4 + 1) * 3) * 4, 2),
    ]


def test_megatron_backward_all_reduce_for_every_pair_but_the_first():
    calls = step_collectives([7, 9, 5, 6, 4, 3], 8, 1, 3, "megatron")
    assert calls == [Collective("tensor", "allreduce", 8 * 5 * 4, 3),  # pair 0: its output
                     Collective("tensor", "allreduce", 8 * 4 * 4, 3),  # pair 1: its output
                     Collective("tensor", "allreduce", 8 * 5 * 4, 3)]  # pair 1: its input gradient


def test_pure_layouts_and_uneven_rows():
    assert step_collectives([4, 5, 2], 7, 1, 1) == []
    assert step_collectives([4, 5, 2], 7, 3, 1) == [Collective("data", "allreduce", (5 * 5 + 6 * 2) * 4, 3)]
    # 7 rows over 2 replicas: the first holds 4
    assert step_collectives([4, 5, 2], 7, 2, 2)[0] == Collective("tensor", "allgather", 2 * 4 * 3 * 4, 2)
    assert local_parameters([4, 5, 2], 2, "course") == (4 + 1) * 3 + (5 + 1) * 2


def test_the_textbook_profile_gives_the_textbook_ring_cost():
    alpha, beta = 2e-6, 1e-9
    prof = Profile.hockney(alpha, beta, 0.0)
    calls = [Collective("data", "allreduce", 1 << 20, 4), Collective("tensor", "allgather", 1 << 20, 4)]
    got = predict_step(calls, prof, "ring", in_place=True)
    assert got["data"] == pytest.approx(2 * 3 * alpha + 2 * 3 / 4 * (1 << 20) * beta, rel=1e-9)
    assert got["tensor"] == pytest.approx(3 * alpha + 3 / 4 * (1 << 20) * beta, rel=1e-9)
