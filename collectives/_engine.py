"""Runs a schedule over MPI point-to-point: the only place that sends or receives."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from mpi4py import MPI

from . import traffic
from .reduce_ops import combine
from .schedule import Round
from .workspace import scratch


def _overlaps(rnd: Round) -> bool:
    """Whether a reducing receive writes a range that the same round sends."""
    return any(
        v.reduce and v.lo < s.hi and s.lo < v.hi for v in rnd.recvs for s in rnd.sends
    )


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

    ``tmp``: the scratch for reducing receives (:func:`scratch_elements`
    elements); default the shared engine scratch, which only one running
    schedule may use at a time.
    """
    item = work.itemsize
    need = scratch_elements(rounds)
    if tmp is None:
        tmp = scratch(work.dtype, need)
    raw = work.view(np.uint8)
    raw_tmp = tmp.view(np.uint8)
    byte = MPI.BYTE
    for rnd in rounds:
        recvs = [v for v in rnd.recvs if v.hi > v.lo]
        sends = [s for s in rnd.sends if s.hi > s.lo]
        if not recvs and not sends:
            continue
        rreqs = []
        at = 0
        for v in recvs:
            if v.reduce:
                buf = raw_tmp[at * item : (at + v.count) * item]
                at += v.count
            else:
                buf = raw[v.lo * item : v.hi * item]
            rreqs.append(comm.Irecv([buf, byte], v.peer, v.tag))
        sreqs = [
            comm.Isend([raw[s.lo * item : s.hi * item], byte], s.peer, s.tag) for s in sends
        ]
        yield rreqs + sreqs
        sends_done = False
        wait_sends_first = _overlaps(rnd)
        at = 0
        for v, req in zip(recvs, rreqs):
            req.Wait()
            if v.reduce:
                if wait_sends_first and not sends_done:
                    MPI.Request.Waitall(sreqs)
                    sends_done = True
                combine(work[v.lo : v.hi], tmp[at : at + v.count], op, v.incoming_first)
                at += v.count
        if not sends_done:
            MPI.Request.Waitall(sreqs)
        traffic.record(
            len(sends),
            len(recvs),
            sum(s.count for s in sends) * item,
            sum(v.count for v in recvs) * item,
        )


def scratch_elements(rounds: Sequence[Round]) -> int:
    """Elements of scratch that :func:`rounds_posted` needs: the most one round reduces."""
    return max((sum(v.count for v in r.recvs if v.reduce) for r in rounds), default=0)


def execute(rounds: Sequence[Round], work: np.ndarray, comm: MPI.Comm, op: str = "sum") -> None:
    """Run ``rounds`` on ``work`` to completion (see :func:`rounds_posted`)."""
    for _ in rounds_posted(rounds, work, comm, op):
        pass
