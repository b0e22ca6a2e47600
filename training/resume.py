"""What a checkpoint must share with the run that resumes it: differences refused, differences warned about.

A resumed run continues the saved one only if it trains the same model on
the same samples in the same order.  So these are refused:

- the model's widths (``--hidden``, and the data's features and classes) and ``--act``;
- ``--batch``: the position in the epoch is counted in global batches, and
  the epoch's permutation is cut into batches of that size;
- ``--seed``: it draws the train/test split (digits, an HDF5 file without
  ``X_test``), the synthetic data itself, and every epoch's order, so a new
  seed would train on test samples and repeat or skip samples mid-epoch;
- the data (its name and its numbers of training and test samples).

The optimiser's settings (``--lr``, ``--momentum``, ``--weight-decay``,
``--nesterov``, ``--scale-lr``, ``--warmup-epochs``) change the trajectory
from here on but resume well-defined (lowering the rate by hand is common):
each difference is a warning.  A momentum buffer the checkpoint lacks
starts at zero, as at the start of a run.  ``--epochs`` (how far to go),
the number of ranks, the algorithm, buckets, threads and binding change at
most the rounding, and are not mentioned.
"""

from __future__ import annotations

import json

from .checkpoint import CheckpointError, load

__all__ = ["describe", "compare", "restore"]

REFUSED = {"model": "the model's widths", "act": "--act", "batch": "--batch", "seed": "--seed",
           "dataset": "the data"}
WARNED = ("lr", "momentum", "weight_decay", "nesterov", "scale_lr", "warmup_epochs")
UNRECORDED = ("json", "metrics", "quiet", "resume", "trace")


def describe(args, source, sizes: list[int], ranks: int) -> dict:
    """The run's configuration as checkpoints and metrics record it (JSON values only).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; every option but the outputs and ``--resume``.
    source : training.data.Source
        Recorded as ``dataset``: name and sample counts.
    sizes : list of int
        The model's widths, recorded as ``model``.
    ranks : int
    """
    config = {k: v for k, v in vars(args).items() if k not in UNRECORDED}
    config.update(ranks=ranks, model=sizes, dataset={"name": source.name, "train": source.n_train,
                                                     "test": source.n_test})
    return json.loads(json.dumps(config))


def _shown(key: str, value) -> str:
    if key == "dataset" and isinstance(value, dict) and {"name", "train", "test"} <= value.keys():
        return f"{value['name']} ({value['train']} train, {value['test']} test)"
    return str(value) if key == "model" else repr(value)


def compare(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """Differences between a checkpoint's configuration and this run's: ``(refusals, warnings)``, each a clause.

    A refused key the checkpoint does not record (it predates the key) gives a warning that it is not checked.
    """
    refusals, warnings = [], []
    for key, name in REFUSED.items():
        if key not in saved:
            warnings.append(f"the checkpoint does not record {name}; it is not checked")
        elif saved[key] != current[key]:
            was, now = ("were", "are now") if key == "model" else ("was", "is now")
            refusals.append(f"{name} {was} {_shown(key, saved[key])}, {now} {_shown(key, current[key])}")
    for key in WARNED:
        if key in saved and saved[key] != current[key]:
            warnings.append(f"--{key.replace('_', '-')} was {saved[key]!r}, is now {current[key]!r}")
    return refusals, warnings


def restore(path: str, config: dict, model, opt, steps_per_epoch: int, whole=None) -> tuple[int, int, list[str]]:
    """Load checkpoint ``path`` into ``model`` and ``opt`` if it continues this run.

    Parameters
    ----------
    path : str
    config : dict
        This run's :func:`describe`.
    model : training.layers.Sequential
    opt : training.optim.SGD
        Its momentum buffer is loaded, or zeroed if the checkpoint has none.
    steps_per_epoch : int
    whole : (int, callable), optional
        For a model cut over ranks: the whole model's size and
        ``fill(whole_vector, local_buffer)``, which keeps this rank's pieces
        (see :mod:`training.parallel.whole`).  Default: the model is whole.

    Returns
    -------
    (epoch, step_in_epoch, warnings)
        Where to continue, and the differences to warn about (clauses).

    Raises
    ------
    CheckpointError
        Damaged, refused (see the module's docstring), or a position that is
        not a step of an epoch of this run.
    """
    ck = load(path)
    refusals, warnings = compare(ck["config"], config)
    if refusals:
        raise CheckpointError(f"{path} cannot resume this run: {'; '.join(refusals)}. Resume with the "
                              "checkpoint's settings, or start afresh without --resume")
    size, fill = whole or (model.params.size, lambda src, dst: dst.__setitem__(Ellipsis, src))
    if ck["params"].size != size:
        raise CheckpointError(f"{path} holds {ck['params'].size} parameters, the model has {size}")
    epoch, step_in_epoch, step = ck["epoch"], ck["step_in_epoch"], ck["step"]
    if epoch < 0 or not 0 <= step_in_epoch < steps_per_epoch or step != epoch * steps_per_epoch + step_in_epoch:
        raise CheckpointError(f"{path}: step {step} is not step {step_in_epoch} of epoch {epoch} in epochs of "
                              f"{steps_per_epoch} steps; the checkpoint is damaged")
    fill(ck["params"], model.params)
    if opt.buffer is not None:
        if ck["momentum"] is None:
            opt.buffer[...] = 0
        else:
            fill(ck["momentum"], opt.buffer)
    return epoch, step_in_epoch, warnings
