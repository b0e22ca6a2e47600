"""The library's own communicator and the check mode."""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from mpi4py import MPI

from numa import threads

from ..errors import CollectiveError
from . import cuda_query, native



def _free_duplicate(comm, keyval, dup) -> None:
    """A user's communicator is being freed: free the library's duplicate of it (and, so, its pending pool)."""
    # list(): one C call, so another thread's insertion cannot change the dict while we look
    for key in [key for key, (_, kept) in list(KNOWN.items()) if kept is dup]:
        KNOWN.pop(key, None)
    for key in [key for key, kept in list(REPEATS.items()) if kept[1] is dup]:
        REPEATS.pop(key, None)
    dup.Free()


#: ``id(user communicator) -> (it, its library duplicate)``: :func:`library_comm`'s shortcut past
#: ``Get_attr`` (0.7 us on the dev VM).  Holding the communicator keeps its id from being reused;
#: freeing it drops the entry (:func:`_free_duplicate`).
KNOWN: dict[int, tuple] = {}

#: ``(id(communicator), dtype number, size, op, algorithm) -> (communicator, library duplicate, *runner)``:
#: the repeated all-reduces (:mod:`collectives.runtime.repeat`), dropped with their communicator.
REPEATS: dict[tuple, tuple] = {}


_KEYVAL = MPI.Comm.Create_keyval(delete_fn=_free_duplicate)
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _check_from_environment() -> bool:
    """``$COLLECTIVES_CHECK``: on unless it says 0/false/no/off; any other word is an error."""
    value = os.environ.get("COLLECTIVES_CHECK", "").strip().lower()
    if value in ("",) + _ON:
        return True
    if value in _OFF:
        return False
    raise CollectiveError(
        f"COLLECTIVES_CHECK={os.environ['COLLECTIVES_CHECK']!r} is neither on ({', '.join(_ON)}) "
        f"nor off ({', '.join(_OFF)})"
    )


_check = _check_from_environment()


def set_check(enabled: bool, comm: MPI.Comm | None = None) -> None:
    """Turn the cross-rank argument check on or off; collective over ``comm`` (default COMM_WORLD).

    The check is on by default (``$COLLECTIVES_CHECK=0`` turns it off at
    start).  With it on, every call first reduces a small signature of the
    call (which collective, blocking or not, count, dtype, op, algorithm,
    root, in place or not, the operation's ``name`` if given, and whether
    this rank's buffers passed local validation) with one ``MPI_Allreduce``
    of two integers (a hash of it, and its negation) over the library
    communicator (see :func:`agree`).  Any disagreement raises
    :class:`CollectiveError` on every rank before the collective's first
    message.  Benchmarks turn it off, to time the collective alone.

    Every rank must call this alike: the change is agreed like a call, so
    a rank that turns the check off (or on again) alone meets the other
    ranks' next checked call and every rank raises.  While the check is off
    nothing is compared, so a rank that turns it back on alone while the
    others call collectives cannot be told apart from a slow rank: it waits.
    """
    global _check
    enabled = bool(enabled)
    lib = library_comm(comm)
    agree(lib, (_SET_CHECK, int(enabled)), None,
          lambda: (("call", "set_check"), ("enabled", enabled)))
    _check = enabled


def check_enabled() -> bool:
    """Whether the cross-rank argument check is on."""
    return _check


@contextmanager
def unchecked() -> Iterator[None]:
    """The check off inside the block, and as it was after it, exception or not; no messages.

    For a block that every rank enters and leaves at the same point (a
    benchmark's timed calls), so no agreement is needed; elsewhere use
    :func:`set_check`.
    """
    global _check
    was, _check = _check, False
    try:
        yield
    finally:
        _check = was


def library_comm(comm: MPI.Comm | None) -> MPI.Comm:
    """Return a cached duplicate of ``comm`` (COMM_WORLD if None) for library traffic.

    The duplicate lives as an MPI attribute of ``comm``, so user messages on
    ``comm`` never match ours.  Creating it is collective, and happens on the
    first call on each communicator.  That first call also learns how many
    ranks share each node (see :func:`ranks_per_node`) and checks that every
    rank uses the same cost profile for ``auto`` (see
    :mod:`collectives.model.profile`) and the same check mode (see
    :func:`set_check`), raising :class:`CollectiveError` on every rank if
    not: ranks that pick different algorithms would deadlock, and so would
    a rank that checks against one that does not.
    """
    if comm is None:
        comm = MPI.COMM_WORLD
    known = KNOWN.get(id(comm))
    if known is not None and known[0] is comm:
        return known[1]
    if comm == MPI.COMM_NULL:
        raise CollectiveError("comm is MPI.COMM_NULL: this rank is not a member of the communicator "
                              "(a Split with color MPI.UNDEFINED?); call collectives only on its members")
    if not isinstance(comm, MPI.Intracomm):
        raise CollectiveError(f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD or a Split of it), "
                              f"got {type(comm).__module__}.{type(comm).__name__}")
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

        device_problem = cuda_query.setting_problem()
        device = (False, "") if device_problem else cuda_query.local()
        everyone = dup.allgather((local_size, profile_fingerprint(), _check, device, device_problem))
        problem = next((bad for *_, bad in everyone if bad), None)
        if problem is None and len({fp for _, fp, *_ in everyone}) > 1:
            problem = ("ranks use different cost profiles for algorithm='auto': "
                       + "; ".join(f"rank {r}: {fp or 'none'}" for r, (_, fp, *_) in enumerate(everyone))
                       + "; give every rank the same COLLECTIVES_PROFILE file")
        elif problem is None and len({check for _, _, check, *_ in everyone}) > 1:
            problem = ("ranks disagree on the check mode: "
                       + ", ".join(f"rank {r}: {'on' if c else 'off'}" for r, (_, _, c, *_) in enumerate(everyone))
                       + "; set COLLECTIVES_CHECK alike on every rank, and call set_check on every rank")
        if problem:
            dup.Free()
            raise CollectiveError(problem)
        dup.ranks_per_node = max(size for size, *_ in everyone)
        answers = [answer for *_, answer, _ in everyone]
        dup.cuda_aware = all(aware for aware, _ in answers)  # the minimum: one rank staging makes all stage
        dup.cuda_aware_why = next((f"rank {r}: {why}" for r, (aware, why) in enumerate(answers) if not aware),
                                  answers[0][1])
        dup.decisions = decisions(dup.Get_size(), dup.ranks_per_node)
        dup.in_use = _Exclusive()
        dup.check_buf = np.empty(2, np.int64)
        bind = native.binding()
        dup.native_handles = None if bind is None else native.handles(dup, bind)
        dup.lock = dup.in_use.lock
        comm.Set_attr(_KEYVAL, dup)
        threads.configure_once(local_size, bound if local_size > 1 else None)
    KNOWN[id(comm)] = (comm, dup)
    return dup


def forget_repeats() -> None:
    """Forget every repeated all-reduce (:mod:`collectives.runtime.repeat`)."""
    REPEATS.clear()


#: Nonblocking all-reduces in flight at once per communicator, each on its own duplicate.
PENDING_SLOTS = 8


def _free_pool(lib, keyval, pool) -> None:
    """A library communicator is being freed: free the duplicates its nonblocking all-reduces used."""
    for comm in pool.comms:
        if comm is not None:
            comm.Free()


_POOL = MPI.Comm.Create_keyval(delete_fn=_free_pool)


class _PendingPool:
    """A library communicator's duplicates for nonblocking all-reduces, and who used each last."""

    __slots__ = ("next", "comms", "slots", "__weakref__")

    def __init__(self):
        self.next = 0
        self.comms: list = [None] * PENDING_SLOTS
        self.slots: list[list] = [[None] for _ in range(PENDING_SLOTS)]


_POOLS: "weakref.WeakSet[_PendingPool]" = weakref.WeakSet()


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
        pool = _PendingPool()
        lib.Set_attr(_POOL, pool)
        _POOLS.add(pool)
    k = pool.next % PENDING_SLOTS
    pool.next += 1
    if pool.comms[k] is None:
        pool.comms[k] = lib.Dup()
    return pool.comms[k], pool.slots[k]


def pending_slots() -> list[list]:
    """Every slot of every live communicator's pool (for the warning at exit about unwaited operations)."""
    return [slot for pool in list(_POOLS) for slot in pool.slots]


class _LibraryComm(MPI.Intracomm):
    """The duplicate :func:`library_comm` keeps, with its node shape, ``auto``'s decisions and a lock.

    ``auto`` needs them on every call; an MPI attribute lookup
    (``Get_attr``) cost 0.4 us there on the dev VM, a Python attribute
    0.03 us.  ``decisions``: :func:`collectives.runtime.auto.decisions` for this
    communicator's size and node shape.  ``in_use``: held while a call runs
    on this communicator (see :func:`hold`).  ``check_buf``: the two integers
    :func:`agree` reduces, kept so that a check allocates nothing.
    ``native_handles``: the handles the compiled engine passes to MPI
    (:func:`collectives.runtime.native.handles`), or None.  ``cuda_aware``:
    whether every rank's MPI takes device memory, and ``cuda_aware_why``
    what said so, or the first rank that said not
    (:mod:`collectives.runtime.cuda_query`).  ``lock``:
    ``in_use``'s lock, taken directly on the repeated path (0.1 us against
    0.4 through ``hold``).
    """

    __slots__ = ("ranks_per_node", "decisions", "in_use", "lock", "check_buf", "native_handles", "cuda_aware",
                 "cuda_aware_why")


class _Exclusive:
    """A communicator's guard: ``with hold(lib):`` around a call; raises if another thread is inside.

    A class with ``__enter__``/``__exit__``, not ``contextlib``: about 0.2 us
    a call instead of 1.
    """

    __slots__ = ("lock",)

    def __init__(self):
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Hold the communicator, or raise :class:`CollectiveError` if another thread holds it."""
        if not self.lock.acquire(blocking=False):
            raise CollectiveError(
                "another thread is running a collective on this communicator; MPI forbids concurrent "
                "collectives on one communicator, and the other ranks' matching call is left waiting: "
                "give each thread its own (comm.Dup())"
            )

    def release(self) -> None:
        """Let the communicator go."""
        self.lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.lock.release()


def hold(lib: MPI.Comm) -> _Exclusive:
    """``with hold(lib):`` holds ``lib`` for one call; entering raises if another thread holds it.

    MPI forbids two threads to run collectives on one communicator at once
    (their messages would match each other's), so the second caller gets a
    :class:`CollectiveError` on its own rank; no other rank can learn of it,
    so their matching call waits (under ``python -m mpi4py`` the error
    aborts the job).  Calls on *different* communicators may run in
    concurrent threads: each thread has its own scratch memory
    (:mod:`collectives.runtime.workspace`) and its own traffic counters.
    """
    return lib.in_use


def ranks_per_node(lib: MPI.Comm) -> int:
    """Ranks per node of a communicator returned by :func:`library_comm` (the largest node's)."""
    return getattr(lib, "ranks_per_node", 1)


#: The signature's first integer for :func:`set_check` (the API's call kinds count from 0).
_SET_CHECK = -1
#: Where a rank that failed its own validation puts its signature's hash (hashes are >= 0).
_FAILED = -1


def agree(lib: MPI.Comm, signature: tuple[int, ...], local_error: str | None,
          describe: Callable[[], tuple]) -> None:
    """Raise the same :class:`CollectiveError` on every rank if ranks disagree or any rank failed.

    Collective over ``lib``: one ``MPI_Allreduce`` (``MPI_MAX``) of two
    integers, the hash of ``signature`` (``_FAILED`` on a rank with a
    ``local_error``) and its negation, so every rank learns the largest and
    the smallest hash at once.  Only when they differ, or a rank failed, is
    a second exchange made: every rank's ``describe()`` (``(name, value)``
    pairs) and error, for a message that says who differs and how.  The hash
    of a tuple of ints is Python's own, the same in every process of one
    Python version (``PYTHONHASHSEED`` salts only str and bytes); two
    different signatures collide with probability 2**-62.

    Parameters
    ----------
    lib : mpi4py.MPI.Comm
        The library communicator of the call.
    signature : tuple of int
        Integers that must be equal on every rank.
    local_error : str or None
        This rank's own validation failure.
    describe : callable
        The signature in words, built only when a message is needed.
    """
    h = _FAILED if local_error is not None else hash(signature) & 0x3FFF_FFFF_FFFF_FFFF
    both = lib.check_buf
    both[0], both[1] = h, -h
    lib.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
    if both[0] == -both[1] != _FAILED:
        return
    described = tuple((key, value if isinstance(value, (str, int, float, type(None))) else repr(value))
                      for key, value in describe())  # whatever a careless caller passed, it pickles
    everyone = lib.allgather((described, local_error))
    errors = [f"rank {r}: {e}" for r, (_, e) in enumerate(everyone) if e is not None]
    if errors:
        raise CollectiveError("; ".join(errors))
    first = everyone[0][0]
    for r, (sig, _) in enumerate(everyone):
        if sig != first:
            raise CollectiveError(
                f"ranks disagree on the call: rank 0 has {_describe(first)}, "
                f"rank {r} has {_describe(sig)}; every rank must make the same calls in the same order, "
                "with the same count, dtype, op, algorithm, root and name"
            )
    raise CollectiveError(f"ranks disagree on the call ({_describe(first)}) in a way its description "
                          "does not show; every rank must make the same calls in the same order")


def _describe(sig: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in sig)


def cuda_aware(comm: MPI.Comm | None = None) -> bool:
    """Whether collectives on ``comm`` (default COMM_WORLD) pass device memory to MPI directly.

    True only where every rank's MPI library takes CUDA device memory
    (:mod:`collectives.runtime.cuda_query`); else device arrays are staged
    through pinned host memory.  Collective the first time a communicator
    is used (:func:`library_comm`).
    """
    return library_comm(comm).cuda_aware
