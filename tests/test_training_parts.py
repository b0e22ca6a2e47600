"""The parts of training.sync_sgd without MPI: sampler, schedule, buckets, model gradients, data, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from conftest import assert_finite_differences, crashed_runs_cleaned_up
from training import checkpoint
from training.data import DataError, digits, hdf5, synthetic
from training.model import mlp
from training.optim import learning_rate
from training.sampler import GlobalBatchSampler
from training.gradient_buckets import Buckets


@pytest.mark.parametrize("n,batch,p", [(100, 10, 1), (100, 10, 3), (1438, 64, 7), (97, 16, 16), (10, 5, 5)])
def test_ranks_split_each_global_batch_exactly(n, batch, p):
    ranks = [GlobalBatchSampler(n, batch, p, r, seed=4) for r in range(p)]
    one = GlobalBatchSampler(n, batch, 1, 0, seed=4)
    for epoch in (0, 1):
        parts = [s.epoch(epoch) for s in ranks]
        assert {len(x) for x in parts} == {n // batch}  # same step count on every rank
        assert max(x.shape[1] for x in parts) - min(x.shape[1] for x in parts) <= 1
        joined = np.concatenate(parts, axis=1)
        np.testing.assert_array_equal(joined, one.epoch(epoch))  # the one-rank batches, step for step
        assert len(np.unique(joined)) == joined.size
    assert not np.array_equal(one.epoch(0), one.epoch(1))  # reshuffled every epoch


def test_sampler_refuses_impossible_batches():
    with pytest.raises(ValueError, match="at least the number of ranks"):
        GlobalBatchSampler(100, 3, 4, 0)
    with pytest.raises(ValueError, match="larger than the training set"):
        GlobalBatchSampler(10, 11, 1, 0)


def test_learning_rate_scaling_and_warmup():
    assert learning_rate(0, 0.1, 512) == 0.1
    assert learning_rate(0, 0.1, 512, scale_lr=True) == pytest.approx(0.2)
    # Goyal: from the unscaled rate to the scaled one
    assert learning_rate(0, 0.1, 512, True, warmup_steps=10) == pytest.approx(0.1)
    assert learning_rate(5, 0.1, 512, True, warmup_steps=10) == pytest.approx(0.15)
    assert learning_rate(10, 0.1, 512, True, warmup_steps=10) == pytest.approx(0.2)
    assert learning_rate(0, 0.1, 64, False, warmup_steps=4) == pytest.approx(0.01)


@pytest.mark.parametrize("size,mb,want", [(10, 0, 1), (10, 4 / (1 << 20), 10), (10, 12 / (1 << 20), 4), (1, 1.0, 1)])
def test_buckets_cover_the_gradient(size, mb, want):
    b = Buckets(size, 4, mb * (1 << 20))
    assert len(b.ranges) == want
    assert b.ranges[0][0] == 0 and b.ranges[-1][1] == size
    assert all(a[1] == c[0] for a, c in zip(b.ranges, b.ranges[1:]))


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_mlp_gradient_matches_finite_differences(act):
    from training.kernels import softmax_cross_entropy

    rng = np.random.default_rng(0)
    model = mlp([5, 7, 6, 3], act, seed=1, dtype=np.float64)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    done = []
    model.loss_and_grad(x, y, scale=1 / 8, on_layer=done.append)
    assert done == [2, 1, 0]  # last layer first

    def loss():
        return softmax_cross_entropy(np.ascontiguousarray(model.logits(x)), y)

    assert_finite_differences(model.params, model.grads, loss, range(0, model.params.size, 5))
    lo, hi = model.param_range(2)
    assert (lo, hi) == (0, 6 * 3 + 3)  # the last layer sits first


def test_data_sources_and_their_errors(tmp_path):
    d = digits()
    assert (d.n_train + d.n_test, d.features, d.classes) == (1797, 64, 10)
    x, y = d.train_rows(np.array([5, 1, 3]))
    assert x.dtype == np.float32 and x.shape == (3, 64) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(d.train_rows(np.array([5]))[0][0], x[0])  # order kept
    s = synthetic(200, 8, 4, seed=1)
    assert (s.n_train, s.n_test, s.features, s.classes) == (180, 20, 8, 4)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = np.arange(40.0).reshape(20, 2), np.arange(20) % 3
        f["X_test"], f["y_test"] = np.ones((4, 2)), np.zeros(4, int)
    h = hdf5(str(path))
    assert (h.n_train, h.n_test, h.features, h.classes) == (20, 4, 2, 3)
    np.testing.assert_array_equal(h.train_rows(np.array([7, 2]))[0], [[14, 15], [4, 5]])
    with pytest.raises(DataError, match="no such file"):
        hdf5(str(tmp_path / "missing.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        hdf5(str(tmp_path / "text.h5"))
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["features"] = np.zeros((3, 2))
    with pytest.raises(DataError, match="must hold datasets 'X'"):
        hdf5(str(tmp_path / "bad.h5"))
    with h5py.File(tmp_path / "floaty.h5", "w") as f:
        f["X"], f["y"] = np.zeros((3, 2)), np.array([0.5, 1.0, 2.0])
    with pytest.raises(DataError, match="class indices"):
        hdf5(str(tmp_path / "floaty.h5"))


def test_an_hdf5_image_file_reads_whole_images_or_one_tile_of_each(tmp_path):
    """X (n, C, H, W) gives an ImageSource; its tiled view reads X[indices, :, rows, cols], in the asked order."""
    from training.data import ImageSource

    images = np.arange(6 * 2 * 5 * 7, dtype=np.float64).reshape(6, 2, 5, 7)
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["X"], f["y"] = images, np.arange(6) % 3
    h = hdf5(str(tmp_path / "images.h5"), test_fraction=0.5, seed=2)
    assert isinstance(h, ImageSource) and (h.features, h.image, h.classes) == (2, (5, 7), 3)
    whole = np.concatenate([h.train_rows(np.arange(h.n_train))[0], h.test_rows(np.arange(h.n_test))[0]])
    assert sorted(map(float, whole[:, 0, 0, 0])) == sorted(map(float, images[:, 0, 0, 0]))  # a split of the images
    x, y = h.train_rows(np.array([2, 0]))
    t = h.tiled(slice(1, 4), slice(5, 7))
    xt, yt = t.train_rows(np.array([2, 0]))
    assert xt.dtype == np.float32 and xt.flags.c_contiguous and xt.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(xt, x[:, :, 1:4, 5:7])
    np.testing.assert_array_equal(yt, y)
    assert t.train_rows(np.array([], np.int64))[0].shape == (0, 2, 3, 2)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "ck.h5")
    params, mom = np.arange(5, dtype=np.float32), np.ones(5, np.float32)
    checkpoint.save(path, MPI.COMM_SELF, params=params, momentum=mom, step=7, epoch=1, step_in_epoch=2,
                    seed=3, config={"lr": 0.1})
    ck = checkpoint.load(path)
    assert (ck["step"], ck["epoch"], ck["step_in_epoch"], ck["config"]) == (7, 1, 2, {"lr": 0.1})
    np.testing.assert_array_equal(ck["params"], params)
    np.testing.assert_array_equal(ck["momentum"], mom)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load(str(tmp_path / "none.h5"))
    assert not os.path.exists(path + ".tmp")


def test_a_run_killed_mid_write_leaves_the_last_checkpoint_readable(tmp_path):
    """A real SIGKILL while the second checkpoint is being written."""
    path = str(tmp_path / "ck.h5")
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, h5py
        from mpi4py import MPI
        from training import checkpoint
        kw = dict(momentum=None, epoch=0, step_in_epoch=0, seed=0, config={{}})
        checkpoint.save({path!r}, MPI.COMM_SELF, params=np.zeros(1000, np.float32), step=1, **kw)
        real = h5py.Group.create_dataset
        def dying(self, name, *a, **k):
            out = real(self, name, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)  # half-way through the new file
        h5py.Group.create_dataset = dying
        checkpoint.save({path!r}, MPI.COMM_SELF, params=np.ones(1000, np.float32), step=2, **kw)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    with crashed_runs_cleaned_up():
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert os.path.exists(path + ".tmp")  # the torn file is the temporary one
    ck = checkpoint.load(path)
    assert ck["step"] == 1 and not ck["params"].any()
