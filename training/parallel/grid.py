"""The process grid: ranks row-major over (pipeline, data, spatial, tensor), one comm per axis.

The order is MPI's: a Cartesian topology numbers ranks row-major, the last axis varying
fastest.  Axes are ordered by how much traffic they carry, the heaviest last, so that its
groups are runs of consecutive ranks, which mpiexec and Slurm place on one node by default:

- ``tensor`` (fastest): all-gathers and all-reduces of activations in every layer, forward and
  backward, on the critical path;
- ``spatial``: a halo exchange in every convolution, also on the critical path;
- ``data``: one all-reduce of the gradients per step, overlapped with backward;
- ``pipeline`` (slowest): point-to-point activations between neighbouring stages only.

Megatron-LM numbers its groups the same way (``tp-cp-dp-pp``: tensor fastest, then context,
the sequence analogue of our spatial axis, then data, pipeline slowest), and so does
DeepSpeed (``pipe, data, model``).  Eight ranks as data 2 × tensor 4 give tensor groups
[[0, 1, 2, 3], [4, 5, 6, 7]] and data groups [[0, 4], [1, 5], [2, 6], [3, 7]].

The rank tables (:func:`coords`, :func:`rank_of`, :func:`groups`) and :class:`Layout` are pure
arithmetic; :class:`ProcessGrid` builds the same grid with ``Create_cart`` and ``Sub``.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

AXES = ("pipeline", "data", "spatial", "tensor")

__all__ = ["AXES", "Layout", "ProcessGrid", "coords", "groups", "rank_of"]


def coords(rank: int, dims) -> tuple[int, ...]:
    """The coordinates of ``rank`` in a row-major grid.

    Parameters
    ----------
    rank : int
        ``0 <= rank < prod(dims)``.
    dims : sequence of int
        The degree of each axis, slowest first (a :attr:`Layout.dims`, or any other).

    Returns
    -------
    tuple of int
        One coordinate per axis; the last varies fastest as ``rank`` grows.
    """
    size = math.prod(dims)
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a grid {tuple(dims)} of {size} ranks")
    out = []
    for d in reversed(dims):
        rank, c = divmod(rank, d)
        out.append(c)
    return tuple(reversed(out))


def rank_of(coords, dims) -> int:
    """The rank at ``coords`` in a row-major grid, the inverse of :func:`coords`.

    Parameters
    ----------
    coords : sequence of int
        One coordinate per axis, ``0 <= coords[i] < dims[i]``.
    dims : sequence of int
        The degree of each axis, slowest first.

    Returns
    -------
    int
    """
    if len(coords) != len(dims) or not all(0 <= c < d for c, d in zip(coords, dims)):
        raise ValueError(f"coordinates {tuple(coords)} are outside a grid {tuple(dims)}")
    rank = 0
    for c, d in zip(coords, dims):
        rank = rank * d + c
    return rank


def groups(dims, axis) -> list[list[int]]:
    """The ranks of every group along ``axis``: those that differ only in that coordinate.

    Parameters
    ----------
    dims : sequence of int
        The degree of each axis, slowest first.
    axis : int or str
        An index into ``dims``, or a name from :data:`AXES` when ``dims`` has one entry per name.

    Returns
    -------
    list of list of int
        One list per group, ordered by its first rank; within a group, ranks are in the order of
        their coordinate along ``axis``, which is the order of ranks in the axis communicator.
    """
    if isinstance(axis, str):
        if axis not in AXES or len(dims) != len(AXES):
            raise ValueError(f"axis {axis!r} names no axis of a grid {tuple(dims)}: "
                             f"the names {AXES} need 4 degrees")
        axis = AXES.index(axis)
    if not 0 <= axis < len(dims):
        raise ValueError(f"axis {axis} is outside a grid {tuple(dims)}")
    out = []
    for rank in range(math.prod(dims)):
        c = coords(rank, dims)
        if c[axis] == 0:
            out.append([rank_of(c[:axis] + (i,) + c[axis + 1:], dims) for i in range(dims[axis])])
    return out


@dataclass(frozen=True)
class Layout:
    """The degree of each axis for ``p`` ranks; ``data`` defaults to whatever the others leave.

    ``Layout(8, tensor=4)`` is data 2 × tensor 4; ``Layout(p)`` is pure data parallelism.

    Parameters
    ----------
    p : int
        The number of ranks.
    data, pipeline, spatial, tensor : int, optional
        Degrees, each at least 1 (1 leaves the axis unsplit).  Without ``data``, it is ``p``
        divided by the product of the others; with it, all four must multiply to ``p``.

    Raises
    ------
    ValueError
        For a degree below 1, or degrees that do not divide ``p``.
    TypeError
        For a degree that is not an integer.
    """

    p: int
    _: KW_ONLY
    data: int | None = None
    pipeline: int = 1
    spatial: int = 1
    tensor: int = 1

    def __post_init__(self):
        given = {a: getattr(self, a) for a in AXES if getattr(self, a) is not None}
        split = ", ".join(f"{a}={v}" for a, v in given.items() if v != 1)
        asked = f"P={self.p}" + (f" with {split}" if split else "")
        for name, v in [("P", self.p), *given.items()]:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{asked}: {name} must be an integer, got {type(v).__name__}")
            if v < 1:
                why = ("a grid needs at least one rank" if name == "P"
                       else "every degree is at least 1 (1 leaves the axis unsplit)")
                raise ValueError(f"{asked}: {name}={v} is below 1; {why}")
        others = math.prod(v for a, v in given.items() if a != "data")
        if self.data is None:
            if self.p % others:
                raise ValueError(f"{asked}: the degrees other than data multiply to {others}, "
                                 f"which does not divide P; choose degrees whose product divides "
                                 f"{self.p}")
            object.__setattr__(self, "data", self.p // others)
        elif others * self.data != self.p:
            raise ValueError(f"{asked}: the degrees multiply to {others * self.data}, not P; "
                             "leave data out to get P divided by the others")

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """The degrees in :data:`AXES` order, as ``Create_cart`` takes them."""
        return tuple(getattr(self, a) for a in AXES)


class ProcessGrid:
    """``comm``'s ranks as a Cartesian grid of ``layout``, with one communicator per axis.

    ``grid.data``, ``grid.pipeline``, ``grid.spatial`` and ``grid.tensor`` (or ``grid.comm(name)``)
    hold this rank's group along each axis, its members ranked by their coordinate on that axis,
    as :func:`groups` lists them.  Built with ``reorder=False``, so ``grid.rank`` is the rank in
    ``comm``.  Collective: every rank of ``comm`` constructs it with the same layout, and frees it.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        Of ``layout.p`` ranks.  The grid communicates on new communicators, never on ``comm``.
    layout : Layout

    Attributes
    ----------
    layout : Layout
    cart : mpi4py.MPI.Cartcomm
        The whole grid.
    rank : int
    coords : tuple of int
        This rank's coordinates, in :data:`AXES` order; equal to ``coords(rank, layout.dims)``.
    """

    def __init__(self, comm, layout: Layout):
        if comm.Get_size() != layout.p:
            raise ValueError(f"the communicator has {comm.Get_size()} ranks but the layout "
                             f"{layout} is for P={layout.p}; build the layout from comm.Get_size()")
        self.layout = layout
        self.cart = comm.Create_cart(layout.dims, periods=[False] * len(AXES), reorder=False)
        self.rank = self.cart.Get_rank()
        self.coords = tuple(self.cart.Get_coords(self.rank))
        self.pipeline, self.data, self.spatial, self.tensor = (
            self.cart.Sub([b == a for b in AXES]) for a in AXES)

    def comm(self, axis: str):
        """The communicator of this rank's group along ``axis``, a name from :data:`AXES`."""
        if axis not in AXES:
            raise ValueError(f"no axis {axis!r}: the axes are {AXES}")
        return getattr(self, axis)

    def free(self) -> None:
        """Free the axis communicators and the grid (collective)."""
        for a in AXES:
            getattr(self, a).Free()
        self.cart.Free()
