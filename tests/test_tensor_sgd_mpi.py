"""sync_sgd --tensor-parallel T: P ranks as data P/T x tensor T hold, piece by piece, what one rank holds.

Compared parameter by parameter and gradient by gradient (each rank's
pieces against the same slices of the one-rank model) after 66 steps, for
both schemes and every T that divides P; widths 23 and 19 cut unevenly for
every T from 2 to 5.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from conftest import collective_assert, sync_sgd_exits_2_saying, tensor_slices, world
from training import checkpoint, sync_sgd

pytestmark = pytest.mark.mpi(min_size=1)

BASE = ["--hidden", "23,19", "--act", "tanh", "--epochs", "3", "--quiet", "--allreduce", "ring"]


def _degrees():
    p = world().Get_size()
    return [t for t in range(1, p + 1) if p % t == 0]


def _pieces(model, full):
    """Pairs (this rank's piece, the same slice of the one-rank model's array), parameters and gradients."""
    out = []
    numbered = [layer for layer in model.layers if layer.param_shapes]
    for i, layer in enumerate(numbered):
        for name, where in zip(("W", "b"), tensor_slices(layer)):
            key = f"{name}{i}"
            out.append((f"{key}", model.p[key], full.p[key][where]))
            out.append((f"grad {key}", model.g[key], full.g[key][where]))
    return out


@pytest.mark.parametrize("scheme", ["course", "megatron"])
def test_every_layout_holds_the_one_rank_model(scheme):
    _, one = sync_sgd.run(BASE, MPI.COMM_SELF)
    for t in _degrees():
        summary, model = sync_sgd.run([*BASE, "--tensor-parallel", str(t), "--tensor-scheme", scheme, "--check"],
                                      world())
        assert summary["steps"] == 3 * (1438 // 64) and summary["tensor_parallel"] == t
        for what, mine, want in _pieces(model, one):
            ok = mine.shape == want.shape and np.allclose(mine, want, rtol=1e-5, atol=1e-5)
            collective_assert(world(), ok, f"T={t} {scheme}: {what} differs from one rank's, largest "
                                           f"{np.max(np.abs(mine - want)) if mine.shape == want.shape else 'shape'}")


def test_tensor_parallel_2_learns_digits():
    if world().Get_size() % 2:
        pytest.skip("T=2 needs an even number of ranks")
    summary, _ = sync_sgd.run(["--tensor-parallel", "2", "--epochs", "8", "--quiet", "--check"], world())
    assert summary["test_accuracy"] >= 0.95 and summary["time_split"]["tensor_communication"] > 0


def test_bad_layouts_exit_2_on_every_rank(capsys):
    p = world().Get_size()
    refused = [(["--tensor-parallel", str(p + 1)], f"--tensor-parallel {p + 1} does not divide the {p} ranks"),
               (["--tensor-scheme", "diagonal"], "invalid choice: 'diagonal'")]
    if p > 1:
        refused += [(["--tensor-parallel", str(p), "--hidden", f"{p - 1}"],
                     f"--tensor-parallel {p} is more than the narrowest layer it cuts ({p - 1} features"),
                    (["--tensor-parallel", str(p), "--hidden", ""], "cuts no layer of a model without hidden")]
    for argv, message in refused:
        sync_sgd_exits_2_saying(argv, message, capsys)


def test_a_checkpoint_holds_the_whole_model_and_resumes_under_any_layout(tmp_path_factory):
    """Saved at T = P: resumed at T = P it ends bitwise where the uninterrupted run ends; at every other T
    that divides P (pure data parallelism, hybrids) it ends where that run ends, to float32 rounding."""
    comm = world()
    p = comm.Get_size()
    d = comm.bcast(str(tmp_path_factory.mktemp("tp_ck")) if comm.Get_rank() == 0 else None)
    base = ["--hidden", "23,19", "--act", "tanh", "--quiet", "--allreduce", "ring", "--tensor-scheme", "megatron"]

    def train(t, epochs, path, *more):
        sync_sgd.run([*base, "--tensor-parallel", str(t), "--epochs", str(epochs), "--checkpoint", path, *more], comm)
        return checkpoint.load(path)["params"]

    uninterrupted = train(p, 2, f"{d}/full.h5")
    assert uninterrupted.size == 64 * 23 + 23 + 23 * 19 + 19 + 19 * 10 + 10  # the one-rank layout, whole
    for t in _degrees():
        train(p, 1, f"{d}/half_{t}.h5")
        resumed = train(t, 2, f"{d}/half_{t}.h5", "--resume")
        if t == p:
            assert np.array_equal(resumed, uninterrupted)
        else:
            np.testing.assert_allclose(resumed, uninterrupted, rtol=1e-5, atol=1e-5)
    other = ["--hidden", "23,17", *base[2:]]  # another model: refused before any step, on every rank
    with pytest.raises(SystemExit) as e:
        sync_sgd.run([*other, "--tensor-parallel", str(p), "--epochs", "3", "--checkpoint", f"{d}/full.h5",
                      "--resume"], comm)
    assert e.value.code == 2
