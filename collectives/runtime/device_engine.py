"""A schedule run on device memory: each message straight from the device, or staged through pinned host memory.

The same plan as on the host (:func:`collectives.runtime.engine.compile_rounds`),
message for message and byte for byte, so the traffic counts are the
host's.  Per round:

- **direct** (the MPI is CUDA-aware, :mod:`collectives.runtime.cuda_query`):
  wait for the stream that produced the work buffer (the caller's kernels,
  the last round's reductions), then post the receives and sends on device
  byte ranges, which mpi4py hands to MPI through
  ``__cuda_array_interface__``;
- **staged** (it is not): copy the round's outgoing ranges into one pinned
  host buffer on the stream and wait for it, post the receives into the
  rest of that buffer and the sends from it, and copy each arrival to the
  device (into the work buffer, or the device scratch for a reducing
  receive).  The host only moves bytes.

Either way a reducing receive is reduced on the device, in schedule order,
as soon as it arrives, by the backend's kernels, which compute what the
host kernels do (:class:`collectives.runtime.device.Backend`).  A round
whose reducing receives write a range it sends waits for its sends first,
as on the host.

:func:`library` runs the library's own collective (``"mpi"``) on device
memory: straight, or staged through pinned host memory as a whole.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from mpi4py import MPI

from ..algorithms.schedule import Round
from . import traffic
from .device import Backend
from .engine import compile_rounds

__all__ = ["execute", "library"]


def execute(rounds: Sequence[Round], work, comm: MPI.Comm, op: str, backend: Backend, direct: bool) -> None:
    """Run ``rounds`` on the flat device array ``work`` to completion; ``direct`` or staged messages."""
    plan = compile_rounds(rounds, work.itemsize)
    tmp = backend.scratch(work.dtype, plan.scratch)
    raw, raw_tmp = backend.as_bytes(work), backend.as_bytes(tmp)
    irecv, isend, byte = comm.Irecv, comm.Isend, MPI.BYTE
    for step in plan.steps:
        if direct:
            backend.synchronize()
            reqs = [irecv([(raw_tmp if into_tmp else raw)[lo:hi], byte], peer, tag)
                    for peer, tag, lo, hi, into_tmp in step.recvs]
            reqs += [isend([raw[lo:hi], byte], peer, tag) for peer, tag, lo, hi in step.sends]
            arrived = None
        else:
            reqs, arrived = _post_staged(step, raw, raw_tmp, backend, irecv, isend, byte)
        if step.reduces and step.sends_first:
            MPI.Request.Waitall(reqs[len(step.recvs):])
        reducing = set()
        for i, lo, at, count, incoming_first in step.reduces:
            reqs[i].Wait()
            if arrived is not None:
                _, _, tmp_lo, tmp_hi, _ = step.recvs[i]
                backend.from_host(arrived[i], raw_tmp[tmp_lo:tmp_hi])
            backend.reduce(work[lo : lo + count], tmp[at : at + count], op, incoming_first)
            reducing.add(i)
        MPI.Request.Waitall(reqs)
        if arrived is not None:  # the other receives: copies into the work buffer
            for i, (_, _, lo, hi, into_tmp) in enumerate(step.recvs):
                if i not in reducing:
                    backend.from_host(arrived[i], (raw_tmp if into_tmp else raw)[lo:hi])
        traffic.record(*step.traffic)
    backend.synchronize()


def _post_staged(step, raw, raw_tmp, backend: Backend, irecv, isend, byte) -> tuple[list, list]:
    """Stage one round: its sends copied to pinned host memory, receives posted there.

    Returns the requests (receives, then sends) and each receive's host
    bytes, to be copied to the device when it arrives.
    """
    sizes = [hi - lo for _, _, lo, hi, _ in step.recvs] + [hi - lo for _, _, lo, hi in step.sends]
    host, starts = _pieces(backend, sizes)
    pieces = [host[at : at + size] for at, size in zip(starts, sizes)]
    arrived = pieces[: len(step.recvs)]
    outgoing = pieces[len(step.recvs):]
    for (_, _, lo, hi), piece in zip(step.sends, outgoing):
        backend.to_host(raw[lo:hi], piece)
    backend.synchronize()
    reqs = [irecv([piece, byte], peer, tag) for (peer, tag, *_), piece in zip(step.recvs, arrived)]
    reqs += [isend([piece, byte], peer, tag) for (peer, tag, *_), piece in zip(step.sends, outgoing)]
    return reqs, arrived


#: Staged pieces start on this many bytes' boundaries in the pinned buffer (a cache line; any dtype's alignment).
ALIGN = 64


def _pieces(backend: Backend, sizes: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """This thread's pinned buffer, and where each of pieces of ``sizes`` bytes starts in it (aligned)."""
    starts, end = [], 0
    for size in sizes:
        starts.append(end)
        end += -(-size // ALIGN) * ALIGN
    return backend.pinned(end), starts


def library(call: Callable[..., None], buffers: Sequence, backend: Backend, direct: bool,
            reads: Sequence[bool], writes: Sequence[bool]) -> None:
    """``call(*buffers)``, the library's collective, on device ``buffers``: straight, or staged through the host.

    Staged, every buffer that ``reads`` says the library reads is copied
    to pinned host memory first, and every one ``writes`` says it writes
    is copied back after.
    """
    backend.synchronize()
    if direct:
        call(*buffers)
        return
    sizes = [b.nbytes for b in buffers]
    host, starts = _pieces(backend, sizes)
    # an empty slice starts where its base does: an empty buffer of its own, or MPI sees aliased buffers
    staged = [host[at : at + size].view(b.dtype) if size else np.empty(0, b.dtype)
              for at, size, b in zip(starts, sizes, buffers)]
    for b, h, read in zip(buffers, staged, reads):
        if read:
            backend.to_host(backend.as_bytes(b), h.view(np.uint8))
    backend.synchronize()
    call(*staged)
    for b, h, written in zip(buffers, staged, writes):
        if written:
            backend.from_host(h.view(np.uint8), backend.as_bytes(b))
    backend.synchronize()
