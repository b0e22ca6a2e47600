"""What a collective pays on each rank beside its messages: the reduce kernel and the copy
(gamma), and the engine's software overhead per round and per call."""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from ..model import cost_model
from .links import _exchange
from .sampling import POOL, _iterations, _passes, _slowest, _timed, make_pools

#: The local kernels the profile times: (profile field, ``local_kernel`` kind, alone).
KERNELS = (("reduce", "reduce", False), ("reduce_sent", "reduce_sent", False),
           ("copy", "copy", False), ("reduce_alone", "reduce", True))


def local_kernel(comm: MPI.Comm, kind: str, nbytes_list, budget: float, passes: int = 1,
                 pools: dict | None = None, alone: bool = False):
    """Time the reduce kernel or a copy where the library runs them, all ranks or rank 0 alone.

    Each sample follows an untimed exchange with rank ``r ^ 1`` (a rank
    without a partner skips it), and ``kind`` says what is written:

    - ``"reduce"``: the buffer just received is added into one this rank
      wrote just before the exchange and did not send, as every algorithm
      but recursive doubling reduces (into its result vector, written by the
      API's copy of the send buffer, or into a block it has not sent);
    - ``"reduce_sent"``: into the buffer just sent, as recursive doubling
      reduces into the range it sends.  The peer's core has just read that
      buffer, so every line written must first be taken back from it (dev
      VM, P = 2, slow state: 4.5 against 1.8 us at 16 KiB, 39 against 11 at
      256 KiB, 147 against 94 at 1 MiB, the same from 2 MiB);
    - ``"copy"``: the buffer just sent is overwritten, as the API's copy of
      the send buffer into the result writes the buffer the last call sent
      from (dev VM, P = 2: 6 us at 64 KiB against 2.5 for a copy between
      buffers no other core has touched).

    ``passes``: see :func:`_passes`; ``pools``: :func:`make_pools` of these
    sizes to use.

    ``alone``: only rank 0 runs the kernel while the others wait, as the
    naive parameter server's root reduces while every other rank waits for
    the result.  It then has the memory system to itself (dev VM, P = 2,
    one thread per rank, fast state: 0.62-0.87x the time of both ranks
    reducing at once from 4 to 64 MiB, about 1x in cache); with 16 ranks
    to a node the gap should be wider (not yet measured).

    A pass generator (:mod:`collectives.passes`); its result is
    ``{nbytes: array of seconds}`` (each sample the slowest rank's) on every
    rank, ``nbytes`` whole float32 elements.
    """
    from ..runtime.reduce_ops import combine

    if kind not in ("reduce", "reduce_sent", "copy"):
        raise ValueError(f"unknown kernel {kind!r}")
    rank, p = comm.Get_rank(), comm.Get_size()
    peer = rank ^ 1 if (rank ^ 1) < p else None
    if pools is None:
        pools = make_pools(nbytes_list)

    def once(pool, k):
        sent, got, other = pool[k % POOL], pool[(k + 1) % POOL], pool[(k + 2) % POOL]
        if kind == "reduce":
            np.copyto(other, sent)  # the destination: written here, not sent
        if peer is not None:
            _exchange(comm, [sent, MPI.FLOAT], [got, MPI.FLOAT], peer)
        if alone and rank != 0:
            return 0.0
        t0 = time.perf_counter()
        if kind == "reduce":
            combine(other, got, "sum", False)
        elif kind == "reduce_sent":
            combine(sent, got, "sum", False)
        else:
            np.copyto(sent, other)
        return time.perf_counter() - t0

    def block(n, iters, warm):
        return _slowest(comm, lambda k: once(pools[n], k), iters, warm)

    got = yield from _passes(nbytes_list, lambda n: _iterations(n, budget, guess_bw=10e9, guess_lat=1e-6),
                             passes, 3, block)
    return {pools[n][0].nbytes: v for n, v in got.items()}


def round_times(comm: MPI.Comm, budget: float, passes: int = 1, counts=(1, 2, 4, 8, 16)):
    """Seconds of engine schedules of 1..16 rounds of one-element exchanges.

    Pairs ``r, r^1`` exchange one float32 per round (an odd last rank
    idles).  A pass generator (:mod:`collectives.passes`); its result is
    ``{rounds: median seconds}`` on every rank.  :func:`slope` of it is the
    time per round.
    """
    from ..algorithms.schedule import Recv, Round, Send
    from ..runtime.engine import execute

    rank, p = comm.Get_rank(), comm.Get_size()
    peer = rank ^ 1
    work = np.ones(1, np.float32)
    if peer < p:
        rnd = Round((Send(peer, 0, 1),), (Recv(peer, 0, 1, reduce=True, incoming_first=peer < rank),))
    else:
        rnd = Round()

    def block(r, iters, warm):
        rounds = (rnd,) * r
        return _slowest(comm, _timed(lambda: execute(rounds, work, comm, "max")), iters, warm)

    got = yield from _passes(list(counts), lambda r: max(20, int(budget / (r * 20e-6))), passes, 5, block)
    return {r: float(np.median(v)) for r, v in got.items()}


def slope(times: dict) -> float:
    """Least-squares seconds per round of ``{rounds: seconds}`` (at least 0)."""
    x = np.array(list(times), float)
    y = np.array(list(times.values()))
    return max(float(np.polyfit(x, y, 1)[0]), 0.0)


#: Collectives whose algorithms :func:`call_times` calibrates, each with its own overhead.
FAMILIES = ("allreduce", "allgather", "reduce_scatter", "broadcast")


def call_times(comm: MPI.Comm, budget: float, passes: int = 1, families=FAMILIES):
    """Seconds of a call of every predictable algorithm, one float32 element per rank.

    Timed as :mod:`collectives.bench` times calls, for each family in turn:
    a barrier before every call, the slowest rank's time, and the family's
    algorithms interleaved in a fresh order every repeat (the same on every
    rank).  The calls' rounds cost almost nothing, so what is left after the
    model's rounds is each algorithm's software overhead per call
    (:meth:`collectives.model.profile.Profile.overhead`).  Interleaved, because a call after another
    algorithm's costs more than one in a loop of its own (dev VM, P = 2:
    a 4 B recursive-doubling all-reduce 20.8 us in a loop, 22.1 in the mix),
    and not alike for all.  With one overhead for all, calibrated on
    recursive doubling's own loop, the ``--predict`` bench ran from 8 B to
    4 KiB 2.7-4.0 us above the prediction for recursive doubling, 1.5-2.8
    for the sharded parameter server and -0.5-0.9 for the naive one (three
    runs), enough to pick the wrong one of two algorithms 1-2 us apart.

    A pass generator (:mod:`collectives.passes`); its result is
    ``{(family, algorithm): array of seconds}`` on every rank.
    """
    from ..bench import _RUN, _buffers

    rank, p = comm.Get_rank(), comm.Get_size()
    bufs = {f: _buffers(f, 4 * p, np.dtype(np.float32), p, rank) for f in families}
    orders = {f: np.random.default_rng(i) for i, f in enumerate(families)}

    def block(family, iters, warm):
        x, y, _ = bufs[family]
        algs = cost_model.predictable(family)
        runs = [_RUN[family](a, comm) for a in algs]
        for run in runs:
            for _ in range(warm):
                run(x, y)
        rows = []
        for _ in range(iters):
            row = [0.0] * len(algs)
            for i in orders[family].permutation(len(algs)):
                comm.Barrier()
                t0 = time.perf_counter()
                runs[i](x, y)
                row[i] = time.perf_counter() - t0
            rows.append(row)
        return np.max(comm.allgather(rows), axis=0).tolist()

    def iterations(family):
        return max(50, int(budget / (30e-6 * len(cost_model.predictable(family)))))

    got = yield from _passes(list(families), iterations, passes, 5, block)
    return {(f, a): got[f][:, i] for f in families for i, a in enumerate(cost_model.predictable(f))}
