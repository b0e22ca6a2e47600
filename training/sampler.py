"""Which samples each rank trains on: one seed, a new shuffle every epoch, equal shares.

Like PyTorch's ``DistributedSampler`` every rank draws the same permutation
from ``(seed, epoch)``; unlike it, the permutation is cut into *global*
batches first, and each global batch into ``P`` consecutive parts (sizes
from :func:`collectives.algorithms.schedule.partition`, differing by at most one).  So
P ranks with global batch B see exactly the samples that one rank with
batch B sees, step for step, and P need not divide B or the dataset.  The
last ``n mod B`` samples of each epoch's permutation are dropped (a
different few every epoch), so every rank runs the same number of steps
and none waits at an epoch's end.
"""

from __future__ import annotations

import numpy as np

from collectives.algorithms.schedule import partition

__all__ = ["GlobalBatchSampler"]


class GlobalBatchSampler:
    """Per-rank batch indices of global batches.

    Parameters
    ----------
    n : int
        Training samples.
    batch : int
        Global batch size, ``ranks <= batch <= n``.
    ranks, rank : int
    seed : int
    """

    def __init__(self, n: int, batch: int, ranks: int, rank: int, seed: int = 0):
        if batch < ranks:
            raise ValueError(f"the global batch ({batch}) must be at least the number of ranks ({ranks})")
        if batch > n:
            raise ValueError(f"the global batch ({batch}) is larger than the training set ({n})")
        self.n, self.batch, self.ranks, self.rank, self.seed = n, batch, ranks, rank, seed
        bounds = partition(batch, ranks)
        self.lo, self.hi = bounds[rank], bounds[rank + 1]

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    @property
    def per_rank(self) -> int:
        """This rank's samples per step."""
        return self.hi - self.lo

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def epoch(self, epoch: int) -> np.ndarray:
        """This rank's indices for every step of ``epoch``: shape (steps, per_rank)."""
        perm = self.permutation(epoch)[: self.steps_per_epoch * self.batch]
        return perm.reshape(self.steps_per_epoch, self.batch)[:, self.lo : self.hi]
