"""Tensor-parallel layers against the serial layer, T = world size: outputs and gradients of W, b and x.

float64 to 1e-12, with sizes coprime to T (input 13T+1, output 17T+2,
batch 7), so that a wrong slice or transpose cannot pass; and a whole model
of each scheme against the serial model, gradient by gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from collectives.algorithms.schedule import partition
from collectives.runtime import traffic
from conftest import collective_assert, tensor_slices, world
from training.layers import Linear, Sequential
from training.model import mlp
from training.parallel.layout_cost import local_parameters, step_collectives
from training.parallel.tensor import (
    ColumnParallelLinear,
    RowParallelLinear,
    copy_to_parallel,
    gather_from_parallel,
    reduce_from_parallel,
    split_to_parallel,
    tensor_mlp,
)

pytestmark = pytest.mark.mpi(min_size=1)
TOL = dict(rtol=1e-12, atol=1e-12)


def _sizes():
    t = world().Get_size()
    return t, 13 * t + 1, 17 * t + 2, 7


def _block(n):
    bounds = partition(n, world().Get_size())
    return slice(bounds[world().Get_rank()], bounds[world().Get_rank() + 1])


def _through(model, x, dy):
    """Forward through every layer, then backward from ``dy``: (output, input gradient)."""
    out = model.logits(x)
    d = dy.copy()
    for layer in reversed(model.layers):
        d = layer.backward(d)
    return out, d


def _close(got, want, what):
    ok = got.shape == want.shape and np.allclose(got, want, **TOL)
    collective_assert(world(), ok, f"{what}: largest difference "
                                   f"{np.max(np.abs(got - want)) if got.shape == want.shape else got.shape}")


def _data(fan_in, fan_out, batch):
    rng = np.random.default_rng(5)  # the same on every rank
    return rng.standard_normal((batch, fan_in)), rng.standard_normal((batch, fan_out)), rng.standard_normal(fan_out)


@pytest.mark.parametrize("act", ["identity", "tanh"])
@pytest.mark.parametrize("gather", [True, False])
def test_column_parallel_matches_the_serial_layer(act, gather):
    t, fan_in, fan_out, batch = _sizes()
    serial = Sequential([Linear(fan_in, fan_out, act)], seed=3, dtype=np.float64)
    par = Sequential([ColumnParallelLinear(fan_in, fan_out, world(), act, gather_output=gather)], seed=3,
                     dtype=np.float64)
    x, dy, b = _data(fan_in, fan_out, batch)
    cols = _block(fan_out)
    serial.p["b0"][...] = b
    par.p["b0"][...] = b[cols]
    want_y, want_dx = _through(serial, x, dy)
    got_y, got_dx = _through(par, x, dy if gather else np.ascontiguousarray(dy[:, cols]))
    _close(got_y, want_y if gather else want_y[:, cols], "output")
    _close(par.g["W0"], serial.g["W0"][:, cols], "dW")
    _close(par.g["b0"], serial.g["b0"][cols], "db")
    _close(got_dx, want_dx, "dx")


@pytest.mark.parametrize("act", ["identity", "relu"])
def test_row_parallel_matches_the_serial_layer(act):
    t, fan_in, fan_out, batch = _sizes()
    serial = Sequential([Linear(fan_in, fan_out, act)], seed=4, dtype=np.float64)
    par = Sequential([RowParallelLinear(fan_in, fan_out, world(), act)], seed=4, dtype=np.float64)
    x, dy, b = _data(fan_in, fan_out, batch)
    rows = _block(fan_in)
    serial.p["b0"][...] = b
    par.p["b0"][...] = b
    want_y, want_dx = _through(serial, x, dy)
    got_y, got_dx = _through(par, np.ascontiguousarray(x[:, rows]), dy)
    _close(got_y, want_y, "output")
    _close(par.g["W0"], serial.g["W0"][rows], "dW")
    _close(par.g["b0"], serial.g["b0"], "db")
    _close(got_dx, want_dx[:, rows], "dx")
    everyone = world().allgather(par.g["b0"].tobytes())
    collective_assert(world(), len(set(everyone)) == 1, "the replicated bias's gradient differs across ranks")


def _schemes(sizes):
    comm = world()
    course = [ColumnParallelLinear(sizes[0], sizes[1], comm, "tanh", gather_output=True),
              ColumnParallelLinear(sizes[1], sizes[2], comm, "tanh", gather_output=True),
              Linear(sizes[2], sizes[3])]
    megatron = [ColumnParallelLinear(sizes[0], sizes[1], comm, "tanh"),
                RowParallelLinear(sizes[1], sizes[2], comm, "tanh"),
                Linear(sizes[2], sizes[3])]
    return {"course": course, "megatron": megatron}


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_a_whole_model_matches_the_serial_model_gradient_by_gradient(scheme):
    t = world().Get_size()
    sizes = [13 * t + 1, 17 * t + 2, 11 * t + 3, 5]
    serial = mlp(sizes, "tanh", seed=9, dtype=np.float64)
    par = Sequential(_schemes(sizes)[scheme], seed=9, dtype=np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((7, sizes[0])), rng.integers(0, 5, 7)
    want, got = serial.loss_and_grad(x, y, 1 / 7), par.loss_and_grad(x, y, 1 / 7)
    collective_assert(world(), abs(got - want) <= 1e-12 * abs(want), f"loss {got} against {want}")
    split = {"course": [(1, "out"), (1, "out")], "megatron": [(1, "out"), (0, "in")]}[scheme]
    for i, (axis, _) in enumerate(split):
        w = serial.g[f"W{i}"]
        cut = _block(w.shape[axis])
        _close(par.g[f"W{i}"], w[:, cut] if axis == 1 else w[cut], f"dW{i}")
        _close(par.g[f"b{i}"], serial.g[f"b{i}"][cut] if axis == 1 else serial.g[f"b{i}"], f"db{i}")
    _close(par.g["W2"], serial.g["W2"], "dW2 (replicated)")
    _close(par.g["b2"], serial.g["b2"], "db2 (replicated)")
    replicated = world().allgather(np.concatenate([par.g["W2"].ravel(), par.g["b2"]]).tobytes())
    collective_assert(world(), len(set(replicated)) == 1, "a replicated layer's gradient differs across ranks")


def test_more_ranks_than_features_is_refused():
    t = world().Get_size()
    if t == 1:
        pytest.skip("one rank can hold any width")
    with pytest.raises(ValueError, match="cannot be cut over"):
        ColumnParallelLinear(4, t - 1, world())
    with pytest.raises(ValueError, match="cannot be cut over"):
        RowParallelLinear(t - 1, 4, world())


def test_the_four_communication_pairs():
    comm, t = world(), world().Get_size()
    rank = comm.Get_rank()
    n = 3 * t + 2
    full = np.arange(4 * n, dtype=np.float64).reshape(4, n)
    mine = np.ascontiguousarray(full[:, _block(n)])
    mask = np.full((4, n), rank + 1.0)
    every = sum(range(1, t + 1))
    _close(copy_to_parallel(full, comm), full, "copy forward")
    _close(copy_to_parallel(mask.copy(), comm, backward=True), np.full((4, n), float(every)), "copy backward")
    _close(reduce_from_parallel(mask.copy(), comm), np.full((4, n), float(every)), "reduce forward")
    _close(reduce_from_parallel(mask, comm, backward=True), mask, "reduce backward")
    _close(split_to_parallel(full, n, comm), mine, "split forward")
    _close(split_to_parallel(mine, n, comm, backward=True), full, "split backward")
    _close(gather_from_parallel(mine, n, comm), full, "gather forward")
    _close(gather_from_parallel(full, n, comm, backward=True), mine, "gather backward")


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_messages_and_bytes_per_step_equal_the_formula(scheme):
    """Per rank and step, ring pinned, B rows of float64, widths divisible by T.

    course (hidden widths h1, h2): all-gather of each hidden output forward,
    (T-1) messages and (T-1)/T*B*h bytes each; all-reduce of the second
    layer's input gradient backward, 2(T-1) messages and 2(T-1)/T*B*h1 bytes
    (the first layer's input gradient is not needed).  megatron (pairs
    h0->h1->h2, h2->h3->h4): an all-reduce of each pair's output forward and
    of each pair's input gradient backward but the first's.
    """
    t, b = world().Get_size(), 8
    if scheme == "course":
        sizes = [7, 6 * t, 4 * t, 5]
        gathers, reduces = [6 * t, 4 * t], [6 * t]
    else:
        sizes = [7, 6 * t, 4 * t, 2 * t, 8 * t, 5]
        gathers, reduces = [], [4 * t, 8 * t, 4 * t]
    model = tensor_mlp(sizes, "tanh", world(), scheme, seed=1, dtype=np.float64, algorithm="ring")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((b, 7)), rng.integers(0, 5, b)
    with traffic.count() as counted:
        model.loss_and_grad(x, y, 1 / b)
    messages = (t - 1) * len(gathers) + 2 * (t - 1) * len(reduces)
    nbytes = 8 * b * (t - 1) * (sum(gathers) + 2 * sum(reduces)) // t
    collective_assert(world(), (counted.messages_sent, counted.bytes_sent, counted.bytes_received)
                      == (messages, nbytes, nbytes), f"{counted}; expected {messages} messages, {nbytes} bytes")


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_a_real_step_moves_what_the_layout_accounting_lists(scheme):
    """training.parallel.layout_cost, which the cost model prices, against the traffic of a real step,
    uneven widths: bytes summed over the ranks (ring: all-gather (T-1)*n, all-reduce 2(T-1)*n), and the
    most parameters any rank holds."""
    t = world().Get_size()
    sizes, batch = [7, 3 * t + 1, 2 * t + 1, 4 * t + 3, 5], 6
    model = tensor_mlp(sizes, "tanh", world(), scheme, seed=1, algorithm="ring")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((batch, 7)).astype(np.float32), rng.integers(0, 5, batch)
    with traffic.count() as counted:
        model.loss_and_grad(x, y, 1 / batch)
    calls = step_collectives(sizes, batch, 1, t, scheme)
    want = sum((t - 1) * c.nbytes * (2 if c.family == "allreduce" else 1) for c in calls)
    total = world().allreduce(counted.bytes_sent)
    collective_assert(world(), total == want, f"the ranks sent {total} bytes, the accounting says {want}")
    most = world().allreduce(model.params.size, op=MPI.MAX)
    assert most == local_parameters(sizes, t, scheme)


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_fifty_sgd_steps_in_float64_hold_the_one_rank_model(scheme):
    """T = world size ranks, one replica, 50 steps of SGD with momentum on the same batches: every piece
    of the parameters and of the last gradients equals the one-rank model's slice to 1e-10."""
    from training.optim import SGD

    t = world().Get_size()
    sizes = [9, 5 * t + 1, 3 * t + 2, 2 * t + 3, 4]
    one = mlp(sizes, "tanh", seed=4, dtype=np.float64)
    cut = tensor_mlp(sizes, "tanh", world(), scheme, seed=4, dtype=np.float64, algorithm="ring")
    opts = [SGD(m.params, 0.9, 1e-4) for m in (one, cut)]
    rng = np.random.default_rng(3)
    for _ in range(50):
        x, y = rng.standard_normal((6, 9)), rng.integers(0, 4, 6)
        for model, opt in zip((one, cut), opts):
            model.loss_and_grad(x, y, 1 / 6)
            opt.step(model.grads, 0.05)
    numbered = [layer for layer in cut.layers if layer.param_shapes]
    for i, layer in enumerate(numbered):
        for name, w in zip(("W", "b"), tensor_slices(layer)):
            for got, full in ((cut.p, one.p), (cut.g, one.g)):
                ok = np.allclose(got[f"{name}{i}"], full[f"{name}{i}"][w], rtol=1e-10, atol=1e-10)
                collective_assert(world(), ok, f"{name}{i} differs from the one-rank model's slice")
