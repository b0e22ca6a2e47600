"""training.sync_sgd refuses what it cannot train on before the first step: bad option values, bad data files,
unwritable outputs.  Each is one message from rank 0 and exit 2 on every rank."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import world
from training import sync_sgd

pytestmark = pytest.mark.mpi(min_size=1)

TINY = ["--epochs", "1", "--hidden", "8", "--batch", "32"]


def _dir(tmp_path_factory) -> str:
    comm = world()
    return comm.bcast(str(tmp_path_factory.mktemp("inputs")) if comm.Get_rank() == 0 else None)


def _exits_2_saying(argv: list[str], message: str, capsys) -> str:
    """Run, expect exit 2 on every rank; return rank 0's stdout (what was printed before the exit)."""
    comm = world()
    with pytest.raises(SystemExit) as e:
        sync_sgd.run(argv, comm)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    if comm.Get_rank() == 0:
        assert message in err
    else:
        assert err == ""  # one message, from rank 0
    return out


@pytest.mark.parametrize("option,value,message", [
    ("--lr", "nan", "argument --lr: expected a finite number > 0, got 'nan'"),
    ("--lr", "inf", "argument --lr: expected a finite number > 0"),
    ("--lr", "-inf", "argument --lr: expected a finite number > 0"),
    ("--lr", "0", "argument --lr: expected a finite number > 0"),
    ("--momentum", "nan", "argument --momentum: expected a finite number >= 0"),
    ("--weight-decay", "inf", "argument --weight-decay: expected a finite number >= 0"),
    ("--warmup-epochs", "nan", "argument --warmup-epochs: expected a finite number >= 0"),
    ("--bucket-mb", "-1", "argument --bucket-mb: expected a finite number >= 0"),
    ("--epochs", "0", "argument --epochs: expected an integer >= 1"),
    ("--batch", "0", "argument --batch: expected an integer >= 1"),
    ("--checkpoint-every", "-5", "argument --checkpoint-every: expected an integer >= 0"),
    ("--seed", "-1", "argument --seed: expected an integer >= 0"),
    ("--threads", "0", "argument --threads: expected an integer >= 1"),
    ("--hidden", "8,0", "--hidden '8,0': every width must be at least 1"),
])
def test_bad_option_values_exit_2_on_every_rank(option, value, message, capsys):
    _exits_2_saying([*TINY, f"{option}={value}"], message, capsys)  # the last occurrence wins


def _good_data() -> dict:
    rng = np.random.default_rng(0)
    return {"X": rng.standard_normal((80, 4)), "y": rng.integers(0, 3, 80)}


def _bad_data(case: str) -> tuple[dict, str]:
    """The datasets of a file that must be refused, and the words the refusal contains."""
    data = _good_data()
    if case == "label of 10**9":
        data["y"][5] = 10**9
        return data, "largest label 1000000000 means 1000000001 classes"
    if case == "empty X":
        return {"X": np.zeros((0, 4)), "y": np.zeros(0, int)}, "X holds no rows"
    if case == "X a group":
        return {"X": None, "y": data["y"]}, "X is an HDF5 group, not a dataset"
    if case == "string X":
        return {"X": np.full((80, 4), b"ab"), "y": data["y"]}, "X must hold numbers"
    if case == "no features":
        return {"X": np.zeros((80, 0)), "y": data["y"]}, "X has no features"
    if case == "X of 3 dimensions":
        return {"X": np.zeros((80, 4, 4)), "y": data["y"]}, "X must be (n, features) or images (n, channels, height"
    if case == "X_test of other images":
        return {"X": np.zeros((80, 1, 8, 8)), "y": data["y"], "X_test": np.zeros((5, 1, 8, 9)),
                "y_test": np.zeros(5, int)}, "X_test must have X's channels, height and width (1, 8, 8)"
    if case == "NaN in an image":
        images = np.zeros((80, 2, 5, 5))
        images[41, 1, 4, 0] = np.nan
        return {"X": images, "y": data["y"]}, "X row 41 holds NaN or inf"
    if case == "test lengths differ":
        return {**data, "X_test": np.zeros((5, 4)), "y_test": np.zeros(4, int)}, "y_test must be (5,)"
    if case == "X_test alone":
        return {**data, "X_test": np.zeros((5, 4))}, "X_test without y_test"
    if case == "NaN in the last rank's rows":
        data["X"][78, 2] = np.nan
        return data, "X row 78 holds NaN or inf"
    if case == "inf in X_test":
        return {**data, "X_test": np.array([[0, 1, 2, 3], [0, np.inf, 0, 0]]), "y_test": np.zeros(2, int)}, \
            "X_test row 1 holds NaN or inf"
    if case == "beyond float32":
        data["X"][0, 0] = 1e39
        return data, "X row 0 holds NaN or inf"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["label of 10**9", "empty X", "X a group", "string X", "no features",
                                  "X of 3 dimensions", "X_test of other images", "NaN in an image",
                                  "test lengths differ", "X_test alone", "NaN in the last rank's rows",
                                  "inf in X_test", "beyond float32"])
def test_a_bad_data_file_exits_2_on_every_rank_when_it_is_opened(case, tmp_path_factory, capsys):
    comm = world()
    path = f"{_dir(tmp_path_factory)}/bad.h5"
    datasets, message = _bad_data(case)
    if comm.Get_rank() == 0:
        with h5py.File(path, "w") as f:
            for name, value in datasets.items():
                if value is None:
                    f.create_group(name)
                else:
                    f[name] = value
    comm.Barrier()
    images = datasets["X"] is not None and np.ndim(datasets["X"]) == 4  # a CNN's file: refused for its data alone
    out = _exits_2_saying([*TINY, "--data", path, *(["--model", "cnn"] if images else [])], message, capsys)
    assert "epoch" not in out


def test_the_good_data_file_trains(tmp_path_factory):
    """The file the bad ones are made from is accepted, so each refusal above is for its own reason."""
    comm = world()
    path = f"{_dir(tmp_path_factory)}/good.h5"
    if comm.Get_rank() == 0:
        with h5py.File(path, "w") as f:
            for name, value in _good_data().items():
                f[name] = value
    comm.Barrier()
    summary, _ = sync_sgd.run([*TINY, "--quiet", "--data", path], comm)
    assert summary["model"] == [4, 8, 3] and summary["steps"] == 2


@pytest.mark.parametrize("option", ["--json", "--metrics", "--checkpoint"])
def test_an_unwritable_output_exits_2_before_training(option, tmp_path_factory, capsys):
    """The parent of the output is a regular file: nothing can be written there, and no epoch is spent finding out."""
    comm = world()
    d = _dir(tmp_path_factory)
    if comm.Get_rank() == 0:
        open(f"{d}/file", "w").close()
    comm.Barrier()
    out = _exits_2_saying([*TINY, option, f"{d}/file/out"], f"{option} cannot write {d}/file/out", capsys)
    assert out == ""
