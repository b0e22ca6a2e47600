"""The cost model against the real schedules, the textbook formulas, and its own rules (no MPI)."""

from __future__ import annotations

import math

import pytest

from collectives.algorithms import binomial, bruck, double_binary_tree, naive_ps, rabenseifner
from collectives.algorithms import recursive_doubling, ring, scatter_allgather, sharded_ps
from collectives.algorithms.schedule import partition
from collectives.model import cost_model
from collectives.model.hockney import Piecewise
from collectives.model.profile import Profile
from collectives.runtime import registry

ALPHA, BETA, GAMMA, O = 3e-6, 1e-9, 4e-10, 5e-6
ITEM = 4


def _profile(o=O, alpha=ALPHA, beta=BETA, gamma=GAMMA):
    import dataclasses

    return dataclasses.replace(Profile.hockney(alpha, beta, gamma), round_overhead=o)


def _schedules(family, alg, p, n):
    """Every rank's rounds, built by the algorithm modules themselves."""
    if family == "allreduce":
        chunk = registry.TREE_CHUNK_BYTES // ITEM
        fn = {
            "naive_ps": lambda r: naive_ps.allreduce_rounds(r, p, n),
            "sharded_ps": lambda r: sharded_ps.allreduce_rounds(r, p, n),
            "ring": lambda r: ring.allreduce_rounds(r, p, n, 0),
            "recursive_doubling": lambda r: recursive_doubling.allreduce_rounds(r, p, n),
            "rabenseifner": lambda r: rabenseifner.allreduce_rounds(r, p, n),
            "double_binary_tree": lambda r: double_binary_tree.allreduce_rounds(r, p, n, chunk),
        }[alg]
    elif family == "allgather":
        m = max(n // p, 1)
        off = tuple(range(0, (p + 1) * m, m))
        fn = {
            "ring": lambda r: ring.allgather_rounds(r, p, off),
            "recursive_doubling": lambda r: recursive_doubling.allgather_rounds(r, p, off),
            "bruck": lambda r: bruck.allgather_rounds(r, p, off),
        }[alg]
    elif family == "reduce_scatter":
        off = partition(n, p)
        fn = {
            "ring": lambda r: ring.reduce_scatter_rounds(r, p, off),
            "recursive_halving": lambda r: rabenseifner.reduce_scatter_rounds(r, p, off),
        }[alg]
    else:
        fn = {
            "binomial": lambda r: binomial.broadcast_rounds(r, p, n, 0),
            "scatter_allgather": lambda r: scatter_allgather.broadcast_rounds(r, p, n, 0),
        }[alg]
    return [fn(r) for r in range(p)]


def replay(schedules, o=O, alpha=ALPHA, beta=BETA, gamma=GAMMA, gamma_sent=None, alpha_one=None):
    """Bulk-synchronous replay with the model's rules, straight from the schedule objects.

    A rank's round: ``o`` plus the longer of (its receives one after another,
    each ``alpha + beta*b``, plus ``gamma*b`` per reduced piece, or
    ``gamma_sent*b`` where the piece overlaps a range the rank sends in the
    round) and (its sends one after another).  ``alpha`` is the exchange's
    latency, paid by a rank that both sends and receives in the round;
    one that only sends or only receives pays ``alpha_one`` (default the
    same).  A round costs its busiest rank; empty messages and rounds cost
    nothing.
    """
    gamma_sent = gamma if gamma_sent is None else gamma_sent
    alpha_one = alpha if alpha_one is None else alpha_one

    def rate(v, sends):
        if not v.reduce:
            return 0.0
        return gamma_sent if any(v.lo < s.hi and s.lo < v.hi for s in sends) else gamma

    total = 0.0
    for t in range(max((len(s) for s in schedules), default=0)):
        worst = 0.0
        for rounds in schedules:
            if t >= len(rounds):
                continue
            recvs = [v for v in rounds[t].recvs if v.count]
            sends = [s for s in rounds[t].sends if s.count]
            if not recvs and not sends:
                continue
            a = alpha if recvs and sends else alpha_one
            rt = sum(a + beta * v.count * ITEM + rate(v, sends) * v.count * ITEM for v in recvs)
            st = sum(a + beta * s.count * ITEM for s in sends)
            worst = max(worst, o + max(rt, st))
        total += worst
    return total


CASES = [(f, a) for f in ("allreduce", "allgather", "reduce_scatter", "broadcast")
         for a in cost_model.predictable(f)]


@pytest.mark.parametrize("family,alg", CASES)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17])
@pytest.mark.parametrize("n", [1, 7, 1000, 1 << 18, (1 << 18) + 13])
def test_model_equals_replay_of_the_real_schedule(family, alg, p, n):
    """Round counts, message sizes, fold rounds, fan-in and tree pipelining all come out of the schedules."""
    if family == "allgather":
        n = max(n // p, 1) * p
    want = replay(_schedules(family, alg, p, n))
    got = cost_model.predict(family, alg, n * ITEM, p, _profile(), itemsize=ITEM, in_place=True)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("family,alg", CASES)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, (1 << 18) + 13])
def test_a_rank_that_only_sends_or_only_receives_pays_the_one_way_latency(family, alg, p, n):
    """Some rounds move data one way only: where blocks are empty (fewer elements than
    ranks), and where the double binary tree's pipeline fills and drains."""
    import dataclasses

    if family == "allgather":
        n = max(n // p, 1) * p
    one = ALPHA / 3  # a one-way message's latency below the exchange's, as measured
    prof = dataclasses.replace(_profile(), intra=Piecewise.line(one, BETA),
                               intra_exchange=Piecewise.line(ALPHA, BETA))
    want = replay(_schedules(family, alg, p, n), alpha_one=one)
    got = cost_model.predict(family, alg, n * ITEM, p, prof, itemsize=ITEM, in_place=True)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("family,alg", CASES)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8, 12, 17])
@pytest.mark.parametrize("n", [7, 1000, (1 << 18) + 13])
def test_only_reductions_into_a_range_just_sent_pay_the_sent_rate(family, alg, p, n):
    """The model charges ``reduce_sent`` exactly where a schedule reduces into what it sends."""
    import dataclasses

    if family == "allgather":
        n = max(n // p, 1) * p
    prof = dataclasses.replace(_profile(), reduce_sent=Piecewise.line(0.0, 3 * GAMMA))
    want = replay(_schedules(family, alg, p, n), gamma_sent=3 * GAMMA)
    got = cost_model.predict(family, alg, n * ITEM, p, prof, itemsize=ITEM, in_place=True)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    if p > 1 and alg == "recursive_doubling" and family == "allreduce":
        plain = cost_model.predict(family, alg, n * ITEM, p, _profile(), itemsize=ITEM,
                                   in_place=True)
        assert got > plain


def _in_design_table(family, alg):
    try:
        cost_model.hockney_terms(family, alg, 2)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("family,alg", [c for c in CASES if _in_design_table(*c)])
@pytest.mark.parametrize("p", [2, 4, 8, 64, 1024])
def test_power_of_two_matches_the_design_table(family, alg, p):
    a, b, g = cost_model.hockney_terms(family, alg, p)
    n = 1 << 22
    want = a * ALPHA + b * n * BETA + g * n * GAMMA
    got = cost_model.predict(family, alg, n, p, _profile(o=0.0), itemsize=ITEM, in_place=True)
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("p", [3, 5, 6, 7, 12])
def test_non_power_of_two_pays_two_fold_rounds(p):
    prof = _profile(o=0.0)
    n = 1 << 20
    p2 = 1 << (p.bit_length() - 1)
    core = cost_model.predict("allreduce", "recursive_doubling", n, p2, prof, in_place=True)
    got = cost_model.predict("allreduce", "recursive_doubling", n, p, prof, in_place=True)
    fold = (ALPHA + BETA * n + GAMMA * n) + (ALPHA + BETA * n)
    assert got == pytest.approx(core + fold, rel=1e-9)


def test_tree_rounds_are_chunks_plus_twice_the_height():
    """With only a per-round cost, the tree's time counts its C + 2H - 1 rounds."""
    prof = _profile(o=1.0, alpha=0.0, beta=0.0, gamma=0.0)
    for p in (2, 4, 8, 16, 5, 12):
        for chunks in (1, 3, 10):
            n = 2 * chunks * (registry.TREE_CHUNK_BYTES // ITEM)
            height = max(max(double_binary_tree._shape(t)[0]) for t in double_binary_tree.trees(p))
            got = cost_model.predict("allreduce", "double_binary_tree", n * ITEM, p, prof, in_place=True)
            assert got == chunks + 2 * height - 1


def test_ring_pays_the_inter_node_link_and_recursive_doubling_shares_the_port():
    prof = Profile(
        intra=Piecewise.line(1e-6, 1e-10),
        inter=Piecewise.line(5e-6, 1e-9),
        reduce=Piecewise.line(0.0, 0.0),
        copy=Piecewise.line(0.0, 0.0),
    )
    n, p = 1 << 24, 16
    one = cost_model.predict("allreduce", "ring", n, p, prof, in_place=True)
    two = cost_model.predict("allreduce", "ring", n, p, prof, ranks_per_node=8, in_place=True)
    assert one == pytest.approx(2 * (p - 1) * (1e-6 + 1e-10 * n / p))
    assert two == pytest.approx(2 * (p - 1) * (5e-6 + 1e-9 * n / p))
    # recursive doubling's last round (distance 8) sends from all 8 ranks of a node at once
    rd = cost_model.predict("allreduce", "recursive_doubling", n, p, prof, ranks_per_node=8, in_place=True)
    assert rd == pytest.approx(3 * (1e-6 + 1e-10 * n) + (5e-6 + 8 * 1e-9 * n))


def test_exchange_cost_is_used_where_ranks_send_and_receive_at_once():
    import dataclasses

    base = _profile(o=0.0, gamma=0.0)
    slow = dataclasses.replace(base, intra_exchange=Piecewise.line(ALPHA, 2 * BETA))
    n = 1 << 20
    ring_base = cost_model.predict("allreduce", "ring", n, 2, base, in_place=True)
    assert cost_model.predict("allreduce", "ring", n, 2, slow, in_place=True) == pytest.approx(
        ring_base + 2 * BETA * n / 2)
    # a binomial broadcast only sends or only receives: one-way cost
    assert cost_model.predict("broadcast", "binomial", n, 4, slow) == pytest.approx(
        cost_model.predict("broadcast", "binomial", n, 4, base))


def test_a_one_way_message_costs_at_most_the_exchange_of_its_size():
    import dataclasses

    # ping-pong measured dearer than the exchange (as at 2-3 MiB on the dev VM)
    base = _profile(o=0.0, gamma=0.0)
    dear = dataclasses.replace(base, intra=Piecewise.line(ALPHA, 3 * BETA),
                               intra_exchange=Piecewise.line(ALPHA, 2 * BETA))
    n = 1 << 20
    # both of the naive parameter server's rounds are one-way messages of the whole vector
    assert cost_model.predict("allreduce", "naive_ps", n, 2, dear, in_place=True) == pytest.approx(
        2 * (ALPHA + 2 * BETA * n))
    # where ping-pong is the cheaper, one-way messages keep its cost
    cheap = dataclasses.replace(base, intra_exchange=Piecewise.line(ALPHA, 2 * BETA))
    assert cost_model.predict("allreduce", "naive_ps", n, 2, cheap, in_place=True) == pytest.approx(
        2 * (ALPHA + BETA * n))


def test_only_the_naive_root_reduces_at_the_rate_measured_alone():
    import dataclasses

    base = _profile(o=0.0)
    alone = dataclasses.replace(base, reduce_alone=Piecewise.line(0.0, GAMMA / 4))
    n, p = 1 << 20, 5
    for alg in cost_model.predictable("allreduce"):
        t_all = cost_model.predict("allreduce", alg, n, p, base, in_place=True)
        t_alone = cost_model.predict("allreduce", alg, n, p, alone, in_place=True)
        if alg == "naive_ps":  # the root reduces P - 1 vectors while every other rank waits
            assert t_all - t_alone == pytest.approx((p - 1) * n * GAMMA * 3 / 4)
        else:  # every rank reduces at once
            assert t_alone == t_all
    # a profile without the measurement charges the all-at-once rate
    assert base.reduce_alone is None


def test_copy_and_call_overhead_are_charged_once():
    import dataclasses

    prof = dataclasses.replace(_profile(), call_overhead=7e-6, copy=Piecewise.line(0.0, 2e-10))
    n = 1 << 20
    inplace = cost_model.predict("allreduce", "ring", n, 4, prof, in_place=True)
    out = cost_model.predict("allreduce", "ring", n, 4, prof)
    assert out - inplace == pytest.approx(2e-10 * n)
    assert inplace - cost_model.predict("allreduce", "ring", n, 4, _profile(), in_place=True) == pytest.approx(7e-6)


@pytest.mark.parametrize("p", [1, 2, 5])
def test_each_algorithm_is_charged_its_own_call_overhead(p):
    import dataclasses

    base = _profile()
    own = dataclasses.replace(base, call_overhead=7e-6,
                              call_overheads={"allreduce/ring": 2e-6, "broadcast/binomial": 4e-6})
    for family, alg in CASES:
        want = own.call_overheads.get(f"{family}/{alg}", 7e-6)
        for n in (4, 1000, 1 << 20):
            extra = (cost_model.predict(family, alg, n, p, own)
                     - cost_model.predict(family, alg, n, p, base))
            assert extra == pytest.approx(want, rel=1e-9, abs=1e-15), (family, alg, n)


def _engine_scratch(schedules):
    """Most elements any rank reduces out of one round's receives: the engine's scratch."""
    return max((sum(v.count for v in r.recvs if v.reduce) for rounds in schedules for r in rounds),
               default=0)


@pytest.mark.parametrize("family,alg", [c for c in CASES if c[0] in ("allreduce", "reduce_scatter")])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17])
@pytest.mark.parametrize("n", [1, 7, 1000, 1 << 18, (1 << 18) + 13])
def test_scratch_formula_matches_the_schedules(family, alg, p, n):
    want = _engine_scratch(_schedules(family, alg, p, n))
    got = cost_model.scratch_elements(family, alg, n, p, ITEM)
    assert abs(got - want) <= max(p, 0.01 * want)


def _two_regimes(cut, fast, slow, footprint):
    """A cost whose bytes get ``slow`` once the size passes ``cut`` (a cache running out)."""
    from collectives.model.hockney import Segment

    return Piecewise((Segment(0.0, cut, 0.0, fast), Segment(cut, math.inf, 0.0, slow)), footprint=footprint)


def test_per_byte_costs_follow_the_working_set_not_the_message():
    """An 8 MiB ring all-reduce at P=2 keeps 2 x (8 + 8 + 4) MiB on the node: past a 32 MiB cache."""
    import dataclasses

    cut, n = 32 << 20, 8 << 20
    # measured with two ranks cycling through three buffers: 6 n resident
    link = _two_regimes(cut / 6, 1e-10, 3e-10, 6)
    kern = _two_regimes(cut / 6, 2e-11, 8e-11, 6)
    prof = dataclasses.replace(Profile.hockney(0.0, 0.0), intra=link, reduce=kern, copy=kern)
    assert cost_model.footprint("allreduce", "ring", n, 2) == 2 * (2 * n + n // 2)
    got = cost_model.predict("allreduce", "ring", n, 2, prof)
    # the first 4 MiB block (below the cut by itself), its reduction and the copy pay the
    # slow regime's costs; the second round sends the block just reduced, hot: 2 x 3 x 4 MiB
    assert got == pytest.approx(3e-10 * n / 2 + 1e-10 * n / 2 + 8e-11 * n / 2 + 8e-11 * n)
    # in place, 2 x (8 + 4) MiB = 24 MiB fits: the fast regime
    assert cost_model.predict("allreduce", "ring", n, 2, prof, in_place=True) == pytest.approx(
        2 * 1e-10 * n / 2 + 2e-11 * n / 2)
    # without a recorded footprint the message's own size decides, as before
    plain = dataclasses.replace(prof, intra=dataclasses.replace(link, footprint=0.0))
    assert cost_model.predict("allreduce", "ring", n, 2, plain) == pytest.approx(
        2 * 1e-10 * n / 2 + 8e-11 * n / 2 + 8e-11 * n)


def test_the_tree_forwards_hot_chunks():
    """The tree's chunk messages keep their own size's speed; its reductions pay the working set."""
    import dataclasses

    cut, n = 32 << 20, 64 << 20
    link = _two_regimes(cut / 6, 1e-10, 3e-10, 6)
    prof = dataclasses.replace(Profile.hockney(0.0, 0.0), intra=link)
    hot = dataclasses.replace(prof, intra=dataclasses.replace(link, footprint=0.0))
    tree = cost_model.predict("allreduce", "double_binary_tree", n, 4, prof, in_place=True)
    assert tree == pytest.approx(cost_model.predict("allreduce", "double_binary_tree", n, 4, hot, in_place=True))
    ring = cost_model.predict("allreduce", "ring", n, 4, prof, in_place=True)
    assert ring == pytest.approx(2 * 3 * 3e-10 * n / 4)


@pytest.mark.parametrize("rpn,hot_rounds_fast", [(16, False), (1, True)])
def test_hot_data_is_charged_what_the_node_touches_in_a_round(rpn, hot_rounds_fast):
    """Ring at P=16, 4 MiB blocks: after the first round its blocks are hot, but 16 ranks of
    one node touch 16 x 3 x 4 MiB a round, past a 32 MiB cache; one rank per node, 12 MiB."""
    import dataclasses

    cut, n, p = 32 << 20, 64 << 20, 16
    link = _two_regimes(cut / 6, 1e-10, 3e-10, 6)
    prof = dataclasses.replace(Profile.hockney(0.0, 0.0), intra=link)
    b = n // p
    hot = 1e-10 if hot_rounds_fast else 3e-10
    got = cost_model.predict("allreduce", "ring", n, p, prof, ranks_per_node=rpn, in_place=True)
    assert got == pytest.approx(3e-10 * b + (2 * (p - 1) - 1) * hot * b)


@pytest.mark.parametrize("alg,slow,fast", [
    ("ring", [2], [2] * 5),  # the first block is cold; the rest were reduced or received just before
    ("rabenseifner", [4], [2, 2, 4]),  # first halving cold; the rest hot (the 4 MiB doubling: 32 MiB)
    ("sharded_ps", [2] * 3, [2] * 3),  # the shards out cold, the reduced shards back hot
    ("recursive_doubling", [8, 8], []),  # hot, but the reducing 8 MiB round touches 96 MiB
])
def test_only_data_from_the_round_before_is_hot(alg, slow, fast):
    """P=4 on one node, 8 MiB in place, a cache running out at 6 MiB of measured size (36 MiB)."""
    import dataclasses

    n, p, mib = 8 << 20, 4, 1 << 20
    link = _two_regimes(6 * mib, 1e-10, 3e-10, 6)
    prof = dataclasses.replace(Profile.hockney(0.0, 0.0), intra=link)
    got = cost_model.predict("allreduce", alg, n, p, prof, in_place=True)
    assert got == pytest.approx(3e-10 * mib * sum(slow) + 1e-10 * mib * sum(fast))


def test_naive_ps_root_holds_every_vector():
    n = 1 << 20
    assert cost_model.footprint("allreduce", "naive_ps", n, 5, in_place=True) == 5 * n + 4 * n
    # on nodes of two ranks, only the root's node holds the (P-1) vectors
    assert cost_model.footprint("allreduce", "naive_ps", n, 5, ranks_per_node=2, in_place=True) == 2 * n + 4 * n
    assert cost_model.footprint("allreduce", "recursive_doubling", n, 4, ranks_per_node=2) == 2 * 3 * n


def test_best_follows_the_textbook_crossover():
    """Latency-bound: recursive doubling; bandwidth-bound at large P: ring or Rabenseifner."""
    prof = _profile(o=0.0, alpha=5e-6, beta=1e-10, gamma=5e-11)
    assert cost_model.best("allreduce", 8, 64, prof)[0] == "recursive_doubling"
    assert cost_model.best("allreduce", 1 << 28, 64, prof)[0] in ("ring", "rabenseifner", "sharded_ps")
    assert cost_model.best("allgather", 1 << 28, 16, prof)[0] in ("ring", "recursive_doubling", "bruck")


def test_unknown_algorithm_names_the_known_ones():
    with pytest.raises(KeyError, match="ring"):
        cost_model.predict("allreduce", "mpi", 1024, 4, _profile())


def test_large_p_is_fast_enough_for_simulation():
    import time

    prof = _profile()
    t0 = time.perf_counter()
    for alg in cost_model.predictable("allreduce"):
        x = cost_model.predict("allreduce", alg, 64 << 20, 4096, prof, ranks_per_node=32)
        assert math.isfinite(x) and x > 0
    assert time.perf_counter() - t0 < 30
