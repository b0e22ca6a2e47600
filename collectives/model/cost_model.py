"""Predicted time of every hand-written collective from a measured :class:`~collectives.model.profile.Profile`.

The model is the textbook one (Hockney, as in Thakur, Rabenseifner and
Gropp 2005), made to follow *our* schedules round by round so that it can
be checked against them and against the clock:

- A collective is a sequence of global rounds (see :mod:`collectives.algorithms.schedule`);
  its time is the sum over rounds of the busiest rank's time in that round,
  plus the algorithm's software overhead per call (:meth:`Profile.overhead`)
  and the API's local copy of the send buffer.
- A rank's round costs ``round_overhead`` plus its messages.  Its receives
  arrive one after another (``L(b) = alpha + beta*b`` each) and each
  reducing receive then costs ``gamma*b`` more: the receiving process does
  the copy and the reduction in turn.  (With no asynchronous progress, as
  in MPICH and Open MPI by default, a large message moves only while its
  receiver sits in an MPI call, so the engine's reduce-while-the-next-
  message-is-in-flight does not overlap much on shared memory; the model
  does not pretend it does.)  Sends go out concurrently with the receives
  (full duplex) and one after another among themselves.  Reductions cost
  what they cost with every rank of the node reducing at once, except the
  naive parameter server's root's, which run while the other ranks wait
  (``Profile.reduce_alone``), and into a buffer of the rank's own, except
  recursive doubling's, which reduce into the range just sent: the peer's
  core has just read it, so every line written must first be taken back
  (``Profile.reduce_sent``).
- Ranks are placed in blocks of ``ranks_per_node`` consecutive ranks.  A
  round whose pattern joins two nodes is charged the inter-node link, and
  when ``f`` ranks of one node send off the node at once they share its
  network port: ``alpha + f*beta*b``.
- Costs are piecewise (:mod:`collectives.model.hockney`): a message's alpha is
  that of the regime its size falls in, and every cost per byte (beta,
  gamma, the copy) that of the regime the collective's working set falls
  in (:func:`footprint`): a 4 MiB block of an 8 MiB all-reduce moves at the
  speed of the cache level or memory that holds 40 MiB, not 4.  The
  exception is the tree's pipeline: a chunk is forwarded right after it
  arrives or is reduced, so its messages move at their own size's speed
  (only its reductions read the cold vector).

A rank that both sends and receives in a round pays the exchange's cost
(``Profile.intra_exchange``), one that only sends or only receives the
one-way cost.  With fewer elements than ranks some blocks are empty, and
the ring, the fans of the sharded parameter server and the halves of
Rabenseifner and recursive halving then move data one way in some rounds
(:func:`~collectives.model.algorithm_costs._duplex_blocks`,
:func:`~collectives.model.algorithm_costs._pair_moves`); so do the double binary
tree's ranks while its pipeline fills and drains.

Non-power-of-two P: recursive doubling, Rabenseifner and the recursive
all-gather pay the MPICH fold (one extra round of ``n`` bytes before, one
after); Bruck pays a last partial round; the ring and the trees pay nothing
extra.  Pipelining: the double binary tree's chunks (``C + 2H - 1`` rounds,
every round charged for its busiest rank across both trees, so the fill and
drain of the pipeline are counted) and the ring's optional segments (more
messages of fewer bytes per round).

``predict(family, "mpi", ...)`` is not defined: the library's own algorithm is
its business.  :func:`predictable` lists the names that are.
"""


from __future__ import annotations

import math

from ..algorithms._fold import pow2_below
from ..runtime import registry
from .algorithm_costs import MODELS
from .profile import Profile
from .round_cost import Cost, Placement

__all__ = ["predict", "predictable", "best", "footprint", "scratch_elements", "Placement"]


def scratch_elements(family: str, algorithm: str, n: int, p: int, itemsize: int = 4) -> int:
    """Most elements of engine scratch one rank holds (its reducing receives in one round).

    The formulas match the schedules to within ``p`` elements or 1 % (tested);
    the all-gathers and broadcasts reduce nothing.
    """
    if p == 1 or family not in ("allreduce", "reduce_scatter"):
        return 0
    block = -(-n // p)
    if algorithm == "naive_ps":
        return (p - 1) * n  # the root takes every other rank's vector in one round
    if algorithm == "sharded_ps":
        return (p - 1) * block
    if algorithm == "ring":
        return block
    if algorithm == "recursive_doubling":
        return n
    if algorithm in ("rabenseifner", "recursive_halving"):
        return n if p != pow2_below(p) else -(-n // 2)  # the fold's whole vector, else the first halving
    if algorithm == "double_binary_tree":
        chunk = max(registry.TREE_CHUNK_BYTES // itemsize, 1) if registry.TREE_CHUNK_BYTES > 0 else n
        return min(-(-n // 2), chunk) * (1 if p <= 3 else 2)  # up to two children per round
    raise KeyError(f"no model for {family} {algorithm!r}")


def footprint(
    family: str, algorithm: str, nbytes: int, p: int, *, ranks_per_node: int | None = None,
    itemsize: int = 4, in_place: bool = False,
) -> int:
    """Bytes one call keeps resident on its fullest node: every rank's buffers and scratch.

    What the bench's repeated calls cycle through, so what decides whether
    the collective runs from cache or from memory.  Per rank: all-reduce,
    the input and (unless ``in_place``) the result; all-gather, the block
    and the result (Bruck also its rotated copy); reduce-scatter, the input,
    its working copy and the result block; broadcast, the buffer.  Plus
    :func:`scratch_elements`, which for the naive parameter server only its
    root holds.
    """
    rpn = Placement(p, ranks_per_node).rpn
    n = nbytes // itemsize
    if family == "allreduce":
        own = n * (1 if in_place else 2)
    elif family == "allgather":
        m = max(n // p, 1)
        own = m + p * m * (2 if algorithm == "bruck" else 1)
    elif family == "reduce_scatter":
        own = 2 * n + -(-n // p)
    else:
        own = n
    scratch = scratch_elements(family, algorithm, n, p, itemsize)
    every = rpn * scratch if algorithm != "naive_ps" else scratch
    return (rpn * own + every) * itemsize


def predictable(family: str) -> tuple[str, ...]:
    """The algorithms of ``family`` that the model predicts (all but ``mpi`` and ``auto``)."""
    return tuple(MODELS[family])


def predict(
    family: str,
    algorithm: str,
    nbytes: int,
    p: int,
    profile: Profile,
    *,
    ranks_per_node: int | None = None,
    itemsize: int = 4,
    in_place: bool = False,
) -> float:
    """Predicted seconds of one call, as ``collectives.bench`` times it.

    Parameters
    ----------
    family : {"allreduce", "allgather", "reduce_scatter", "broadcast"}
    algorithm : str
        A name from :func:`predictable`.
    nbytes : int
        The size ``auto`` and the bench use: the full vector for all-reduce,
        reduce-scatter and broadcast; ``P * m`` elements' bytes for all-gather.
    p : int
        Ranks.
    profile : Profile
        Measured costs; ``Profile.hockney(alpha, beta, gamma)`` gives the
        plain textbook model.
    ranks_per_node : int, optional
        Consecutive ranks per node (default: all on one node).
    itemsize : int
        Bytes per element (block boundaries are whole elements).
    in_place : bool
        All-reduce only: skip the copy of the send buffer into the result.

    Returns
    -------
    float
        Seconds.
    """
    try:
        model = MODELS[family][algorithm]
    except KeyError:
        raise KeyError(f"no model for {family} {algorithm!r}; have {predictable(family)}") from None
    resident = footprint(family, algorithm, nbytes, p, ranks_per_node=ranks_per_node,
                         itemsize=itemsize, in_place=in_place)
    c = Cost(profile, Placement(p, ranks_per_node), resident)
    n = nbytes // itemsize
    if n == 0:
        return 0.0
    overhead = profile.overhead(family, algorithm)
    if p == 1 and family != "allgather":
        return overhead + (0.0 if in_place or family != "allreduce" else c.copy(nbytes))
    if family == "allreduce":
        body = model(c, n, itemsize) + (0.0 if in_place else c.copy(n * itemsize))
    elif family == "allgather":
        m = max(n // p, 1)
        body = c.copy(m * itemsize) + model(c, m, itemsize)
    elif family == "reduce_scatter":
        body = c.copy(n * itemsize) + model(c, n, itemsize) + c.copy(-(-n // p) * itemsize)
    else:
        body = model(c, n, itemsize)
    return overhead + body


def best(
    family: str, nbytes: int, p: int, profile: Profile, *, ranks_per_node: int | None = None,
    itemsize: int = 4,
) -> tuple[str, float]:
    """The algorithm with the least predicted time, and that time (ties: registry order)."""
    times = {
        a: predict(family, a, nbytes, p, profile, ranks_per_node=ranks_per_node, itemsize=itemsize)
        for a in predictable(family)
    }
    name = min(times, key=lambda a: (times[a], predictable(family).index(a)))
    return name, times[name]


def hockney_terms(family: str, algorithm: str, p: int) -> tuple[float, float, float]:
    """Coefficients ``(a, b, g)`` of ``a*alpha + b*n*beta + g*n*gamma`` for a power-of-two P.

    The textbook formulas of the team's shared/DESIGN.md, kept for docs/collectives.md and
    tests: :func:`predict` with ``Profile.hockney`` and in-place all-reduce
    reproduces them for power-of-two P with divisible n.
    """
    lg = math.log2(p)
    f = (p - 1) / p
    table = {
        ("allreduce", "naive_ps"): (2 * (p - 1), 2 * (p - 1), p - 1),
        ("allreduce", "sharded_ps"): (2 * (p - 1), 2 * f, f),
        ("allreduce", "ring"): (2 * (p - 1), 2 * f, f),
        ("allreduce", "recursive_doubling"): (lg, lg, lg),
        ("allreduce", "rabenseifner"): (2 * lg, 2 * f, f),
        ("allgather", "ring"): (p - 1, f, 0),
        ("allgather", "recursive_doubling"): (lg, f, 0),
        ("reduce_scatter", "ring"): (p - 1, f, f),
        ("reduce_scatter", "recursive_halving"): (lg, f, f),
        ("broadcast", "binomial"): (lg, lg, 0),
    }
    return table[(family, algorithm)]
