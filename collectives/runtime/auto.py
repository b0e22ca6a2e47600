"""``algorithm="auto"``: the least predicted time under a measured profile, else a size rule.

With a profile (see :mod:`collectives.model.profile` for where it is looked up;
``python -m collectives.alphabeta --save`` writes one), ``auto`` runs the
algorithm that :func:`collectives.model.cost_model.best` predicts fastest for the
message size, the rank count and the ranks per node.  Decisions are cached
per (family, bytes, P, ranks per node, item size) until :func:`set_profile`
(see :func:`decisions`).

Without one, the built-in rule follows the textbook crossovers (Thakur,
Rabenseifner and Gropp 2005), checked against ``python -m collectives.bench``
at P=2 (2-core dev machine, MPICH) and P=16 (16-core GPU box, Open MPI):
there Rabenseifner beats the ring up to 2 MiB and the ring wins from 4 MiB.

The profile is read once per process, at the first decision (or the first
communicator's creation), and kept: :func:`set_profile` with no argument
reads it again.  Looking it up on every call (an environment variable, a
path, a ``stat``) cost 10 us per call on the dev VM, a quarter of a small
all-reduce, and a file rewritten during a run could have sent ranks that
re-read it at different moments down different schedules.

Every rank must decide alike, or the ranks run different schedules and
hang: :func:`collectives.runtime.communicator.library_comm` checks, on a communicator's
first use, that all ranks hold the same profile.
"""

from __future__ import annotations

from ..model import cost_model
from ..model.profile import Profile, active

__all__ = ["choose", "decisions", "set_profile", "current_profile", "profile_fingerprint"]

SMALL = 16 * 1024  # bytes: latency-bound below this
LARGE = 512 * 1024  # bytes: bandwidth-bound above this
RING = 4 << 20  # bytes: all-reduce switches from Rabenseifner to the ring

_UNSET = object()
_override = _UNSET  # set_profile's argument, or the profile read from the environment
_decisions: dict[tuple, dict] = {}  # (p, ranks per node) -> {(family, nbytes, itemsize): name}


def decisions(p: int, ranks_per_node: int | None) -> dict:
    """The decisions :func:`choose` has made for ``p`` ranks, ``ranks_per_node`` to a node.

    ``{(family, nbytes, itemsize): algorithm}``, emptied in place by
    :func:`set_profile`, so a reference stays valid.  Each library
    communicator keeps its own (:func:`collectives.runtime.communicator.library_comm`) and
    the API looks a call up there before calling :func:`choose`: ``auto``'s
    dispatch is on every call's path, where in a mix of collectives each
    Python step costs three to four times what it costs in a loop (dev VM,
    P = 2, 256 B: 0.9-1.5 us, against 0.3-0.4 us for a named algorithm's,
    when the lookup went through :func:`choose`; a call with ``auto`` then
    took 1.1-1.2 us more than one naming the algorithm it ran, now
    0.55-0.64).
    """
    table = _decisions.get((p, ranks_per_node))
    if table is None:
        table = _decisions[(p, ranks_per_node)] = {}
    return table


def set_profile(profile: Profile | None | object = _UNSET) -> None:
    """Use ``profile`` for ``auto`` in this process (``None``: the built-in rule).

    Called with no argument, read the environment variable and default path
    again (at the next decision).  Call it alike on every rank.
    """
    global _override
    _override = profile
    for table in _decisions.values():
        table.clear()
    from .communicator import forget_repeats  # a repeated call with "auto" keeps the old choice

    forget_repeats()


def current_profile() -> Profile | None:
    """The profile ``auto`` decides with, or None for the built-in rule.

    Raises
    ------
    ValueError
        If ``COLLECTIVES_PROFILE`` names a file that is missing or not a
        profile (asked again at the next call).
    """
    global _override
    if _override is _UNSET:
        _override = active()[0]
    return _override  # type: ignore[return-value]


def profile_fingerprint() -> str:
    """Fingerprint of :func:`current_profile` (``""`` for none, an error text if unreadable)."""
    try:
        prof = current_profile()
    except (OSError, ValueError) as e:
        return f"unreadable profile: {e}"
    return "" if prof is None else prof.fingerprint()


def builtin(family: str, nbytes: int, p: int) -> str:
    """The size and rank-count rule used when no profile is available."""
    if family == "allreduce":
        if nbytes <= SMALL or p < 4 and nbytes < LARGE:
            return "recursive_doubling"
        return "rabenseifner" if nbytes < RING else "ring"
    if family == "allgather":
        return "bruck" if nbytes <= SMALL else "ring"
    if family == "reduce_scatter":
        return "recursive_halving" if nbytes < LARGE else "ring"
    if family == "broadcast":
        return "binomial" if nbytes < LARGE or p < 4 else "scatter_allgather"
    raise KeyError(family)


def choose(family: str, nbytes: int, p: int, *, ranks_per_node: int | None = None,
           itemsize: int = 4) -> str:
    """The algorithm ``auto`` runs for ``nbytes`` (the full vector) on ``p`` ranks.

    Parameters
    ----------
    family : str
        ``"allreduce"``, ``"allgather"``, ``"reduce_scatter"`` or ``"broadcast"``.
    nbytes : int
        The full vector's bytes (all-gather: the gathered result).
    p : int
        Ranks.
    ranks_per_node : int, optional
        Ranks per node (default: all on one node).
    itemsize : int
        Bytes per element.
    """
    table = decisions(p, ranks_per_node)
    key = (family, nbytes, itemsize)
    name = table.get(key)
    if name is None:
        prof = current_profile()
        if prof is None or nbytes < itemsize:
            name = builtin(family, nbytes, p)
        else:
            name = cost_model.best(family, nbytes, p, prof, ranks_per_node=ranks_per_node,
                                   itemsize=itemsize)[0]
        if len(table) > 4096:
            table.clear()
        table[key] = name
    return name
