"""sync_sgd --pipeline-stages S --micro-batches M: stage by stage, what one rank holds; checkpoints in the
one-rank layout; bad layouts refused on every rank; a trace of the last step."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from mpi4py import MPI

from conftest import collective_assert, sync_sgd_exits_2_saying, tensor_slices, world
from training import checkpoint, sync_sgd
from training.parallel.pipeline import stage_bounds

pytestmark = pytest.mark.mpi(min_size=1)

HIDDEN = [23, 19, 17, 13]  # digits: 64 -> ... -> 10, five layers
BASE = ["--hidden", ",".join(map(str, HIDDEN)), "--act", "tanh", "--batch", "56", "--epochs", "2", "--quiet",
        "--allreduce", "ring"]  # 1438 // 56 = 25 steps an epoch: 50 steps


def _layouts():
    """(S, T) for this world: S = P, and at P = 4 data 2 x pipeline 2 and tensor 2 x pipeline 2."""
    p = world().Get_size()
    return [(p, 1)] + ([(2, 1), (2, 2)] if p == 4 else [])


def _pieces(pipe, one, s):
    """(name, this stage's piece, the same slice of the one-rank model's array), parameters and gradients."""
    first = stage_bounds([64, *HIDDEN, 10], s)[pipe.stage]
    out = []
    for j, layer in enumerate(pipe.layers):
        for name, where in zip(("W", "b"), tensor_slices(layer)):
            k = first + j
            out.append((f"{name}{k}", pipe.model.p[f"{name}{j}"], one.p[f"{name}{k}"][where]))
            out.append((f"grad {name}{k}", pipe.model.g[f"{name}{j}"], one.g[f"{name}{k}"][where]))
    return out


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("overlap", [[], ["--overlap", "--bucket-mb", "0.001"]], ids=["", "overlap"])
def test_every_pipeline_layout_holds_the_one_rank_model(schedule, overlap):
    _, one = sync_sgd.run(BASE, MPI.COMM_SELF)
    for s, t in _layouts():
        summary, pipe = sync_sgd.run([*BASE, "--pipeline-stages", str(s), "--micro-batches", "4", "--schedule",
                                      schedule, "--tensor-parallel", str(t), "--check", *overlap], world())
        assert summary["steps"] == 50 and summary["pipeline_stages"] == s
        assert summary["time_split"]["pipeline_communication"] > 0 or s == 1
        bad = [f"{what} (largest difference "
               f"{np.max(np.abs(mine - want)) if mine.shape == want.shape else 'in its shape'})"
               for what, mine, want in _pieces(pipe, one, s)
               if not (mine.shape == want.shape and np.allclose(mine, want, rtol=1e-5, atol=1e-5))]
        collective_assert(world(), not bad, f"S={s} T={t} {schedule}: differ from one rank's: {', '.join(bad)}")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_two_stages_learn_digits(schedule):
    if world().Get_size() % 2:
        pytest.skip("S=2 needs an even number of ranks")
    summary, _ = sync_sgd.run(["--pipeline-stages", "2", "--micro-batches", "4", "--schedule", schedule,
                               "--epochs", "8", "--quiet", "--check"], world())
    assert summary["test_accuracy"] >= 0.95 and summary["time_split"]["pipeline_communication"] > 0


def test_a_checkpoint_holds_the_whole_model_and_resumes_under_any_layout(tmp_path_factory):
    """Saved with S = P stages: the one-rank layout; resumed as pure data parallelism, and again as a pipeline
    with another M, it ends where the uninterrupted one-rank run ends, to float32 rounding."""
    comm = world()
    p = comm.Get_size()
    d = comm.bcast(str(tmp_path_factory.mktemp("pp_ck")) if comm.Get_rank() == 0 else None)
    base = [*BASE[:6], "--quiet", "--allreduce", "ring"]

    def train(epochs, path, *more):
        sync_sgd.run([*base, "--epochs", str(epochs), "--checkpoint", path, *more], comm)
        return checkpoint.load(path)["params"]

    _, one = sync_sgd.run([*base, "--epochs", "3"], MPI.COMM_SELF)
    half = train(1, f"{d}/a.h5", "--pipeline-stages", str(p), "--micro-batches", "3")
    assert half.size == one.params.size  # the one-rank layout, whole
    ends = [train(2, f"{d}/a.h5", "--resume"),  # pure data parallelism from epoch 1 to 2
            train(3, f"{d}/a.h5", "--resume", "--pipeline-stages", str(p), "--micro-batches", "5")]
    assert ends[1].size == half.size
    np.testing.assert_allclose(ends[1], one.params, rtol=1e-5, atol=1e-5)


def test_bad_layouts_exit_2_on_every_rank(capsys):
    p = world().Get_size()
    for argv, message in [
        (["--micro-batches", "0"], "argument --micro-batches: expected an integer >= 1, got '0'"),
        (["--pipeline-stages", str(p + 1)], f"--pipeline-stages {p + 1} does not divide the {p} ranks"),
        (["--pipeline-stages", str(p), "--hidden", ""], f"--pipeline-stages {p} is more than the model's 1 layers")
        if p > 1 else
        (["--stage-layers", "1,1"], "--stage-layers 1,1: 1 counts of at least 1 adding up to the model's 2 layers"),
        (["--batch", str(p * 3 - 1), "--micro-batches", "3"],
         f"--batch {p * 3 - 1} is smaller than the {p} data-parallel ranks x 3 micro-batches"),
        (["--schedule", "zigzag"], "invalid choice: 'zigzag'"),
        (["--trace", "t.json"], "--trace draws a pipeline's step"),
        (["--stage-layers", "a"], "--stage-layers 'a': comma-separated integers"),
        (["--micro-batches", "2", "--trace", "/nonexistent/t.json"], "--trace cannot write"),
    ]:
        sync_sgd_exits_2_saying(argv, message, capsys)


def test_trace_draws_the_last_step_of_every_rank(tmp_path_factory):
    comm = world()
    d = comm.bcast(str(tmp_path_factory.mktemp("trace")) if comm.Get_rank() == 0 else None)
    s, m = comm.Get_size(), 3
    summary, _ = sync_sgd.run([*BASE, "--pipeline-stages", str(s), "--micro-batches", str(m), "--trace",
                               f"{d}/t.json"], comm)
    if comm.Get_rank() == 0:
        with open(f"{d}/t.json") as f:
            events = json.load(f)["traceEvents"]
        for r in range(s):
            names = sorted(e["name"] for e in events if e["tid"] == r and e["ph"] == "X" and e["cat"] in
                           ("forward", "backward"))
            assert names == sorted([f"F{i}" for i in range(m)] + [f"B{i}" for i in range(m)])
            assert sum(e.get("cat") == "recv" for e in events if e["tid"] == r) == m * ((r > 0) + (r < s - 1))
        t = summary["trace"]
        assert t["bubble_formula"] == (s - 1) / (m + s - 1) and 0 <= t["bubble"] < 1 and t["step_s"] > 0
        assert t["png"] is None or os.path.getsize(t["png"]) > 0
