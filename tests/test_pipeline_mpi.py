"""A pipeline's stages hold, piece by piece, what one rank holds; its traffic and stash are the textbook's.

Every layout of the world that has a pipeline axis and fits (S = P; at
P = 4 also data 2 x pipeline 2, and tensor 2 x pipeline 2 in both tensor
schemes), both schedules,
micro-batch counts that divide the rows and that do not, float64 to 1e-10
and float32 to 1e-5 after 50 SGD steps, parameters and gradients compared
one by one against the one-rank model gathered into the one-rank layout.
"""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.algorithms.schedule import partition
from collectives.runtime import traffic
from conftest import collective_assert, world
from training.model import mlp
from training.optim import SGD
from training.parallel.grid import Layout, ProcessGrid
from training.parallel.pipeline import Pipeline, stage_bounds, stage_model
from training.parallel.whole import to_whole

pytestmark = pytest.mark.mpi(min_size=1)

SIZES = [7, 13, 11, 9, 8, 6, 5]  # six layers, none of them alike
ROWS = 23  # per data rank: micro-batches of 6, 6, 6, 5 at M = 4


def _layouts():
    """(pipeline, tensor, scheme) for this world: every stage count that divides P, and T x S at P = 4 with both
    tensor schemes (Megatron's pairs never cut by a stage boundary)."""
    p = world().Get_size()
    out = [(s, 1, "course") for s in range(1, p + 1) if p % s == 0 and (s > 1 or p == 1)]
    return out + ([(2, 2, "course"), (2, 2, "megatron")] if p == 4 else [])


def _pipeline(grid, schedule, m, dtype, scheme="course"):
    s, r = grid.layout.pipeline, grid.pipeline.Get_rank()
    bounds = stage_bounds(SIZES, s, scheme)
    stage = stage_model(SIZES, "tanh", grid.tensor, bounds, r, scheme, seed=3, dtype=dtype, algorithm="ring")
    return Pipeline(stage, grid.pipeline, schedule, m, (SIZES[bounds[r]], SIZES[bounds[r + 1]]))


def _batches(d: int, steps: int, dtype):
    g = np.random.default_rng(11)
    return [(g.standard_normal((ROWS * d, SIZES[0])).astype(dtype), g.integers(0, SIZES[-1], ROWS * d))
            for _ in range(steps)]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("m", [1, 4, 9])
def test_fifty_steps_hold_the_one_rank_model(dtype, tol, schedule, m):
    comm = world()
    for s, t, scheme in _layouts():
        grid = ProcessGrid(comm, Layout(comm.Get_size(), pipeline=s, tensor=t))
        d, rank = grid.layout.data, grid.data.Get_rank()
        pipe, one = _pipeline(grid, schedule, m, dtype, scheme), mlp(SIZES, "tanh", seed=3, dtype=dtype)
        mine, theirs = SGD(pipe.params, 0.9, 1e-4), SGD(one.params, 0.9, 1e-4)
        lo, hi = partition(ROWS * d, d)[rank : rank + 2]
        for x, y in _batches(d, 50, dtype):
            loss = pipe.loss_and_grad(x[lo:hi], y[lo:hi], 1.0 / len(y))
            collectives.allreduce(pipe.grads, pipe.grads, algorithm="ring", comm=grid.data)
            mine.step(pipe.grads, 0.05)
            want = one.loss_and_grad(x, y, 1.0 / len(y))
            theirs.step(one.grads, 0.05)
        losses = grid.data.allgather(loss * (hi - lo))
        params = to_whole(pipe, pipe.params, grid.tensor, grid.pipeline)
        grads = to_whole(pipe, pipe.grads, grid.tensor, grid.pipeline)
        bad = []
        if params is not None:
            for name, lo_, hi_ in _named_ranges(one):
                for what, a, b in (("", params, one.params), ("grad ", grads, one.grads)):
                    err = np.max(np.abs(a[lo_:hi_] - b[lo_:hi_]), initial=0.0)
                    if not err <= tol * max(1.0, np.max(np.abs(b[lo_:hi_]), initial=0.0)):
                        bad.append(f"{what}{name} off by {err:.2e}")
        if not abs(sum(losses) / (ROWS * d) - want) <= tol * 10:
            bad.append(f"loss {sum(losses) / (ROWS * d)} against {want}")
        grid.free()
        collective_assert(comm, not bad, f"S={s} T={t} ({scheme}) D={d} {schedule} M={m}: {'; '.join(bad)}")


def _named_ranges(model):
    offsets = model.layout.offsets
    return [(name, offsets[k], offsets[k + 1]) for k, name in enumerate(model.names)]


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_traffic_is_2_s_minus_1_m_messages_of_the_activations_size(schedule):
    comm = world()
    s, m, rows = comm.Get_size(), 4, 22  # micro-batches of 6, 6, 5, 5
    grid = ProcessGrid(comm, Layout(s, pipeline=s))
    pipe, r = _pipeline(grid, schedule, m, np.float64), grid.pipeline.Get_rank()
    x, y = _batches(1, 1, np.float64)[0]
    with traffic.count() as t:
        pipe.loss_and_grad(x[:rows], y[:rows], 1.0 / rows)
    bounds, cut = stage_bounds(SIZES, s), partition(rows, m)
    width_out, width_in = SIZES[bounds[r + 1]], SIZES[bounds[r]]
    want_sent = (m if r < s - 1 else 0) + (m if r > 0 else 0)
    want_bytes = 8 * rows * ((width_out if r < s - 1 else 0) + (width_in if r > 0 else 0))
    total = comm.allreduce(t.messages_sent)
    grid.free()
    collective_assert(comm, t.messages_sent == t.messages_received == want_sent and total == 2 * (s - 1) * m
                      and t.bytes_sent == t.bytes_received == want_bytes and len(cut) == m + 1,
                      f"stage {r}: {t}, expected {want_sent} messages of {want_bytes} bytes, {total} in all")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("m", [1, 2, 3, 6])
def test_peak_stash_is_m_micro_batches_for_gpipe_and_s_minus_r_for_1f1b(schedule, m):
    comm = world()
    s = comm.Get_size()
    grid = ProcessGrid(comm, Layout(s, pipeline=s))
    pipe, r = _pipeline(grid, schedule, m, np.float32), grid.pipeline.Get_rank()
    g = np.random.default_rng(5)
    x, y = g.standard_normal((6 * m, SIZES[0])).astype(np.float32), g.integers(0, SIZES[-1], 6 * m)
    pipe.loss_and_grad(x, y, 1.0)  # equal micro-batches of 6 rows
    one = pipe.micro_stash_bytes[0]
    want = one * (m if schedule == "gpipe" else min(s - r, m))
    grid.free()
    collective_assert(comm, pipe.peak_stash_bytes == want and len(set(pipe.micro_stash_bytes)) == 1 and one > 0,
                      f"stage {r}: peak {pipe.peak_stash_bytes} bytes, micro-batches {pipe.micro_stash_bytes}, "
                      f"expected {want}")


def test_fewer_rows_than_micro_batches_is_refused_before_any_message():
    comm = world()
    grid = ProcessGrid(comm, Layout(comm.Get_size(), pipeline=comm.Get_size()))
    pipe = _pipeline(grid, "1f1b", 5, np.float32)
    x, y = _batches(1, 1, np.float32)[0]
    with pytest.raises(ValueError, match="4 rows cannot fill 5 micro-batches"):
        pipe.loss_and_grad(x[:4], y[:4], 1.0)
    grid.free()


def test_predict_is_the_one_rank_models():
    comm = world()
    grid = ProcessGrid(comm, Layout(comm.Get_size(), pipeline=comm.Get_size()))
    pipe, one = _pipeline(grid, "gpipe", 2, np.float64), mlp(SIZES, "tanh", seed=3, dtype=np.float64)
    x, _ = _batches(1, 1, np.float64)[0]
    got = pipe.predict(x)
    grid.free()
    collective_assert(comm, np.array_equal(got, one.predict(x)), f"predictions {got}")
