"""Counting what a collective puts on the wire: messages, bytes and rounds per rank."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

__all__ = ["Traffic", "count"]


@dataclass
class Traffic:
    """What this rank did inside a :func:`count` block.

    ``rounds`` counts the rounds in which this rank sent or received at least
    one message.  Zero-length transfers are not sent and not counted.  The
    MPI library's own algorithm (``"mpi"``) is opaque and adds nothing.
    """

    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rounds: int = 0


class _Counters(threading.local):
    """Per thread: the counters of the :func:`count` blocks open in this thread."""

    def __init__(self):
        self.active: list[Traffic] = []


#: This thread's open counters (``OPEN.active``, a list): a caller on a hot path tests it before
#: calling :func:`record`.
OPEN = _Counters()


@contextmanager
def count() -> Iterator[Traffic]:
    """Count this rank's traffic for the collectives this thread calls inside the block.

    Examples
    --------
    >>> with collectives.traffic.count() as t:          # doctest: +SKIP
    ...     collectives.allreduce(x, algorithm="ring")
    >>> t.bytes_sent                                     # doctest: +SKIP
    """
    t = Traffic()
    active = OPEN.active
    active.append(t)
    try:
        yield t
    finally:
        active.remove(t)


def record(sent: int, received: int, bytes_sent: int, bytes_received: int, rounds: int = 1) -> None:
    """Add ``rounds`` rounds' traffic to every counter open in this thread (called by the engine)."""
    for t in OPEN.active:
        t.messages_sent += sent
        t.messages_received += received
        t.bytes_sent += bytes_sent
        t.bytes_received += bytes_received
        t.rounds += rounds
