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


def rounds_progress(
    rounds: Sequence[Round], work: np.ndarray, comm: MPI.Comm, op: str
) -> Iterator[int]:
    """Execute ``rounds`` on ``work``, yielding the index of each finished round.

    Receives are posted before sends.  Reducing receives land in a scratch
    buffer taken once per call and are reduced in schedule order as each
    arrives, while the round's other messages are still in flight (unless
    the round sends the range being reduced, when its sends finish first).
    Zero-length transfers are skipped on both sides.
    """
    item = work.itemsize
    need = max(
        (sum(v.count for v in r.recvs if v.reduce) for r in rounds), default=0
    )
    tmp = scratch(work.dtype, need)
    raw = work.view(np.uint8)
    raw_tmp = tmp.view(np.uint8)
    byte = MPI.BYTE
    for index, rnd in enumerate(rounds):
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
        yield index


def execute(rounds: Sequence[Round], work: np.ndarray, comm: MPI.Comm, op: str = "sum") -> None:
    """Run ``rounds`` on ``work`` to completion (see :func:`rounds_progress`)."""
    for _ in rounds_progress(rounds, work, comm, op):
        pass
