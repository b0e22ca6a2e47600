"""How every alpha-beta measurement samples: sizes, iteration counts, passes, buffer pools.

The OSU method (warm-up, a barrier before each size, the iteration count
scaled down with size, the median), with each size's samples split over
passes through the sizes (:mod:`collectives.passes`) and every
measurement cycling through its own pool of page-aligned buffers.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from ..bench import sizes
from ..passes import share, visits
from ..runtime.buffers import at_page_offset

TAG = 77


def sweep_sizes(max_bytes: int) -> list[int]:
    """0, then 1, 2, 4, ..., with 1.5x steps between from 1 KiB, up to ``max_bytes``.

    The extra points give each fitted regime enough sizes to pin its slope.
    """
    out = [0] + sizes(1, max_bytes)
    out += [3 * s // 2 for s in sizes(1024, max_bytes) if 3 * s // 2 <= max_bytes]
    return sorted(out)


def _iterations(nbytes: int, budget: float, guess_bw: float = 5e9, guess_lat: float = 5e-6) -> int:
    """OSU-like: many iterations for small sizes, at least 20 for the largest.

    On the shared dev VM one 8 MiB exchange varies by about 30 % from call
    to call, so a median of 15 moved by +-15 % between neighbouring blocks;
    the default budget gives about 70 samples there.
    """
    per = 2 * (guess_lat + nbytes / guess_bw)
    return int(min(1000, max(20, budget / per)))


#: Buffers each measurement cycles through: an out-of-place all-reduce
#: touches three on every rank (input, result, scratch for incoming data),
#: so timing one hot buffer would report cache speed where the collective
#: runs at memory speed, and more than three would understate the cache.
POOL = 3


def _passes(nbytes_list, iterations, passes: int, warmup: int, block):
    """``{n: samples}`` from ``block(n, iters, warm)`` run ``passes`` times through the sizes.

    A pass generator (:mod:`collectives.passes`).  Each pass takes its
    :func:`~collectives.passes.share` of ``iterations(n)`` after ``warm``
    untimed iterations (``warmup`` in the first pass, one after), in the
    order of :func:`collectives.passes.visits`, which the bench's passes
    follow too.  A slow spell of a shared machine then hits one pass of a
    size rather than all its samples.
    """
    out = {n: [] for n in nbytes_list}
    for one_pass in visits(nbytes_list, passes, warmup):
        for n, warm, _ in one_pass:
            out[n] += block(n, share(iterations(n), passes), warm)
        yield
    return {n: np.array(v) for n, v in out.items()}


#: How every sample of a profile is timed, in :mod:`collectives.bench`'s terms (``--timing``): one call after a
#: barrier, the slowest rank's time.  The profile states it (``meta["timing"]``), and the benches its predictions
#: are checked against time the same way.
TIMING = "barrier"


def _slowest(comm: MPI.Comm, once, iters: int, warm: int) -> list[float]:
    """``iters`` samples of ``once(k)`` (which returns its own seconds), each the slowest rank's.

    ``warm`` untimed calls first; a barrier before every timed one.
    """
    for k in range(warm):
        once(k)
    samples = []
    for k in range(iters):
        comm.Barrier()
        samples.append(once(k))
    return np.max(comm.allgather(samples), axis=0).tolist()


def _timed(run):
    """``run()`` as a ``once(k)`` for :func:`_slowest`: returns the seconds it took."""
    def once(_):
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0
    return once


def make_pools(nbytes_list) -> dict:
    """``{n: POOL float32 buffers of n bytes}`` (at least one element), filled, for every measurement.

    All at one page offset (see :func:`collectives.runtime.buffers.at_page_offset`).

    The profile's measurements share one set, kept for all their passes:
    each size its own arrays, allocated as a user's array of that size
    would be (numpy asks for transparent huge pages from 4 MiB, so a slice
    of one larger array is not the same memory).  To 64 MiB that is about
    670 MiB per rank.
    """
    rng = np.random.default_rng(1)
    out = {}
    for n in nbytes_list:
        count = max(n // 4, 1)
        out[n] = [at_page_offset(count, np.float32) for _ in range(POOL)]
        for b in out[n]:
            b[...] = rng.random(count)
    return out
