"""Checkpoints in HDF5, written atomically: one rank writes a temporary file, then renames it.

A checkpoint holds the flat parameters, the momentum buffer, the step and
epoch, the data-order state (the permutation of every epoch is drawn from
``(seed, epoch)``, so ``seed``, ``epoch`` and the step within it are the
whole of it; training draws no other random numbers) and the run's
configuration as JSON.  A run killed while writing leaves the previous
checkpoint untouched: the new one only replaces it by ``os.replace``.  The
torn temporary file it leaves (``PATH.tmp``: one name per checkpoint, so
never more than one) is removed by :func:`prepare` when the next run
starts; a write that fails removes its own.  A checkpoint never holds NaN
or inf: :func:`save` refuses to write them and :func:`load` to read them.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from collectives import cli

from .divergence import finite

__all__ = ["prepare", "save", "load", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or resumed from; the message says why."""


def _temporary(path: str) -> str:
    return f"{path}.tmp"


def prepare(path: str) -> str | None:
    """Make ``path`` ready to take checkpoints; return why it cannot, or None.

    Run on the writing rank before training: creates missing directories,
    removes the temporary file a killed write left, and checks that the
    checkpoint and its temporary file (a new file beside it, for the
    atomic rename) can both be written.
    """
    tmp = _temporary(path)
    if os.path.isfile(tmp):
        try:
            os.unlink(tmp)
        except OSError as e:
            return f"cannot remove {tmp}, left by an interrupted write: {e.strerror or e}"
    return cli.writable(path, parents=True) or cli.writable(tmp)


def save(path: str, comm, *, params: np.ndarray, momentum: np.ndarray | None, step: int, epoch: int,
         step_in_epoch: int, seed: int, config: dict) -> None:
    """Collective over ``comm``: rank 0 writes ``path`` atomically after every rank got here.

    Raises :class:`CheckpointError` on every rank if it could not be written,
    or if ``params`` or ``momentum`` hold NaN or inf (then nothing is written
    and the previous checkpoint stays).
    """
    comm.Barrier()  # every rank has finished the step: the parameters are final (and identical)
    error = None
    if comm.Get_rank() == 0:
        attrs = {"step": step, "epoch": epoch, "step_in_epoch": step_in_epoch,
                 "rng": json.dumps({"seed": seed, "epoch": epoch, "step_in_epoch": step_in_epoch}),
                 "config": json.dumps(config, sort_keys=True)}
        error = _write(path, {"params": params} if momentum is None else {"params": params, "momentum": momentum},
                       attrs)
    error = comm.bcast(error, root=0)
    if error:
        raise CheckpointError(error)


def _write(path: str, arrays: dict[str, np.ndarray], attrs: dict) -> str | None:
    """Write ``arrays`` and ``attrs`` to ``path`` by way of its temporary file; why it failed, or None."""
    import h5py

    torn = [name for name, a in arrays.items() if not finite(a)]
    if torn:
        return f"refusing to write {path}: {' and '.join(torn)} hold NaN or inf"
    tmp = _temporary(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with h5py.File(tmp, "w") as f:
            for name, a in arrays.items():
                f.create_dataset(name, data=a)
            f.attrs.update(attrs)
            f.flush()
        with open(tmp, "rb+") as fd:
            os.fsync(fd.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return f"cannot write checkpoint {path}: {e}"
    return None


def load(path: str) -> dict:
    """Read a checkpoint (every rank reads the same file) and check that it is whole.

    Returns
    -------
    dict
        ``params`` (1-D float), ``momentum`` (the same shape, or None if the
        run had none), ``step``, ``epoch``, ``step_in_epoch`` and ``config``
        (a dict).  Whether it fits a run is :func:`training.resume.restore`'s question.

    Raises
    ------
    CheckpointError
        Missing, unreadable, or damaged: a config that is not a JSON object,
        arrays of the wrong type or size, NaN or inf.
    """
    import h5py

    if not os.path.exists(path):
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    try:
        with h5py.File(path, "r") as f:
            out = {"params": f["params"][...], "momentum": f["momentum"][...] if "momentum" in f else None}
            out.update({k: int(f.attrs[k]) for k in ("step", "epoch", "step_in_epoch")})
            config = f.attrs["config"]
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from None
    try:
        out["config"] = json.loads(config)
    except (TypeError, ValueError):
        out["config"] = None
    if not isinstance(out["config"], dict):
        raise CheckpointError(f"{path}: its config attribute is not a JSON object; the checkpoint is damaged")
    params, momentum = out["params"], out["momentum"]
    if params.dtype.kind != "f" or params.ndim != 1:
        raise CheckpointError(f"{path}: params must be a 1-D float array, got {params.dtype} {params.shape}")
    if momentum is not None and (momentum.dtype.kind != "f" or momentum.shape != params.shape):
        raise CheckpointError(f"{path} holds {momentum.size} momentum values ({momentum.dtype}) for "
                              f"{params.size} parameters; the checkpoint is damaged")
    for name, a in (("parameters", params), ("momentum values", momentum)):
        if a is not None and not finite(a):
            raise CheckpointError(f"{path}: its {name} hold NaN or inf; resume from an earlier checkpoint "
                                  "or start afresh")
    return out
