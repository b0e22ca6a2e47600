"""Measure alpha, beta and gamma on this machine, fit them, and predict every collective.

Launch::

    mpiexec -n 2 python -m mpi4py -m collectives.alphabeta --save
    mpiexec -n 2 python -m mpi4py -m collectives.alphabeta --predict --json ab.json
    python -m collectives.alphabeta --simulate --profile ab.json --plot winners.png

What it measures (OSU method: warm-up, a barrier before each size, the
iteration count scaled down with size, the median; each size's samples are
split over ``--passes`` passes through the sizes, and the measurements
below run interleaved pass by pass, so that a slow spell of a shared
machine hits one pass of each, not all of one):

- **ping-pong** between a pair of ranks, 0 B to ``--max-bytes``, for one pair
  on the same node and, with several nodes, one pair on different nodes;
  half the round trip is the one-way time ``T(n)``; and an **exchange**, both
  ranks sending ``n`` bytes at once, posted and waited for as the engine
  runs a round.  Each is fitted with a piecewise Hockney model
  ``T(n) = alpha + beta*n`` (:mod:`collectives.model.hockney`), with a breakpoint
  wherever the protocol changes.
- **gamma**: our reduce kernel (sum, float32) and a memory copy, fitted the
  same way, each timed where the library runs it (right after an exchange,
  see :func:`local_kernel`) with every rank of the node working at once, so
  memory bandwidth is shared as it is in a collective: the reduce into a
  buffer of the rank's own and into the buffer just sent (recursive
  doubling's), the copy over the buffer just sent; and the reduce again with
  rank 0 alone while the others wait, as the naive parameter server's root
  reduces.
- **software overheads** of our engine: the time per round beyond the
  messages and reductions the model charges for it (from schedules of 1 to
  16 one-element rounds) and per call, for every algorithm of every
  collective (calls with one element per rank, interleaved as the bench
  interleaves them, minus their predicted rounds; see :func:`call_times`).
- **pairs** (P > 2): alpha and beta of every pair (a sample of
  ``--max-pairs`` when there are more), ranks grouped by node, so intra- and
  inter-node links show apart.

Outputs: a table on stdout; the profile as JSON (``--json PATH``, or
``--save`` to the default path ``auto`` reads, see :mod:`collectives.model.profile`);
raw timings in HDF5 (``--output PATH.h5``); a PNG of points and fitted
lines (``--plot PATH.png``, needs matplotlib: ``pip install .[plots]``).

``--predict`` benches every algorithm of ``--collective`` *alongside* the
measurements, one bench pass after each pass of them
(:mod:`collectives.passes`), so that the profile and the times it is
checked against sample the same spells of a drifting machine; then, with
the profile fitted, it benches again with ``auto`` deciding from it.  It
prints, per algorithm and size, predicted and measured time and the
relative error, and ``auto`` against the best fixed algorithm of its own
bench.  ``--simulate`` predicts from
a profile at P up to 4096 and several ranks per node, and charts which
algorithm wins where.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from mpi4py import MPI

from ..runtime import auto
from .. import cli
from ..model import cost_model
from ..runtime.buffers import at_page_offset
from ..runtime.communicator import library_comm, ranks_per_node, unchecked
from ..bench import environment, format_size, sizes
from ..model.hockney import Piecewise, fit
from ..passes import drain, interleave, share, visits
from ..model.profile import Profile, default_path, load

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
    from ..runtime.engine import execute
    from ..algorithms.schedule import Recv, Round, Send

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
    (:meth:`Profile.overhead`).  Interleaved, because a call after another
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
        run = _RUN[family]
        for a in algs:
            for _ in range(warm):
                run(x, y, a, comm)
        rows = []
        for _ in range(iters):
            row = [0.0] * len(algs)
            for i in orders[family].permutation(len(algs)):
                comm.Barrier()
                t0 = time.perf_counter()
                run(x, y, algs[i], comm)
                row[i] = time.perf_counter() - t0
            rows.append(row)
        return np.max(comm.allgather(rows), axis=0).tolist()

    def iterations(family):
        return max(50, int(budget / (30e-6 * len(cost_model.predictable(family)))))

    got = yield from _passes(list(families), iterations, passes, 5, block)
    return {(f, a): got[f][:, i] for f in families for i, a in enumerate(cost_model.predictable(f))}


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


def measure(comm: MPI.Comm, args, alongside=()) -> tuple[Profile, dict, list]:
    """Run every measurement; return the profile (identical on all ranks), the raw data (rank 0),
    and the results of ``alongside``.

    The measurements run interleaved pass by pass (:mod:`collectives.passes`),
    each pass followed by a pass of every generator in ``alongside`` (the
    ``--predict`` bench), so the profile and what it is checked against
    sample the same spells of a drifting machine.  The pairwise matrix
    (P > 2) is measured after them.
    """
    library_comm(comm)  # threads per rank as in a real collective, before any kernel runs
    rank, p = comm.Get_rank(), comm.Get_size()
    nodes = _node_ids(comm)
    raw: dict = {"nodes": nodes}
    ns = sweep_sizes(args.max_bytes)
    pools = make_pools(ns)
    tasks = {}
    if p >= 2:
        same = [r for r in range(1, p) if nodes[r] == nodes[0]]
        other = [r for r in range(1, p) if nodes[r] != nodes[0]]
        for name, peers in (("intra", same), ("inter", other)):
            for exchange in (False, True):
                if peers:
                    tasks[f"{'exchange' if exchange else 'pingpong'}_{name}"] = pingpong(
                        comm, 0, peers[0], ns, args.budget, exchange=exchange, passes=args.passes, pools=pools)
    ks = [s for s in ns if s >= 64]
    for name, kind, alone in KERNELS:
        tasks[name] = local_kernel(comm, kind, ks, args.budget, args.passes, pools, alone)
    tasks["rounds"] = round_times(comm, args.budget, args.passes)
    tasks["call"] = call_times(comm, args.budget, args.passes)
    done = interleave([*tasks.values(), *alongside])
    got = dict(zip(tasks, done))
    del pools

    def medians_fit(samples: dict, footprint: int) -> Piecewise:
        return fit(list(samples), [np.median(v) for v in samples.values()],
                   max_segments=args.max_segments, footprint=footprint)

    links = {}
    for key in ("pingpong_intra", "exchange_intra", "pingpong_inter", "exchange_inter"):
        if key in got and rank == 0:
            raw[key] = got[key]
            kind, name = key.split("_")
            # working set on the busiest node: POOL buffers per rank, two ranks or one
            links[name + ("_exchange" if kind == "exchange" else "")] = medians_fit(
                got[key], POOL * (2 if name == "intra" else 1))
    local = int(np.bincount(nodes).max())  # ranks running the kernels at once on the fullest node
    kernels = {}
    for name, _, _ in KERNELS:
        raw[name] = got[name]
        kernels[name] = medians_fit(got[name], POOL * local)
    if args.pairs and p > 2:
        raw["pair_alpha"], raw["pair_beta"] = pairwise(comm, args.max_pairs, args.budget / 4)
    raw["rounds"] = got["rounds"]
    links = comm.bcast(links, root=0)
    if "intra" not in links:  # one rank: no link to measure, keep a zero-cost one
        links["intra"] = Piecewise.line(0.0, 0.0)
    meta = environment(comm)
    meta["nodes"] = max(nodes) + 1
    prof = Profile(
        intra=links["intra"],
        inter=links.get("inter"),
        intra_exchange=links.get("intra_exchange"),
        inter_exchange=links.get("inter_exchange"),
        **kernels,
        meta=meta,
    )
    # per round: the slope of the one-element rounds less what the model charges for
    # one such round's messages (an exchange, reduced into the element sent)
    one_round = prof.link(False, exchange=True)(4) + prof.reduce_sent(4)
    prof = dataclasses.replace(prof, round_overhead=max(slope(got["rounds"]) - one_round, 0.0))
    # per call and algorithm: a call with one element per rank minus what the model
    # charges for its rounds and copies (no call overhead in ``prof`` yet)
    rpn = ranks_per_node(library_comm(comm))
    raw["calls"] = {f"{f}/{a}": float(np.median(v)) for (f, a), v in got["call"].items()}
    overheads = {
        key: max(t - cost_model.predict(*key.split("/"), 4 * p, p, prof, ranks_per_node=rpn), 0.0)
        for key, t in raw["calls"].items()
    }
    allreduce = [t for k, t in overheads.items() if k.startswith("allreduce/")]
    prof = dataclasses.replace(prof, call_overheads=overheads,
                               call_overhead=float(np.median(allreduce)) if allreduce else 0.0)
    # every rank decides with the bits rank 0 has
    prof = Profile.from_dict(comm.bcast(prof.to_dict(), root=0))
    return prof, raw, done[len(tasks):]


# ------------------------------------------------------------------ output


def _us(s: float) -> str:
    return f"{s * 1e6:.3f}"


def _gbps(beta: float) -> str:
    return f"{1 / beta / 1e9:.2f}" if beta > 0 else "inf"


def describe(prof: Profile) -> str:
    """The profile as a table."""
    lines = []
    for name, pw in (("intra-node link, ping-pong", prof.intra),
                     ("intra-node link, exchange", prof.intra_exchange),
                     ("inter-node link, ping-pong", prof.inter),
                     ("inter-node link, exchange", prof.inter_exchange),
                     ("reduce kernel (gamma)", prof.reduce),
                     ("reduce kernel, into the buffer just sent", prof.reduce_sent),
                     ("reduce kernel, one rank of the node alone", prof.reduce_alone),
                     ("memory copy", prof.copy)):
        if pw is None:
            continue
        lines.append(f"# {name}: R^2 {pw.r2:.4f}, largest relative residual {pw.max_rel_residual:.1%}")
        lines.append(f"{'from_bytes':>12} {'to_bytes':>12} {'alpha_us':>10} {'beta_ns/B':>10} {'GB/s':>8}")
        for s in pw.segments:
            hi = "inf" if s.hi == float("inf") else f"{s.hi:.0f}"
            lines.append(f"{s.lo:>12.0f} {hi:>12} {_us(s.alpha):>10} {s.beta * 1e9:>10.5f} {_gbps(s.beta):>8}")
    each = " (all-reduce median); per call of each algorithm:" if prof.call_overheads else ""
    lines.append(f"# software overhead: {_us(prof.round_overhead)} us per round, "
                 f"{_us(prof.call_overhead)} us per call{each}")
    for key, t in prof.call_overheads.items():
        lines.append(f"#   {key:<40} {_us(t):>10} us")
    lines.append(
        f"# headline: alpha {_us(prof.intra.alpha)} us, beta {prof.intra.beta * 1e9:.5f} ns/B "
        f"({_gbps(prof.intra.beta)} GB/s), gamma {prof.reduce.beta * 1e9:.5f} ns/B "
        f"({_gbps(prof.reduce.beta)} GB/s)"
    )
    return "\n".join(lines)


def describe_pairs(alpha: np.ndarray, beta: np.ndarray, nodes: list[int]) -> str:
    """Alpha matrix (us) with ranks ordered by node, and per-class medians."""
    p = len(nodes)
    order = sorted(range(p), key=lambda r: (nodes[r], r))
    lines = ["# pairwise alpha (us), ranks grouped by node (node:rank)"]
    lines.append(" " * 9 + "".join(f"{nodes[c]}:{c:<6}" for c in order))
    for r in order:
        cells = "".join(f"{'-' if np.isnan(alpha[r, c]) else f'{alpha[r, c] * 1e6:.2f}':<8}" for c in order)
        lines.append(f"{nodes[r]}:{r:<6} {cells}")
    same = np.array([[nodes[i] == nodes[j] and i != j for j in range(p)] for i in range(p)])
    for label, mask in (("intra-node", same), ("inter-node", ~same & ~np.eye(p, dtype=bool))):
        a, b = alpha[mask], beta[mask]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a):
            lines.append(f"# {label} pairs: {len(a) // 2}, median alpha {np.median(a) * 1e6:.3f} us, "
                         f"median bandwidth {_gbps(float(np.median(b)))} GB/s")
    return "\n".join(lines)


def write_hdf5(path: str, prof: Profile, raw: dict) -> None:
    """Raw samples per size (NaN-padded), fits as JSON attributes, environment as attributes."""
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in prof.meta.items():
            f.attrs[k] = v if not isinstance(v, list) else ",".join(map(str, v))
        f.attrs["profile"] = json.dumps(prof.to_dict())
        for key in ("pingpong_intra", "exchange_intra", "pingpong_inter", "exchange_inter",
                    *(name for name, _, _ in KERNELS)):
            if key not in raw:
                continue
            data = raw[key]
            g = f.create_group(key)
            g["bytes"] = np.array(list(data), np.int64)
            width = max(len(v) for v in data.values())
            pad = np.full((len(data), width), np.nan)
            for i, v in enumerate(data.values()):
                pad[i, : len(v)] = v
            g["seconds"] = pad
            g["median"] = np.array([np.median(v) for v in data.values()])
        if "pair_alpha" in raw:
            f["pairs/alpha"] = raw["pair_alpha"]
            f["pairs/beta"] = raw["pair_beta"]
        f["nodes"] = np.array(raw["nodes"])
        if raw.get("calls"):
            f["calls/name"] = np.array(list(raw["calls"]), dtype=h5py.string_dtype())
            f["calls/seconds"] = np.array(list(raw["calls"].values()))
        f["rounds/count"] = np.array(list(raw["rounds"]))
        f["rounds/seconds"] = np.array(list(raw["rounds"].values()))


# ------------------------------------------------------------------ predict


def _bench_args(args, algorithms: str = ""):
    """``collectives.bench`` arguments of ``--predict``'s sweep (``algorithms``: default all)."""
    from .. import bench

    return bench.parse_args(
        ["--collective", args.collective, "--min-bytes", str(args.min_bytes),
         "--max-bytes", str(args.predict_max_bytes), "--quiet", "--budget", str(args.bench_budget),
         "--passes", str(args.passes), "--algorithms", algorithms]
    )


def alongside_bench(comm: MPI.Comm, args):
    """The bench of every predictable algorithm (and ``mpi``) as a pass generator, for :func:`measure`."""
    from .. import bench

    return bench.sweep(_bench_args(args, ",".join(cost_model.predictable(args.collective))), comm)


def predict_table(comm: MPI.Comm, prof: Profile, args, alongside: list[dict] | None = None) -> list[dict]:
    """Bench every algorithm with ``auto`` on ``prof``; one record per (size, algorithm).

    ``alongside``: records of :func:`alongside_bench`, run interleaved with
    the measurements ``prof`` was fitted from.  Predictions are checked
    against those times (``measured_us``), taken in the same spells as the
    profile; ``auto`` (which cannot run before its profile exists) against
    the fixed algorithms of this bench, in which it is interleaved with them
    (``auto_vs_best``, and every row's ``bench_us``).  Without
    ``alongside`` (a saved profile), both use this bench.
    """
    from .. import bench

    auto.set_profile(prof)
    records = bench.run(_bench_args(args), comm)
    p = comm.Get_size()
    rpn = ranks_per_node(library_comm(comm))  # what the API's auto decides with
    beside = {(r["bytes"], r["algorithm"]): r["time_us"] for r in alongside or records}
    out = []
    for size in sorted({r["bytes"] for r in records}):
        rows = {r["algorithm"]: r for r in records if r["bytes"] == size}
        fixed = {a: rows[a]["time_us"] for a in cost_model.predictable(args.collective) if a in rows}
        best = min(fixed, key=fixed.get)
        choice = auto.choose(args.collective, size, p, ranks_per_node=rpn)
        for a, r in rows.items():
            measured = r["time_us"] if a == "auto" else beside[(size, a)]
            rec = {"bytes": size, "algorithm": a, "measured_us": measured, "bench_us": r["time_us"]}
            model = choice if a == "auto" else a
            if model in cost_model.predictable(args.collective):
                pred = cost_model.predict(args.collective, model, size, p, prof, ranks_per_node=rpn)
                rec["predicted_us"] = pred * 1e6
                rec["rel_error"] = (pred * 1e6 - measured) / measured
            if a == "auto":
                rec["auto_choice"] = choice
                rec["best_fixed"] = best
                rec["auto_vs_best"] = r["time_us"] / fixed[best]
            out.append(rec)
    return out


def describe_predictions(recs: list[dict]) -> str:
    lines = [f"{'bytes':>10} {'algorithm':>20} {'measured_us':>12} {'predicted_us':>12} {'rel_err':>8}  note"]
    for r in recs:
        pred = f"{r['predicted_us']:>12.2f} {r['rel_error']:>+8.1%}" if "predicted_us" in r else f"{'-':>12} {'-':>8}"
        note = ""
        if r["algorithm"] == "auto":
            note = f"chose {r['auto_choice']}; best fixed {r['best_fixed']}; auto/best {r['auto_vs_best']:.2f}"
        lines.append(f"{r['bytes']:>10} {r['algorithm']:>20} {r['measured_us']:>12.2f} {pred}  {note}")
    big = [r for r in recs if "rel_error" in r and r["bytes"] >= 64 * 1024 and r["algorithm"] != "auto"]
    if big:
        worst = max(big, key=lambda r: abs(r["rel_error"]))
        lines.append(f"# largest |error| from 64 KiB: {worst['rel_error']:+.1%} "
                     f"({worst['algorithm']}, {worst['bytes']} B)")
    autos = [r for r in recs if r["algorithm"] == "auto"]
    if autos:
        lines.append(f"# auto / best fixed: worst {max(r['auto_vs_best'] for r in autos):.2f}")
    return "\n".join(lines)


# ------------------------------------------------------------------ simulate


def simulate(prof: Profile, family: str, ps, rpns, nbytes_list) -> list[dict]:
    """Predicted time of every algorithm at every (ranks per node, P, bytes)."""
    out = []
    for rpn in rpns:
        for p in ps:
            for n in nbytes_list:
                times = {a: cost_model.predict(family, a, n, p, prof, ranks_per_node=rpn)
                         for a in cost_model.predictable(family)}
                win = min(times, key=times.get)
                out.append({"ranks_per_node": rpn, "p": p, "bytes": n, "winner": win,
                            "predicted_us": {a: t * 1e6 for a, t in times.items()}})
    return out


def describe_simulation(recs: list[dict], family: str) -> str:
    algs = cost_model.predictable(family)
    short = {a: a[:1].upper() + str(i) for i, a in enumerate(algs)}
    lines = ["# winner per (P, bytes): " + ", ".join(f"{v}={k}" for k, v in short.items())]
    for rpn in sorted({r["ranks_per_node"] for r in recs}):
        sub = [r for r in recs if r["ranks_per_node"] == rpn]
        ns = sorted({r["bytes"] for r in sub})
        lines.append(f"# ranks per node {rpn}")
        lines.append(f"{'P':>6} " + " ".join(f"{format_size(n):>5}" for n in ns))
        for p in sorted({r["p"] for r in sub}):
            row = {r["bytes"]: r["winner"] for r in sub if r["p"] == p}
            lines.append(f"{p:>6} " + " ".join(f"{short[row[n]]:>5}" for n in ns))
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI


PROG = "python -m collectives.alphabeta"


def parser() -> cli.ArgumentParser:
    """The command line's options, each checked by its type (see :mod:`collectives.cli`)."""
    ap = cli.ArgumentParser(prog=PROG,
                            description="Measure alpha, beta, gamma; fit Hockney; predict and simulate collectives.")
    ap.add_argument("--max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest ping-pong size (default 64M)")
    ap.add_argument("--budget", type=cli.positive_seconds, metavar="SECONDS", default=0.25,
                    help="seconds of timing per size (default 0.25)")
    ap.add_argument("--passes", type=cli.positive_int, default=5,
                    help="spread each size's samples over this many passes through the sizes (default 5)")
    ap.add_argument("--max-segments", type=cli.positive_int, default=4, help="most regimes in a piecewise fit")
    ap.add_argument("--no-pairs", dest="pairs", action="store_false", help="skip the pairwise matrix (P > 2)")
    ap.add_argument("--max-pairs", type=cli.positive_int, default=64, help="measure at most this many pairs (sampled)")
    ap.add_argument("--profile", metavar="PATH", help="use this profile instead of measuring")
    ap.add_argument("--json", metavar="PATH", help="write the profile (and predictions, simulation) as JSON")
    ap.add_argument("--save", action="store_true", help=f"write the profile to the default path ({default_path()})")
    ap.add_argument("--output", metavar="PATH.h5", help="write the raw timings to HDF5 (not with --profile)")
    ap.add_argument("--plot", metavar="PATH.png",
                    help="PNG of measured points and fitted lines (or winners with --simulate)")
    ap.add_argument("--predict", action="store_true", help="bench every algorithm and compare with the model")
    ap.add_argument("--collective", default="allreduce", choices=list(FAMILIES))
    ap.add_argument("--min-bytes", type=cli.size_arg, metavar="BYTES", default=4,
                    help="smallest --predict size (default 4)")
    ap.add_argument("--predict-max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest --predict size (default 64M)")
    ap.add_argument("--bench-budget", type=cli.positive_seconds, metavar="SECONDS", default=1.0,
                    help="bench --budget in --predict, seconds (default 1.0)")
    ap.add_argument("--simulate", action="store_true", help="predict at large P from the profile (no measuring needed)")
    ap.add_argument("--sim-ranks", type=cli.int_list, default="2,4,8,16,32,64,128,256,512,1024,2048,4096",
                    help="P values for --simulate (comma-separated ranks)")
    ap.add_argument("--ranks-per-node", type=cli.int_list, default="1,16",
                    help="ranks per node for --simulate (comma-separated)")
    ap.add_argument("--sim-max-bytes", type=cli.size_arg, metavar="BYTES", default=1 << 30,
                    help="largest --simulate size (from 4 bytes; default 1G)")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and cross-check the options: :class:`collectives.cli.AgreedExit` (2) on every rank if bad."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.predict_max_bytes < args.min_bytes:
        ap.error(f"--predict-max-bytes ({args.predict_max_bytes} bytes) is below --min-bytes ({args.min_bytes} bytes)")
    if args.sim_max_bytes < 4:
        ap.error(f"--sim-max-bytes ({args.sim_max_bytes} bytes) is below the simulation's first size (4 bytes)")
    if args.output and args.profile:
        ap.error("--output writes the raw timings of a measurement: there are none with --profile")
    return args


def _check_outputs(comm: MPI.Comm, args) -> None:
    """Every output writable (``--save``'s directory created) and matplotlib there for ``--plot``, before the work."""
    from .. import plots

    cli.check_outputs(comm, {"--json": args.json, "--output": args.output, "--plot": args.plot}, PROG)
    cli.check_outputs(comm, {"--save": default_path() if args.save else None}, PROG, parents=True)
    cli.agree_or_exit(comm, plots.missing() if args.plot and comm.Get_rank() == 0 else None, PROG)


def main(argv=None) -> int:
    """Measure (or load) a profile, then predict and simulate; bad input: an agreed exit 2."""
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    _check_outputs(comm, args)
    result: dict = {}
    raw = measured = None
    if args.profile:
        error = None
        try:
            prof = load(args.profile)
        except (OSError, ValueError) as e:
            error = str(e)
        cli.agree_or_exit(comm, error, PROG)
    with unchecked():  # calls are timed as the bench times them: without the cross-rank argument check
        if not args.profile:
            prof, raw, extra = measure(comm, args, [alongside_bench(comm, args)] if args.predict else [])
            measured = extra[0] if extra else None
        if rank == 0:
            print(f"# collectives.alphabeta, P={comm.Get_size()}"
                  + (f", profile {args.profile}" if args.profile else ""))
            for k, v in prof.meta.items():
                print(f"# {k}: {v}")
            print(describe(prof), flush=True)
            if raw is not None and "pair_alpha" in raw:
                print(describe_pairs(raw["pair_alpha"], raw["pair_beta"], raw["nodes"]), flush=True)
        result["profile"] = prof.to_dict()
        if args.predict:
            recs = predict_table(comm, prof, args, measured)
            result["predictions"] = recs
            if rank == 0:
                print(describe_predictions(recs), flush=True)
    if args.simulate and rank == 0:
        sim = simulate(prof, args.collective, args.sim_ranks, args.ranks_per_node, sizes(4, args.sim_max_bytes))
        result["simulation"] = sim
        print(describe_simulation(sim, args.collective), flush=True)
    if rank == 0:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        if args.save:
            prof.save(default_path())
            print(f"# profile saved to {default_path()}")
        if args.output:
            write_hdf5(args.output, prof, raw)
        if args.plot:
            from .. import plots

            if args.simulate:
                plots.winners(result["simulation"], args.collective, args.plot)
            else:
                plots.fits(prof, raw, args.plot)
            print(f"# plot written to {args.plot}")
    return 0

