"""training.sync_sgd's checkpoints under stress: a diverging run stops on every rank and keeps its last finite
checkpoint, the final state is always saved, a resume refuses what would not continue the run (and warns about
the rest), a damaged checkpoint is refused, and a torn temporary file does not outlive the next start."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from conftest import world
from training import sync_sgd

pytestmark = pytest.mark.mpi(min_size=1)

TINY = ["--epochs", "1", "--hidden", "8", "--batch", "32", "--quiet"]  # digits: 1438 // 32 = 44 steps an epoch


def _dir(tmp_path_factory) -> str:
    comm = world()
    return comm.bcast(str(tmp_path_factory.mktemp("ck")) if comm.Get_rank() == 0 else None)


def _attrs(path: str) -> tuple[int, int, int]:
    with h5py.File(path) as f:
        return int(f.attrs["step"]), int(f.attrs["epoch"]), int(f.attrs["step_in_epoch"])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_diverging_run_stops_on_every_rank_and_keeps_its_last_finite_checkpoint(tmp_path_factory, capsys):
    comm = world()
    d = _dir(tmp_path_factory)
    ck = f"{d}/ck.h5"
    with pytest.raises(SystemExit) as e:
        sync_sgd.run([*TINY, "--lr", "1e6", "--checkpoint", ck, "--checkpoint-every", "2",
                      "--metrics", f"{d}/m.h5"], comm)
    assert e.value.code == 3
    err = capsys.readouterr().err
    if comm.Get_rank() == 0:
        assert "training diverged at step" in err and "NaN or inf" in err and "lower --lr (1e+06)" in err
        step, epoch, _ = _attrs(ck)
        assert f"{ck} (step {step}) holds the last finite state" in err
        with h5py.File(ck) as f:
            assert np.isfinite(f["params"][...]).all() and np.isfinite(f["momentum"][...]).all()
        with h5py.File(f"{d}/m.h5") as f:  # the steps up to the divergence, for a look at the blow-up
            losses = f["loss"][...]
        assert step % 2 == 0 and epoch == 0 and step < len(losses) < 44
    else:
        assert err == ""


def test_checkpoint_every_also_saves_the_final_state(tmp_path_factory):
    comm = world()
    ck = f"{_dir(tmp_path_factory)}/ck.h5"
    summary, model = sync_sgd.run([*TINY, "--checkpoint", ck, "--checkpoint-every", "30"], comm)
    assert summary["steps"] == 44
    if comm.Get_rank() == 0:
        assert _attrs(ck) == (44, 1, 0)
        with h5py.File(ck) as f:
            np.testing.assert_array_equal(f["params"][...], model.params)


@pytest.fixture
def finished(tmp_path_factory) -> str:
    """A checkpoint at the end of a one-epoch TINY run."""
    ck = f"{_dir(tmp_path_factory)}/ck.h5"
    sync_sgd.run([*TINY, "--checkpoint", ck], world())
    return ck


@pytest.mark.parametrize("change,message", [
    (["--act", "tanh"], "--act was 'relu', is now 'tanh'"),
    (["--batch", "48"], "--batch was 32, is now 48"),
    (["--seed", "1"], "--seed was 0, is now 1"),
    (["--hidden", "16"], "the model's widths were [64, 8, 10], are now [64, 16, 10]"),
    (["--data", "synthetic", "--samples", "1797", "--features", "64"], "the data was"),
])
def test_resume_refuses_what_would_not_continue_the_run(change, message, finished, capsys):
    comm = world()
    with pytest.raises(SystemExit) as e:
        sync_sgd.run([*TINY, "--epochs", "2", *change, "--checkpoint", finished, "--resume"], comm)
    assert e.value.code == 2
    err = capsys.readouterr().err
    if comm.Get_rank() == 0:
        assert f"{finished} cannot resume this run: {message}" in err
    else:
        assert err == ""


def test_resume_warns_about_a_different_learning_rate_and_continues(finished, capsys):
    comm = world()
    summary, _ = sync_sgd.run([*TINY, "--epochs", "2", "--lr", "0.02", "--checkpoint", finished, "--resume"], comm)
    assert summary["steps"] == 88
    err = capsys.readouterr().err
    if comm.Get_rank() == 0:
        assert f"warning: resuming {finished}: --lr was 0.05, is now 0.02" in err
    else:
        assert err == ""


def _damage(path: str, how: str) -> None:
    with h5py.File(path, "r+") as f:
        if how == "step_in_epoch":
            f.attrs["step_in_epoch"] = 999
        elif how == "params":
            params = f["params"][...]
            params[3] = np.nan
            f["params"][...] = params
        elif how == "config":
            f.attrs["config"] = "{not json"
        elif how == "momentum":
            del f["momentum"]
            f["momentum"] = np.zeros(7, np.float32)


@pytest.mark.parametrize("how,message", [
    ("step_in_epoch", "step 44 is not step 999 of epoch 1"),
    ("params", "its parameters hold NaN or inf"),
    ("config", "its config attribute is not a JSON object"),
    ("momentum", "holds 7 momentum values (float32) for 610 parameters"),
])
def test_a_damaged_checkpoint_is_refused_on_every_rank(how, message, finished, capsys):
    comm = world()
    if comm.Get_rank() == 0:
        _damage(finished, how)
    comm.Barrier()
    with pytest.raises(SystemExit) as e:
        sync_sgd.run([*TINY, "--epochs", "2", "--checkpoint", finished, "--resume"], comm)
    assert e.value.code == 2
    err = capsys.readouterr().err
    if comm.Get_rank() == 0:
        assert message in err and "Traceback" not in err


def test_a_torn_temporary_file_is_removed_when_the_next_run_starts(finished):
    """A write killed half-way leaves ``PATH.tmp``; the next run with that checkpoint removes it even if it saves
    nothing (here: resumed at its last epoch, there is nothing to train)."""
    comm = world()
    if comm.Get_rank() == 0:
        with open(f"{finished}.tmp", "wb") as f:
            f.write(b"\0" * (1 << 20))
    comm.Barrier()
    before = _attrs(finished) if comm.Get_rank() == 0 else None
    summary, _ = sync_sgd.run([*TINY, "--checkpoint", finished, "--checkpoint-every", "1000", "--resume"], comm)
    assert summary["steps"] == 44
    if comm.Get_rank() == 0:
        assert not os.path.exists(f"{finished}.tmp") and _attrs(finished) == before


class _Killed(Exception):
    """The job was killed right after a checkpoint."""


def test_resume_mid_epoch_ends_bitwise_where_an_uninterrupted_run_ends(tmp_path_factory, monkeypatch):
    """A run killed right after its checkpoint at step 20 of 44 (mid-epoch) resumes bitwise."""
    from training import checkpoint

    comm = world()
    d = _dir(tmp_path_factory)
    base = [*TINY[:-1], "--allreduce", "ring", "--warmup-epochs", "0.5", "--scale-lr", "--nesterov"]
    full, _ = sync_sgd.run([*base, "--epochs", "2"], comm)
    ck = f"{d}/ck.h5"
    save = checkpoint.save

    def save_then_die(path, comm, **state):
        save(path, comm, **state)
        if state["step"] == 20:
            raise _Killed

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(_Killed):
        sync_sgd.run([*base, "--checkpoint", ck, "--checkpoint-every", "5"], comm)
    monkeypatch.undo()
    if comm.Get_rank() == 0:
        assert _attrs(ck) == (20, 0, 20)
    resumed, _ = sync_sgd.run([*base, "--epochs", "2", "--checkpoint", ck, "--resume"], comm)
    assert resumed["param_checksum"] == full["param_checksum"] and resumed["steps"] == full["steps"] == 88
