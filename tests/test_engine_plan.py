"""The engine's compiled plans, without MPI: what a call posts, and the cache that keeps them."""

from __future__ import annotations

import pytest

import numpy as np

from collectives.runtime import engine as _engine
from collectives.algorithms import double_binary_tree, rabenseifner, recursive_doubling, ring
from collectives.runtime.engine import PLANS_KEPT, compile_rounds
from collectives.algorithms.schedule import Recv, Round, Send


def test_a_round_compiles_to_byte_ranges_scratch_slots_and_traffic():
    rounds = (
        Round(),  # nothing to do: dropped
        Round(
            sends=(Send(1, 0, 3, tag=1), Send(2, 5, 5)),  # the empty send is dropped
            recvs=(Recv(1, 3, 5, reduce=True), Recv(2, 6, 8), Recv(3, 8, 11, reduce=True,
                                                                    incoming_first=True)),
        ),
        Round(sends=(Send(1, 0, 4),), recvs=(Recv(1, 2, 4, reduce=True),)),
    )
    plan = compile_rounds(rounds, 8)
    assert len(plan.steps) == 2
    first, second = plan.steps
    # reducing receives land in the scratch one after another, copies in the work buffer
    assert first.recvs == ((1, 0, 0, 16, True), (2, 0, 48, 64, False), (3, 0, 16, 40, True))
    assert first.sends == ((1, 1, 0, 24),)
    assert first.reduces == ((0, 3, 0, 2, False), (2, 8, 2, 3, True))
    assert first.traffic == (1, 3, 24, 56)
    assert not first.sends_first
    # the second round reduces [2, 4) while sending [0, 4): its send must finish first
    assert second.sends_first
    assert plan.scratch == 5  # the most one round reduces


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_scratch_is_the_most_one_round_reduces(p, n):
    for rank in range(p):
        for rounds in (ring.allreduce_rounds(rank, p, n), rabenseifner.allreduce_rounds(rank, p, n),
                       double_binary_tree.allreduce_rounds(rank, p, n, 64)):
            want = max((sum(v.count for v in r.recvs if v.reduce) for r in rounds), default=0)
            assert compile_rounds(rounds, 4).scratch == want


def test_a_schedule_is_compiled_once_per_item_size():
    rounds = recursive_doubling.allreduce_rounds(0, 4, 12345)
    assert compile_rounds(rounds, 4) is compile_rounds(rounds, 4)
    assert compile_rounds(rounds, 8) is not compile_rounds(rounds, 4)
    assert compile_rounds(rounds, 8).steps[0].sends[0][3] == 8 * 12345


def test_an_equal_schedule_that_is_another_object_gets_its_own_entry():
    # the cache is by identity, and keeps the schedule alive so its id is not reused
    a = (Round(sends=(Send(1, 0, 4),)),)
    b = (Round(sends=(Send(1, 0, 4),)),)
    plan_a, plan_b = compile_rounds(a, 4), compile_rounds(b, 4)
    assert plan_a._replace(packed=None) == plan_b._replace(packed=None)
    assert np.array_equal(plan_a.packed, plan_b.packed)
    assert _engine._PLANS[(id(a), 4)][0] is a
    assert _engine._PLANS[(id(b), 4)][0] is b


def test_a_list_is_compiled_afresh_every_time():
    rounds = [Round(sends=(Send(1, 0, 4),))]
    first = compile_rounds(rounds, 4)
    rounds.append(Round(sends=(Send(1, 4, 8),)))  # a list can change under the same id
    assert len(compile_rounds(rounds, 4).steps) == 2 and len(first.steps) == 1


def test_the_cache_stays_bounded():
    kept = [(Round(sends=(Send(1, 0, k + 1),)),) for k in range(PLANS_KEPT + 10)]
    for rounds in kept:
        compile_rounds(rounds, 4)
    assert len(_engine._PLANS) == PLANS_KEPT
    assert (id(kept[-1]), 4) in _engine._PLANS
    assert (id(kept[0]), 4) not in _engine._PLANS


def test_a_plan_packs_into_the_hand_worked_table():
    # rank 0 of P=2, recursive doubling of 3 float32: one step, receive-and-reduce then send,
    # the reduce overlapping the send (sends first)
    rounds = recursive_doubling.allreduce_rounds(0, 2, 3)
    plan = compile_rounds(rounds, 4)
    assert plan.packed.tolist() == [
        1, 2, 2,               # steps, most messages in a step, messages
        0, 2, 0, 1, 1, 1,      # step 0: messages 0..2, reduces 0..1, sends first, 1 receive
        0, 1, 0, 0, 12, 1,     # receive from 1, tag 0, bytes 0..12, into the scratch
        1, 1, 0, 0, 12, 0,     # send to 1, tag 0, bytes 0..12
        0, 0, 0, 3, 0,         # reduce: message 0, work 0, scratch 0, 3 elements, ours first
    ]
    assert plan.traffic == (1, 1, 12, 12, 1) and plan.largest_reduce == 12


def test_a_two_step_plan_with_a_copy_packs_each_step_in_turn():
    rounds = (Round(sends=(Send(1, 0, 2, tag=5),)), Round(recvs=(Recv(2, 4, 6, tag=7),)), Round())
    plan = compile_rounds(rounds, 8)
    assert plan.packed.tolist() == [
        2, 1, 2,
        0, 1, 0, 0, 0, 0,      # step 0: message 0, no reduce, no receive
        1, 2, 0, 0, 0, 1,      # step 1: message 1, no reduce, 1 receive (the empty round is dropped)
        1, 1, 5, 0, 16, 0,
        0, 2, 7, 32, 48, 0,
    ]
    assert plan.traffic == (1, 1, 16, 16, 2) and plan.largest_reduce == 0


def test_no_binding_when_switched_off(monkeypatch):
    from collectives.runtime import native

    monkeypatch.setenv("COLLECTIVES_NATIVE", "0")
    assert native.binding.__wrapped__() is None
    monkeypatch.setenv("COLLECTIVES_NATIVE", "1")
    assert native.binding.__wrapped__() is not None
