"""Pipeline schedules against hand-worked tables, and their invariants for S = 1..5, M = 1..9 (no MPI)."""

from __future__ import annotations

import pytest

from training.parallel.pipeline_schedule import (
    BACKWARD, FORWARD, Deadlock, Op, SCHEDULES, bubble_fraction, clock_cycles, gpipe, lower, one_f_one_b, simulate,
)


@pytest.mark.parametrize("m, n, table", [
    (3, 3, [[(0, 0)], [(1, 0), (0, 1)], [(2, 0), (1, 1), (0, 2)], [(2, 1), (1, 2)], [(2, 2)]]),
    (1, 1, [[(0, 0)]]),
    (1, 3, [[(0, 0)], [(0, 1)], [(0, 2)]]),
    (3, 1, [[(0, 0)], [(1, 0)], [(2, 0)]]),
    (4, 2, [[(0, 0)], [(1, 0), (0, 1)], [(2, 0), (1, 1)], [(3, 0), (2, 1)], [(3, 1)]]),
])
def test_clock_cycles_are_torchgpipes(m, n, table):
    assert clock_cycles(m, n) == table


def test_clock_cycles_are_gpipes_forward_wavefront():
    """Partition j runs micro-batch i in cycle i + j: the forward half of GPipe with one slot per pass."""
    for s in range(1, 5):
        for m in range(1, 7):
            sim = simulate(lower(gpipe(s, m)))
            for k, cycle in enumerate(clock_cycles(m, s)):
                for i, j in cycle:
                    at = [str(op) for op in lower(gpipe(s, m))[j]].index(f"F{i}")
                    assert sim.start[j][at] == k


def test_schedules_written_out():
    assert [[str(op) for op in ops] for ops in gpipe(2, 2)] == [["F0", "F1", "B0", "B1"]] * 2
    assert [[str(op) for op in ops] for ops in one_f_one_b(3, 4)] == [
        ["F0", "F1", "F2", "B0", "F3", "B1", "B2", "B3"],
        ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"],
        ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"],
    ]
    assert [[str(op) for op in ops] for ops in one_f_one_b(3, 1)] == [["F0", "B0"]] * 3


def test_two_stage_1f1b_lowered_by_hand():
    lowered = lower(one_f_one_b(2, 3))
    assert [str(op) for op in lowered[0]] == [
        "F0", "send a0>1", "F1", "send a1>1", "recv g0<1", "B0", "F2", "send a2>1", "recv g1<1", "B1",
        "recv g2<1", "B2"]
    assert [str(op) for op in lowered[1]] == [
        "recv a0<0", "F0", "B0", "send g0>0", "recv a1<0", "F1", "B1", "send g1>0", "recv a2<0", "F2", "B2",
        "send g2>0"]


def test_two_stage_1f1b_simulated_by_hand():
    """One slot per pass: stage 0 waits for B0's gradient from 2 to 3; stage 1 idles at the start and the end."""
    sim = simulate(lower(one_f_one_b(2, 3)))
    assert sim.start[0] == [0, 1, 1, 2, 2, 3, 4, 5, 5, 5, 6, 7]
    assert sim.end[0] == [1, 1, 2, 2, 3, 4, 5, 5, 5, 6, 7, 8]
    assert sim.start[1] == [0, 1, 2, 3, 3, 3, 4, 5, 5, 5, 6, 7]
    assert sim.end[1] == [1, 2, 3, 3, 3, 4, 5, 5, 5, 6, 7, 7]
    assert sim.makespan == 8 and sim.busy == [6, 6] and sim.peak_stash == [2, 1] and sim.messages == 6


def test_simulated_step_counts():
    assert simulate(lower(gpipe(1, 1))).makespan == 2
    assert simulate(lower(gpipe(4, 1))).makespan == 8
    assert simulate(lower(gpipe(3, 5))).makespan == 14
    assert simulate(lower(one_f_one_b(3, 5))).makespan == 14
    assert simulate(lower(one_f_one_b(5, 2))).makespan == 12


def test_durations_and_message_times():
    """S=2, M=1, forward 1, backward 2, messages 0.5: the critical path is 1 + .5 + 1 + 2 + .5 + 2."""
    def duration(stage, op):
        return {FORWARD: 1.0, BACKWARD: 2.0}.get(op.kind, 0.5)

    sim = simulate(lower(gpipe(2, 1)), duration)
    assert sim.makespan == 7.0
    assert sim.end[1] == [1.5, 2.5, 4.5, 4.5]  # recv a0 arrives at 1.5
    assert sim.busy == [3.0, 3.0] and sim.idle(0) == 4.0


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("s", range(1, 6))
@pytest.mark.parametrize("m", range(1, 10))
def test_invariants(name, s, m):
    """No deadlock; F m before B m, each once, on every stage; 2(S-1) idle of 2(M+S-1); the peak stash."""
    schedule = SCHEDULES[name](s, m)
    lowered = lower(schedule)
    sim = simulate(lowered)
    assert sim.makespan == 2 * (m + s - 1)
    for r in range(s):
        passes = [str(op) for op in schedule[r]]
        assert sorted(passes) == sorted([f"F{i}" for i in range(m)] + [f"B{i}" for i in range(m)])
        assert all(passes.index(f"F{i}") < passes.index(f"B{i}") for i in range(m))
        assert sim.busy[r] == 2 * m and sim.idle(r) == 2 * (s - 1)
        assert sim.peak_stash[r] == (m if name == "gpipe" else min(s - r, m))
    assert sim.messages == 2 * (s - 1) * m
    assert sim.idle(0) / sim.makespan == pytest.approx(bubble_fraction(s, m))


def test_a_receive_with_no_send_ahead_of_it_is_a_deadlock():
    lowered = [[Op("recv_grad", 0, 1), Op(FORWARD, 0), Op("send_act", 0, 1)],
               [Op("recv_act", 0, 0), Op(FORWARD, 0), Op(BACKWARD, 0), Op("send_grad", 0, 0)]]
    with pytest.raises(Deadlock, match=r"stage 0 waits at op 0 \(recv g0<1\); stage 1 waits at op 0"):
        simulate(lowered)


def test_a_message_never_received_is_an_error():
    lowered = [[Op(FORWARD, 0), Op("send_act", 0, 1)], [Op(FORWARD, 0)]]
    with pytest.raises(ValueError, match="never received"):
        simulate(lowered)


@pytest.mark.parametrize("s, m", [(0, 1), (1, 0), (2, -1)])
def test_bad_sizes_are_refused(s, m):
    for make in (gpipe, one_f_one_b, clock_cycles):
        with pytest.raises(ValueError, match="at least one"):
            make(s, m) if make is not clock_cycles else make(m, s)
