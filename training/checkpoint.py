"""Checkpoints in HDF5, written atomically: one rank writes a temporary file, then renames it.

A checkpoint holds the flat parameters, the momentum buffer, the step and
epoch, the data-order state (the permutation of every epoch is drawn from
``(seed, epoch)``, so ``seed``, ``epoch`` and the step within it are the
whole of it; training draws no other random numbers) and the run's
configuration as JSON.  A run killed while writing leaves the previous
checkpoint untouched: the new one only replaces it by ``os.replace``.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["save", "load", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from."""


def save(path: str, comm, *, params: np.ndarray, momentum: np.ndarray | None, step: int, epoch: int,
         step_in_epoch: int, seed: int, config: dict) -> None:
    """Collective over ``comm``: rank 0 writes ``path`` atomically after every rank got here."""
    import h5py

    comm.Barrier()  # every rank has finished the step: the parameters are final (and identical)
    error = None
    if comm.Get_rank() == 0:
        tmp = f"{path}.tmp"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with h5py.File(tmp, "w") as f:
                f.create_dataset("params", data=params)
                if momentum is not None:
                    f.create_dataset("momentum", data=momentum)
                f.attrs.update({"step": step, "epoch": epoch, "step_in_epoch": step_in_epoch,
                                "rng": json.dumps({"seed": seed, "epoch": epoch, "step_in_epoch": step_in_epoch}),
                                "config": json.dumps(config, sort_keys=True)})
                f.flush()
            with open(tmp, "rb+") as fd:
                os.fsync(fd.fileno())
            os.replace(tmp, path)
        except OSError as e:
            error = f"cannot write checkpoint {path}: {e}"
    error = comm.bcast(error, root=0)
    if error:
        raise CheckpointError(error)


def load(path: str, *, size: int, momentum: bool) -> dict:
    """Read a checkpoint (every rank reads the same file); check it fits the model."""
    import h5py

    if not os.path.exists(path):
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    try:
        with h5py.File(path, "r") as f:
            params = f["params"][...]
            buf = f["momentum"][...] if "momentum" in f else None
            out = {k: int(f.attrs[k]) for k in ("step", "epoch", "step_in_epoch")}
            out["config"] = json.loads(f.attrs["config"])
    except (OSError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from None
    if params.shape != (size,):
        raise CheckpointError(f"{path} holds {params.shape[0]} parameters, the model has {size}")
    if momentum and buf is None:
        raise CheckpointError(f"{path} has no momentum buffer, but momentum > 0")
    out.update(params=params, momentum=buf)
    return out
