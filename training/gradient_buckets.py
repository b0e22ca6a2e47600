"""Gradient buckets, and their all-reduces overlapped with backward.

The flat gradient (last layer first, see :class:`training.layers.Sequential`)
is cut into buckets of at most ``--bucket-mb``; with ``--overlap`` each
bucket's all-reduce starts as soon as backward has written all of it, and is
progressed between layers (:func:`collectives.allreduce_start`), so
communication runs while backward computes.
"""

from __future__ import annotations

import time

import collectives

__all__ = ["Buckets", "Overlap"]


class Buckets:
    """Contiguous ranges of the flat gradient of at most ``bucket_bytes`` each (at least one element)."""

    def __init__(self, size: int, itemsize: int, bucket_bytes: float):
        step = max(1, int(bucket_bytes // itemsize)) if bucket_bytes > 0 else max(size, 1)
        self.ranges = [(lo, min(lo + step, size)) for lo in range(0, size, step)]



class Overlap:
    """One step's buckets, started as backward fills them and progressed between layers.

    ``span``: from the first bucket's start to the last one's completion;
    ``exposed``: from the end of backward's arithmetic (the last layer's
    gradients written) to that completion; hidden = ``1 - exposed / span``.
    ``inside``: seconds spent starting and progressing inside backward
    (communication, not compute).
    """

    def __init__(self, model, ranges, views, algorithm, comm):
        self.model, self.ranges, self.views = model, ranges, views
        self.algorithm, self.comm = algorithm, comm
        self.pending, self.inside, self.first = [], 0.0, None
        self.span = self.exposed = 0.0
        self.arithmetic_done = None

    def layer_done(self, layer: int) -> None:
        t = self.arithmetic_done = time.perf_counter()
        ready = self.model.param_range(layer)[1]  # layers are laid out last first: [0, ready) is final
        while len(self.pending) < len(self.ranges) and self.ranges[len(self.pending)][1] <= ready:
            if self.first is None:
                self.first = t
            view = self.views[len(self.pending)]
            self.pending.append(collectives.allreduce_start(view, view, op="sum", algorithm=self.algorithm,
                                                            comm=self.comm))
        for p in self.pending:
            p.progress()
        self.inside += time.perf_counter() - t

    def finish(self) -> None:
        for p in self.pending:
            p.wait()
        if self.first is not None:
            end = time.perf_counter()
            self.span, self.exposed = end - self.first, end - self.arithmetic_done
