"""The pipeline's pure parts: stage balancing, stage models drawn as the whole model, layers' stash and
restore, and the trace's events and measured bubble (no MPI messages)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from training.layers import Conv2d, Flatten, GlobalAvgPool, Linear, ReLU
from training.model import mlp
from training.parallel import trace
from training.parallel.pipeline import balance, layer_flops, stage_bounds, stage_model
from training.parallel.tensor import ColumnParallelLinear, RowParallelLinear


@pytest.mark.parametrize("costs, stages, bounds", [
    ([1, 1, 1, 1], 2, [0, 2, 4]),
    ([4, 1, 1, 1, 1], 2, [0, 1, 5]),
    ([1, 2, 3, 4, 5], 3, [0, 3, 4, 5]),  # 6 | 4 | 5: the largest is 6, and no cut does better
    ([5, 5, 5], 3, [0, 1, 2, 3]),
    ([3, 1, 1, 3], 2, [0, 2, 4]),  # ties: the earliest boundary
    ([7], 1, [0, 1]),
])
def test_balance_by_hand(costs, stages, bounds):
    assert balance(costs, stages) == bounds


def test_balance_is_optimal_against_every_cut():
    from itertools import combinations

    g = np.random.default_rng(0)
    for _ in range(200):
        n = int(g.integers(1, 9))
        costs = g.integers(1, 20, n).tolist()
        s = int(g.integers(1, n + 1))
        got = balance(costs, s)
        best = min(max(sum(costs[a:b]) for a, b in zip((0, *cut), (*cut, n)))
                   for cut in combinations(range(1, n), s - 1))
        assert max(sum(costs[a:b]) for a, b in zip(got, got[1:])) == best and len(got) == s + 1


def test_layer_flops_and_stage_bounds():
    sizes = [64, 512, 512, 512, 512, 512, 10]
    assert layer_flops(sizes) == [4 * 64 * 512] + [6 * 512 * 512] * 4 + [6 * 512 * 10]
    assert stage_bounds(sizes, 2) == [0, 3, 6]
    assert stage_bounds(sizes, 1) == [0, 6]
    assert stage_bounds([64, 128, 10], 2) == [0, 1, 2]
    assert stage_bounds(sizes, 2, layers=[2, 4]) == [0, 2, 6]
    assert stage_bounds(sizes, 3, "megatron") == [0, 2, 4, 6]  # pairs (0,1) (2,3) (4,5)


@pytest.mark.parametrize("args, message", [
    (([64, 10], 2), "--pipeline-stages 2 is more than the model's 1 layers"),
    (([64, 8, 8, 10], 3, "megatron"), "more than the model's 2 units (Megatron pairs count as one)"),
    (([64, 8, 8, 10], 2, "course", [1, 1]), "--stage-layers 1,1: 2 counts of at least 1 adding up to the model's 3"),
    (([64, 8, 8, 10], 2, "course", [3, 0]), "--stage-layers 3,0: 2 counts of at least 1"),
    (([64, 8, 8, 8, 10], 2, "megatron", [1, 3]), "--stage-layers 1,3 cuts a column -> row pair"),
])
def test_stage_bounds_refusals(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stage_bounds(*args)


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_every_stage_starts_as_the_whole_model(scheme):
    sizes = [7, 13, 11, 9, 8, 5]
    whole = mlp(sizes, "tanh", seed=4, dtype=np.float64)
    for s in (1, 2, 3):
        bounds = stage_bounds(sizes, s, scheme)
        for r in range(s):
            stage = stage_model(sizes, "tanh", MPI.COMM_SELF, bounds, r, scheme, seed=4, dtype=np.float64)
            for j in range(len(stage.layers)):
                for name in ("W", "b"):
                    assert np.array_equal(stage.p[f"{name}{j}"], whole.p[f"{name}{bounds[r] + j}"])


@pytest.mark.parametrize("make, shape", [
    (lambda: Linear(6, 4, "relu"), (5, 6)),
    (lambda: Flatten(), (5, 2, 3)),
    (lambda: Conv2d(2, 3, 3), (2, 2, 5, 4)),
    (lambda: GlobalAvgPool(), (2, 3, 4, 5)),
    (lambda: ReLU(), (2, 3, 4, 5)),
    (lambda: ColumnParallelLinear(6, 4, MPI.COMM_SELF, "tanh", gather_output=True), (5, 6)),
    (lambda: RowParallelLinear(6, 4, MPI.COMM_SELF, "tanh"), (5, 6)),
])
def test_a_restored_stash_gives_that_forwards_backward(make, shape):
    """Forward a, stash; forward b; restore a: backward gives what forward a then backward gives."""
    from training.layers import Sequential

    g = np.random.default_rng(1)
    layer = make()
    Sequential([layer], dtype=np.float64, seed=2)
    a, b = g.standard_normal(shape), g.standard_normal(shape)
    y = layer.forward(a)
    dy = g.standard_normal(y.shape)
    want_dx = layer.backward(dy.copy())
    want_grads = [gr.copy() for gr in getattr(layer, "grads", [])]
    layer.forward(a)
    saved = layer.stash()
    layer.forward(b)
    layer.restore(saved)
    assert np.array_equal(layer.backward(dy.copy()), want_dx)
    assert all(np.array_equal(g1, g2) for g1, g2 in zip(getattr(layer, "grads", []), want_grads))


def test_trace_events_and_bubble_by_hand():
    spans = [[("forward", 0, 0.0, 1.0), ("send", 0, 1.0, 1.0), ("recv", 0, 1.0, 3.0), ("backward", 0, 3.0, 5.0)],
             [("recv", 0, 0.0, 1.0), ("forward", 0, 1.0, 2.0), ("backward", 0, 2.0, 3.0), ("wait", -1, 3.0, 3.5)]]
    b = trace.bubble(spans)
    assert b["step_s"] == 5.0 and b["per_rank"] == [0.4, 0.6] and b["mean"] == pytest.approx(0.5)
    assert b["busiest"] == 0.4
    events = trace.chrome(spans, ["stage 0", "stage 1"])["traceEvents"]
    assert [e["args"]["name"] for e in events if e["ph"] == "M"] == ["stage 0", "stage 1"]
    assert [(e["name"], e["tid"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"] == [
        ("F0", 0, 0.0, 1e6), ("send", 0, 1e6, 0.0), ("recv", 0, 1e6, 2e6), ("B0", 0, 3e6, 2e6),
        ("recv", 1, 0.0, 1e6), ("F0", 1, 1e6, 1e6), ("B0", 1, 2e6, 1e6), ("wait", 1, 3e6, 0.5e6)]


def test_trace_write_makes_json_and_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plots extra is not installed")
    spans = [[("forward", 0, 0.0, 1e-3), ("backward", 0, 1e-3, 3e-3)]]
    png = trace.write(str(tmp_path / "t.json"), spans)
    assert png == str(tmp_path / "t.png") and (tmp_path / "t.png").stat().st_size > 0
