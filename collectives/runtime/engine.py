"""Runs a schedule over MPI point-to-point: the only place that sends or receives.

A schedule is compiled once per item size into a :class:`Plan` of byte
ranges, peers and tags (:func:`compile_rounds`), and packed into one int64
array.  Plans are cached by the schedule's identity: the schedule functions
are ``lru_cache``-d, so a repeated call hands in the very same tuple.

:func:`execute` runs a plan in one Numba function
(:mod:`collectives.runtime.compiled`) that calls the MPI library directly,
with no Python between messages.  It falls back to the Python loop of
:func:`rounds_posted` (the same messages in the same order, mpi4py's
``Isend``/``Irecv``) where the compiled loop cannot go: float16 (Numba has
no CPU float16), a message of 2 GiB or more (C ``int`` counts), a reduce
big enough for the multithreaded kernels while this rank has more than one
thread, and an MPI without a :func:`~collectives.runtime.native.binding`.
:func:`rounds_posted` also drives the nonblocking all-reduce, which yields
between rounds.  On the dev VM (P = 2, MPICH) a one-round all-reduce of 4 B
posted by the Python loop took 11 us, by hand in Python 5 us, MPI's own
through mpi4py 4.3 us, and the compiled loop 3.7 us.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np
from mpi4py import MPI

from numa import threads

from ..algorithms.schedule import Round
from . import native, traffic
from .device import backend_of
from .compiled import OP_CODES, pack, run
from .reduce_ops import PARALLEL_BYTES, combine
from .workspace import scratch

#: Below this many bytes a message's count fits a C ``int``.
_INT_BYTES = 1 << 31


class Step(NamedTuple):
    """One round, compiled: byte ranges of the work buffer (or of the scratch)."""

    #: ``(peer, tag, byte lo, byte hi, into scratch)`` per receive, in schedule order
    recvs: tuple[tuple[int, int, int, int, bool], ...]
    #: ``(peer, tag, byte lo, byte hi)`` per send
    sends: tuple[tuple[int, int, int, int], ...]
    #: ``(receive index, work element lo, scratch element lo, elements, incoming first)``
    #: per reducing receive, in schedule order
    reduces: tuple[tuple[int, int, int, int, bool], ...]
    #: a reducing receive writes a range this round sends: finish the sends first
    sends_first: bool
    #: ``(messages sent, received, bytes sent, received)`` for :func:`traffic.record`
    traffic: tuple[int, int, int, int]


class Plan(NamedTuple):
    """A schedule compiled for one item size: its non-empty rounds, its scratch size, and its packed form."""

    steps: tuple[Step, ...]
    #: elements of scratch the reducing receives need: the most one round reduces
    scratch: int
    #: :func:`collectives.runtime.compiled.pack` of ``steps``, or None if a message has 2 GiB or more
    packed: np.ndarray | None
    #: bytes of the largest single reduce
    largest_reduce: int
    #: the whole plan's ``(messages sent, received, bytes sent, received, rounds)``
    traffic: tuple[int, int, int, int, int]


def _compile(rounds: Sequence[Round], item: int) -> Plan:
    steps = []
    need = need_reduce = 0
    for rnd in rounds:
        recvs = [v for v in rnd.recvs if v.hi > v.lo]
        sends = [s for s in rnd.sends if s.hi > s.lo]
        if not recvs and not sends:
            continue
        posted, reduces, at = [], [], 0
        for i, v in enumerate(recvs):
            if v.reduce:
                posted.append((v.peer, v.tag, at * item, (at + v.count) * item, True))
                reduces.append((i, v.lo, at, v.count, v.incoming_first))
                at += v.count
            else:
                posted.append((v.peer, v.tag, v.lo * item, v.hi * item, False))
        need = max(need, at)
        need_reduce = max([need_reduce] + [v.count for v in recvs if v.reduce])
        overlaps = any(v.reduce and v.lo < s.hi and s.lo < v.hi for v in recvs for s in sends)
        steps.append(
            Step(
                tuple(posted),
                tuple((s.peer, s.tag, s.lo * item, s.hi * item) for s in sends),
                tuple(reduces),
                overlaps,
                (len(sends), len(recvs), sum(s.count for s in sends) * item,
                 sum(v.count for v in recvs) * item),
            )
        )
    largest = max((hi - lo for step in steps for _, _, lo, hi, *_ in step.recvs + step.sends), default=0)
    totals = tuple(sum(step.traffic[i] for step in steps) for i in range(4)) + (len(steps),)
    return Plan(tuple(steps), need, pack(steps) if largest < _INT_BYTES else None,
                need_reduce * item, totals)


_PLANS: dict[tuple[int, int], tuple[tuple, Plan]] = {}
#: Compiled plans kept; the oldest is dropped beyond this.
PLANS_KEPT = 1024


def compile_rounds(rounds: Sequence[Round], itemsize: int) -> Plan:
    """The :class:`Plan` of ``rounds`` for items of ``itemsize`` bytes, cached for tuples.

    The cache is keyed by the tuple's identity and holds the tuple itself,
    so the key cannot be reused by another schedule while the entry lives.
    """
    if type(rounds) is not tuple:
        return _compile(rounds, itemsize)
    key = (id(rounds), itemsize)
    hit = _PLANS.get(key)
    if hit is not None:
        return hit[1]
    plan = _compile(rounds, itemsize)
    if len(_PLANS) >= PLANS_KEPT:
        try:  # another thread may evict the same entry, or insert while we look
            _PLANS.pop(next(iter(_PLANS)), None)
        except RuntimeError:
            pass
    _PLANS[key] = (rounds, plan)
    return plan


def rounds_posted(
    rounds: Sequence[Round], work: np.ndarray, comm: MPI.Comm, op: str, tmp: np.ndarray | None = None
) -> Iterator[list]:
    """Execute ``rounds`` on ``work`` in split phases: yield each round's requests once they are posted.

    Each ``next()`` waits for the round just posted (its reducing receives
    land in a scratch buffer and are reduced in schedule order as each
    arrives, while the round's other messages are still in flight, unless
    the round sends the range being reduced, when its sends finish first),
    then posts the next round and yields its requests.  Between two
    ``next()`` calls the caller may compute, and may ``MPI.Request.Testall``
    the yielded requests to let MPI progress them.  Receives are posted
    before sends; zero-length transfers are skipped on both sides.

    ``tmp``: the scratch for reducing receives (``compile_rounds(rounds,
    work.itemsize).scratch`` elements); default this thread's engine
    scratch, which only one running schedule may use at a time.
    """
    plan = compile_rounds(rounds, work.itemsize)
    if tmp is None:
        tmp = scratch(work.dtype, plan.scratch)
    raw, raw_tmp = work.view(np.uint8), tmp.view(np.uint8)
    irecv, isend, byte = comm.Irecv, comm.Isend, MPI.BYTE
    # plain loops, not comprehensions or Waitall: about 1 us less per round (dev VM, P = 2)
    for step in plan.steps:
        reqs = []
        for peer, tag, lo, hi, into_tmp in step.recvs:
            reqs.append(irecv([(raw_tmp if into_tmp else raw)[lo:hi], byte], peer, tag))
        for peer, tag, lo, hi in step.sends:
            reqs.append(isend([raw[lo:hi], byte], peer, tag))
        yield reqs
        if step.reduces:
            if step.sends_first:  # one by one: Waitall cost 0.2 us more a round (dev VM, P = 2)
                for k in range(len(step.recvs), len(reqs)):
                    reqs[k].Wait()
            for i, lo, at, count, incoming_first in step.reduces:
                reqs[i].Wait()
                combine(work[lo : lo + count], tmp[at : at + count], op, incoming_first)
        for req in reqs:  # what is left: copies and sends (done ones are null, free to wait)
            req.Wait()
        traffic.record(*step.traffic)


def execute(rounds: Sequence[Round], work: np.ndarray, comm: MPI.Comm, op: str = "sum") -> None:
    """Run ``rounds`` on ``work`` to completion: compiled, or else the loop of :func:`rounds_posted`.

    A device array runs on :mod:`collectives.runtime.device_engine`, its
    messages straight from the device where ``comm`` is CUDA-aware.

    Raises
    ------
    mpi4py.MPI.Exception
        If the MPI library returns an error to the compiled loop.
    """
    backend = backend_of(work)
    if backend is not None:  # a device array: messages straight or staged, reductions on the device
        from .device_engine import execute as on_device

        on_device(rounds, work, comm, op, backend, getattr(comm, "cuda_aware", False))
        return
    plan = compile_rounds(rounds, work.itemsize)
    bind = native.binding()
    if (bind is None or plan.packed is None or work.dtype.char == "e"
            or plan.largest_reduce >= PARALLEL_BYTES and threads.count() > 1):
        for _ in rounds_posted(rounds, work, comm, op):
            pass
        return
    handles = getattr(comm, "native_handles", None)
    if handles is None:
        handles = native.handles(comm, bind)
    reqs = scratch(bind.handle, plan.packed[1], slot="requests")
    err = run(work, scratch(work.dtype, plan.scratch), reqs, plan.packed, OP_CODES[op], handles, bind.calls)
    if err:
        raise MPI.Exception(err)
    traffic.record(*plan.traffic)
