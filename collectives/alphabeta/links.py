"""Alpha and beta of the links: ping-pong and exchange between two ranks, and every pair."""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from ..passes import drain
from .sampling import POOL, TAG, _iterations, _passes, make_pools


def _exchange(comm: MPI.Comm, send, recv, peer: int) -> None:
    """Swap ``send`` for ``recv`` with ``peer`` as :mod:`collectives.runtime.engine` runs a round.

    Receive posted first, then the send; wait for the receive, then the
    send (an engine round that reduces into the range it sends waits the
    send first: the same time within 0.2 us, dev VM, P = 2, 4-16 KiB).
    Not ``Sendrecv``: the engine's two requests and two waits cost
    0.6-0.9 us more per exchange (dev VM, MPICH, 4-64 KiB), and the model
    should charge what the engine pays.
    """
    r = comm.Irecv(recv, peer, TAG)
    s = comm.Isend(send, peer, TAG)
    r.Wait()
    s.Wait()


def pingpong(comm: MPI.Comm, a: int, b: int, nbytes_list, budget: float, warmup: int = 3,
             exchange: bool = False, passes: int = 1, pools: dict | None = None):
    """One-way message times between ranks ``a`` and ``b``; every rank of ``comm`` steps it.

    Ping-pong: half the round trip.  ``exchange``: both send ``n`` bytes to
    each other at once, posted and completed as the engine runs a round
    (:func:`_exchange`), the time of one exchange.  ``passes``: the
    iterations of each size are split over this many passes through the
    sizes (see :func:`_passes`).  ``pools``: :func:`make_pools` of these
    sizes to use (else ``a`` and ``b`` allocate their own).

    A pass generator (:mod:`collectives.passes`); its result is
    ``{nbytes: array of seconds}`` on ``a``, empty elsewhere.
    """
    rank = comm.Get_rank()
    peer = b if rank == a else a
    mine = rank in (a, b)
    if pools is None:
        pools = make_pools(nbytes_list) if mine else {}

    def once(n, k):
        bufs = pools[n]
        send = [bufs[k % POOL].view(np.uint8)[:n], MPI.BYTE]
        recv = [bufs[(k + 1) % POOL].view(np.uint8)[:n], MPI.BYTE]
        t0 = time.perf_counter()
        if exchange:
            _exchange(comm, send, recv, peer)
            return time.perf_counter() - t0
        if rank == a:
            comm.Send(send, peer, TAG)
            comm.Recv(recv, peer, TAG)
            return (time.perf_counter() - t0) / 2
        comm.Recv(recv, peer, TAG)
        comm.Send(send, peer, TAG)
        return 0.0

    def block(n, iters, warm):
        comm.Barrier()
        if not mine:
            return []
        for k in range(warm):
            once(n, k)
        return [once(n, k) for k in range(iters)]

    out = yield from _passes(nbytes_list, lambda n: _iterations(n, budget), passes, warmup, block)
    comm.Barrier()
    return out if rank == a else {}


def _node_ids(comm: MPI.Comm) -> list[int]:
    """Node index of every rank, nodes numbered by their lowest rank."""
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    leader = local.allreduce(comm.Get_rank(), op=MPI.MIN)
    local.Free()
    leaders = comm.allgather(leader)
    order = sorted(set(leaders))
    return [order.index(x) for x in leaders]


def _pairs(p: int, max_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    every = [(i, j) for i in range(p) for j in range(i + 1, p)]
    if len(every) <= max_pairs:
        return every
    rng = np.random.default_rng(seed)
    ring = {(min(i, (i + 1) % p), max(i, (i + 1) % p)) for i in range(p)}
    rest = [pr for pr in every if pr not in ring]
    pick = rng.choice(len(rest), size=max(0, max_pairs - len(ring)), replace=False)
    return sorted(ring | {rest[i] for i in pick})


def pairwise(comm: MPI.Comm, max_pairs: int, budget: float, small: int = 8, large: int = 1 << 20):
    """Two-point alpha/beta of every (sampled) pair.  Matrices in seconds and s/B; NaN = not measured."""
    p = comm.Get_size()
    alpha = np.full((p, p), np.nan)
    beta = np.full((p, p), np.nan)
    for a, b in _pairs(p, max_pairs):
        t = drain(pingpong(comm, a, b, [small, large], budget))
        got = comm.bcast({k: float(np.median(v)) for k, v in t.items()} if comm.Get_rank() == a else None, root=a)
        beta[a, b] = beta[b, a] = max(got[large] - got[small], 0.0) / (large - small)
        alpha[a, b] = alpha[b, a] = max(got[small] - beta[a, b] * small, 0.0)
    return alpha, beta
