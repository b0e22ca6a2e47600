"""The checks of training.sync_sgd without an MPI world of its own: which resume differences are refused or
warned about, a checkpoint never holding NaN, and an agreed exit of the real command line finalizing MPI."""

from __future__ import annotations

import os

import numpy as np
import pytest
from mpi4py import MPI

from conftest import launch
from training import checkpoint, resume


SAVED = {"model": [64, 8, 10], "act": "relu", "batch": 32, "seed": 0,
         "dataset": {"name": "digits", "train": 1438, "test": 359},
         "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "scale_lr": False,
         "warmup_epochs": 0.0, "epochs": 1, "ranks": 2, "allreduce": "auto", "bucket_mb": 1.0, "threads": None}


@pytest.mark.parametrize("key,value,refused", [
    ("model", [64, 16, 10], True), ("act", "tanh", True), ("batch", 64, True), ("seed", 1, True),
    ("dataset", {"name": "digits.h5", "train": 1438, "test": 359}, True),
    ("lr", 0.1, False), ("momentum", 0.0, False), ("weight_decay", 0.0, False), ("nesterov", True, False),
    ("scale_lr", True, False), ("warmup_epochs", 1.0, False),
])
def test_resume_refuses_the_trajectory_and_warns_about_the_optimiser(key, value, refused):
    refusals, warnings = resume.compare(SAVED, {**SAVED, key: value})
    assert (len(refusals), len(warnings)) == ((1, 0) if refused else (0, 1))


def test_resume_is_silent_about_layout_length_and_communication():
    changed = {**SAVED, "epochs": 5, "ranks": 7, "allreduce": "ring", "bucket_mb": 0.01, "threads": 1}
    assert resume.compare(SAVED, changed) == ([], [])
    older = {k: v for k, v in SAVED.items() if k != "dataset"}  # a checkpoint that predates a recorded key
    assert resume.compare(older, SAVED) == ([], ["the checkpoint does not record the data; it is not checked"])


def test_an_older_checkpoint_of_another_model_is_refused_by_its_size(tmp_path):
    from training.model import mlp
    from training.optim import SGD

    path = str(tmp_path / "ck.h5")
    older = {k: v for k, v in SAVED.items() if k != "model"}
    checkpoint.save(path, MPI.COMM_SELF, params=np.zeros(5, np.float32), momentum=None, step=0, epoch=0,
                    step_in_epoch=0, seed=0, config=older)
    model = mlp(SAVED["model"], seed=0)
    with pytest.raises(checkpoint.CheckpointError, match="holds 5 parameters, the model has 610"):
        resume.restore(path, SAVED, model, SGD(model.params), steps_per_epoch=44)


def test_a_checkpoint_of_non_finite_values_is_never_written(tmp_path):
    path = str(tmp_path / "ck.h5")
    good = dict(momentum=np.zeros(4, np.float32), step=1, epoch=0, step_in_epoch=1, seed=0, config={})
    checkpoint.save(path, MPI.COMM_SELF, params=np.ones(4, np.float32), **good)
    for params, momentum in ((np.array([1, np.nan, 1, 1], np.float32), good["momentum"]),
                             (np.ones(4, np.float32), np.array([0, 0, np.inf, 0], np.float32))):
        with pytest.raises(checkpoint.CheckpointError, match="NaN or inf"):
            checkpoint.save(path, MPI.COMM_SELF, params=params, **{**good, "momentum": momentum, "step": 2})
    ck = checkpoint.load(path)
    assert ck["step"] == 1 and (ck["params"] == 1).all() and not os.path.exists(path + ".tmp")


@pytest.mark.parametrize("argv,code,message", [
    (["--lr", "nan"], 2, "error: argument --lr: expected a finite number > 0, got 'nan'"),
    (["--data", "/nonexistent/train.h5"], 2, "training.sync_sgd: --data /nonexistent/train.h5: no such file"),
    (["--epochs", "1", "--hidden", "8", "--batch", "32", "--quiet", "--lr", "1e6"], 3, "training diverged"),
])
def test_an_agreed_exit_of_the_command_line_finalizes_mpi(tmp_path, argv, code, message):
    """Two real ranks: one message, the agreed code, and no MPI_Abort (which leaves MPICH's /dev/shm segment)."""
    out = launch(tmp_path, 2, "training.sync_sgd", *argv)
    assert out.returncode == code, out.stderr
    assert out.stderr.count(message) == 1 and "MPI_Abort" not in out.stderr, out.stderr
