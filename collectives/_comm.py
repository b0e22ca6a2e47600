"""The library's own communicator and the check mode."""

from __future__ import annotations

import os

from mpi4py import MPI

from . import threads
from .errors import CollectiveError

_KEYVAL = MPI.Comm.Create_keyval()
_check = os.environ.get("COLLECTIVES_CHECK", "0") not in ("", "0", "false", "no")


def set_check(enabled: bool) -> None:
    """Turn the cross-rank argument check on or off (default: ``$COLLECTIVES_CHECK``).

    With the check on, every call first exchanges a small signature (count,
    dtype, op, algorithm, root, and whether this rank's buffers passed local
    validation) over the library communicator.  Any disagreement raises
    :class:`CollectiveError` on every rank before the collective's first
    message.  It costs one small all-gather per call, so benchmarks leave it
    off; the tests turn it on.
    """
    global _check
    _check = bool(enabled)


def check_enabled() -> bool:
    """Whether the cross-rank argument check is on."""
    return _check


def library_comm(comm: MPI.Comm | None) -> MPI.Comm:
    """Return a cached duplicate of ``comm`` (COMM_WORLD if None) for library traffic.

    The duplicate lives as an MPI attribute of ``comm``, so user messages on
    ``comm`` never match ours.  Creating it is collective, and happens on the
    first call on each communicator.  That first call also learns how many
    ranks share each node (see :func:`ranks_per_node`) and checks that every
    rank uses the same cost profile for ``auto`` (see
    :mod:`collectives.profile`), raising :class:`CollectiveError` on every
    rank if not: ranks that pick different algorithms would deadlock.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise CollectiveError(f"comm must be an mpi4py intracommunicator, got {comm!r}")
    dup = comm.Get_attr(_KEYVAL)
    if dup is None:
        dup = _LibraryComm(comm.Dup())
        local = dup.Split_type(MPI.COMM_TYPE_SHARED)
        local_size = local.Get_size()
        masks = [frozenset(m) for m in local.allgather(sorted(os.sched_getaffinity(0)))]
        local.Free()
        # ranks of this node bound to their own cores: disjoint masks
        bound = local_size > 1 and sum(map(len, masks)) == len(frozenset().union(*masks))
        from .auto import decisions, profile_fingerprint

        everyone = dup.allgather((local_size, profile_fingerprint()))
        prints = {fp for _, fp in everyone}
        if len(prints) > 1:
            dup.Free()
            raise CollectiveError(
                "ranks use different cost profiles for algorithm='auto': "
                + "; ".join(f"rank {r}: {fp or 'none'}" for r, (_, fp) in enumerate(everyone))
                + "; give every rank the same COLLECTIVES_PROFILE file"
            )
        dup.ranks_per_node = max(size for size, _ in everyone)
        dup.decisions = decisions(dup.Get_size(), dup.ranks_per_node)
        comm.Set_attr(_KEYVAL, dup)
        threads.configure_once(local_size, bound if local_size > 1 else None)
    return dup


#: Nonblocking all-reduces in flight at once per communicator, each on its own duplicate.
PENDING_SLOTS = 8
_POOL = MPI.Comm.Create_keyval()


def pending_comm(lib: MPI.Comm) -> tuple[MPI.Comm, list]:
    """The communicator for the next nonblocking all-reduce on ``lib``, and its slot.

    Operations in flight at the same time must not share a communicator:
    their rounds use the same tags.  The ``k``-th start on ``lib`` takes
    duplicate ``k mod PENDING_SLOTS`` (created on first use, collectively;
    every rank starts in the same order, so every rank picks the same one).
    The slot is a one-element list holding the operation that used the
    duplicate last (or None): the caller waits for it, then puts its own there.
    """
    pool = lib.Get_attr(_POOL)
    if pool is None:
        pool = {"next": 0, "comms": [None] * PENDING_SLOTS, "slots": [[None] for _ in range(PENDING_SLOTS)]}
        lib.Set_attr(_POOL, pool)
    k = pool["next"] % PENDING_SLOTS
    pool["next"] += 1
    if pool["comms"][k] is None:
        pool["comms"][k] = lib.Dup()
    return pool["comms"][k], pool["slots"][k]


class _LibraryComm(MPI.Intracomm):
    """The duplicate :func:`library_comm` keeps, with its node shape and ``auto``'s decisions.

    ``auto`` needs them on every call; an MPI attribute lookup
    (``Get_attr``) cost 0.4 us there on the dev VM, a Python attribute
    0.03 us.  ``decisions``: :func:`collectives.auto.decisions` for this
    communicator's size and node shape.
    """

    __slots__ = ("ranks_per_node", "decisions")


def ranks_per_node(lib: MPI.Comm) -> int:
    """Ranks per node of a communicator returned by :func:`library_comm` (the largest node's)."""
    return getattr(lib, "ranks_per_node", 1)


def agree(comm: MPI.Comm, signature: tuple, local_error: str | None) -> None:
    """Raise the same :class:`CollectiveError` on every rank if ranks disagree.

    ``signature`` must be equal on all ranks; ``local_error`` is this rank's
    own validation failure, or None.
    """
    everyone = comm.allgather((signature, local_error))
    errors = [f"rank {r}: {e}" for r, (_, e) in enumerate(everyone) if e is not None]
    if errors:
        raise CollectiveError("; ".join(errors))
    first = everyone[0][0]
    for r, (sig, _) in enumerate(everyone):
        if sig != first:
            raise CollectiveError(
                f"ranks disagree on the call: rank 0 has {_describe(first)}, "
                f"rank {r} has {_describe(sig)}; every rank must pass the same "
                "count, dtype, op, algorithm and root"
            )


def _describe(sig: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in sig)
