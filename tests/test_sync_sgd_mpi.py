"""training.sync_sgd on real MPI at every rank count: accuracy, equivalence with one rank, bitwise identity,
outputs, and bad input (every rank exits 2, none hangs).  Checkpoints and resume: test_training_checkpoints_mpi."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from conftest import world
from training import sync_sgd

pytestmark = pytest.mark.mpi(min_size=1)


def _dir(tmp_path_factory):
    comm = world()
    return comm.bcast(str(tmp_path_factory.mktemp("sgd")) if comm.Get_rank() == 0 else None)


def _same_on_every_rank(comm, a: np.ndarray) -> bool:
    return len(set(comm.allgather(a.tobytes()))) == 1


def test_digits_reaches_95_percent_with_identical_parameters(tmp_path_factory):
    comm = world()
    d = _dir(tmp_path_factory)
    summary, model = sync_sgd.run(["--epochs", "8", "--quiet", "--check", "--json", f"{d}/s.json",
                                   "--metrics", f"{d}/m.h5"], comm)
    assert summary["test_accuracy"] >= 0.95
    assert _same_on_every_rank(comm, model.params)
    if comm.Get_rank() == 0:
        data = json.load(open(f"{d}/s.json"))
        assert data["ranks"] == comm.Get_size() and data["algorithm"] == "auto"
        assert data["test_accuracy"] == summary["test_accuracy"] and data["samples_per_s"] > 0
        assert set(data["time_split"]) == {"compute", "communication", "waiting", "tensor_communication",
                                           "pipeline_communication", "halo_communication"}
        assert sum(data["time_split"].values()) == pytest.approx(1.0)
        with h5py.File(f"{d}/m.h5") as f:
            assert len(f["loss"]) == 8 * (1438 // 64) and f["step"][-1] == 8 * (1438 // 64)


@pytest.mark.parametrize("algorithm,overlap", [("ring", False), ("recursive_doubling", False),
                                               ("double_binary_tree", False), ("mpi", False),
                                               ("rabenseifner", True), ("mpi", True)])
def test_p_ranks_hold_what_one_rank_holds(algorithm, overlap):
    """After k steps, P ranks with global batch B = one rank with batch B (float tolerance), for any algorithm."""
    comm = world()
    argv = ["--epochs", "1", "--batch", "40", "--quiet", "--allreduce", algorithm, "--bucket-mb", "0.002",
            "--hidden", "32,16", "--momentum", "0.9", "--weight-decay", "1e-3", "--check"]
    summary, many = sync_sgd.run(argv + (["--overlap"] if overlap else []), comm)
    assert summary["buckets"] > 1 and summary["overlap"] == overlap
    _, one = sync_sgd.run(argv, MPI.COMM_SELF)
    assert _same_on_every_rank(comm, many.params)
    # summation order differs (P partial sums): float32 rounding, 35 steps of momentum SGD
    np.testing.assert_allclose(many.params, one.params, rtol=1e-4, atol=2e-5)


def test_bind_pins_each_rank_to_its_own_cores():
    import os

    comm = world()
    cores = len(os.sched_getaffinity(0)) * comm.Get_size()  # before: every rank may use all
    if comm.Get_size() > len(os.sched_getaffinity(0)):
        pytest.skip("more ranks than cores: compact placement cannot give each its own")
    summary, _ = sync_sgd.run(["--epochs", "1", "--quiet", "--bind", "compact"], comm)
    mine = os.sched_getaffinity(0)
    masks = comm.allgather(sorted(mine))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(masks) for b in masks[i + 1:])
    assert summary["threads"]["numba"] == len(mine) and cores > 0


def test_hdf5_data_each_rank_reads_its_rows(tmp_path_factory):
    from sklearn.datasets import load_digits

    comm = world()
    d = _dir(tmp_path_factory)
    if comm.Get_rank() == 0:
        dg = load_digits()
        with h5py.File(f"{d}/digits.h5", "w") as f:
            f["X"], f["y"] = dg.data / 16.0, dg.target
    comm.Barrier()
    summary, _ = sync_sgd.run(["--data", f"{d}/digits.h5", "--epochs", "6", "--quiet"], comm)
    assert summary["test_accuracy"] >= 0.93 and summary["data"] == "digits.h5"


@pytest.mark.parametrize("argv,message", [
    (["--data", "/nonexistent/x.h5"], "no such file"),
    (["--batch", "0"], "argument --batch: expected an integer >= 1"),
    (["--allreduce", "telepathy"], "is not an algorithm"),
    (["--hidden", "12,x"], "comma-separated integers"),
    (["--resume"], "need --checkpoint"),
])
def test_bad_input_exits_2_on_every_rank(argv, message, capsys):
    comm = world()
    with pytest.raises(SystemExit) as e:
        sync_sgd.run([*argv, "--quiet"], comm)
    assert e.value.code == 2
    if comm.Get_rank() == 0:
        assert message in capsys.readouterr().err


def test_malformed_hdf5_and_missing_checkpoint_exit_2(tmp_path_factory, capsys):
    comm = world()
    d = _dir(tmp_path_factory)
    if comm.Get_rank() == 0:
        with open(f"{d}/broken.h5", "w") as f:
            f.write("this is not HDF5")
    comm.Barrier()
    for argv, message in ((["--data", f"{d}/broken.h5"], "not a readable HDF5"),
                          (["--checkpoint", f"{d}/none.h5", "--resume"], "no checkpoint")):
        with pytest.raises(SystemExit) as e:
            sync_sgd.run([*argv, "--quiet"], comm)
        assert e.value.code == 2
        if comm.Get_rank() == 0:
            assert message in capsys.readouterr().err
