"""Halo geometry (pure) and the halo exchange and its adjoint over MPI, one dimension after another.

A convolution of kernel ``k``, stride ``s`` and zero padding ``p`` maps
``n`` input rows to ``n_out = (n + 2p - k) // s + 1`` output rows.  Split
over ``P`` ranks, each rank owns a block of the input rows and computes a
block of the output rows (both cut by
:func:`collectives.algorithms.schedule.partition`: the first ranks hold one
more).  Output rows ``[a, b)`` need input rows ``[a·s - p, (b-1)·s - p + k)``:
those outside ``[0, n)`` are the zero padding, those another rank owns are
the halo, received from it, and owned rows nobody on this rank needs are
left out.  As DistDL's ``halo_mixin`` does, the geometry is computed for
any split, so a tile thinner than the halo takes rows from ranks further
away: :func:`axis_geometry` intersects this rank's needs with every rank's
ownership, no neighbour assumed.

A 2-D tile exchanges its rows first (with the ranks of its grid column),
then its columns (with the ranks of its grid row), the column slices
including the ghost rows the first exchange brought (not the padding,
which every rank fills with zeros itself), so the corners arrive without
diagonal messages.  The adjoint runs the same messages backwards,
in reverse order: each ghost's gradient goes back to its owner, who adds
it into its own rows; the padding's gradient is dropped.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

import numpy as np
from mpi4py import MPI

from collectives.algorithms.schedule import Recv, Round, Send, partition
from collectives.runtime.engine import execute

__all__ = ["AxisGeometry", "output_size", "axis_geometry", "HaloExchange"]


class AxisGeometry(NamedTuple):
    """One rank's view of one split dimension (global indices, ``[lo, hi)`` ranges).

    Attributes
    ----------
    owned : (int, int)
        The input rows this rank holds.
    needed : (int, int)
        The input rows its output needs, padding included (may reach below 0 or past ``n``).
    out : (int, int)
        The output rows it computes.
    recv : tuple of (peer, lo, hi)
        Input rows it receives, from which rank (inside ``[0, n)``, not its own).
    send : tuple of (peer, lo, hi)
        Its own rows that another rank needs.
    """

    owned: tuple[int, int]
    needed: tuple[int, int]
    out: tuple[int, int]
    recv: tuple[tuple[int, int, int], ...]
    send: tuple[tuple[int, int, int], ...]

    def inside(self) -> tuple[int, int]:
        """The needed rows inside the image (not padding): this rank's own and the received ones."""
        ends = [(max(self.needed[0], self.owned[0]), min(self.needed[1], self.owned[1]))]
        ends = [e for e in ends if e[0] < e[1]] + [(a, b) for _, a, b in self.recv]
        return min(a for a, _ in ends), max(b for _, b in ends)


def output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output rows of a convolution over ``n`` input rows."""
    return (n + 2 * padding - kernel) // stride + 1


def axis_geometry(n: int, parts: int, kernel: int, stride: int = 1, padding: int = 0) -> list[AxisGeometry]:
    """Every rank's geometry along one dimension of ``n`` rows cut over ``parts`` ranks.

    Raises
    ------
    ValueError
        For a kernel, stride or padding out of range, or more ranks than
        input or output rows (a rank would hold or compute nothing).
    """
    if kernel < 1 or stride < 1 or padding < 0 or padding >= kernel:
        raise ValueError(f"kernel {kernel}, stride {stride}, padding {padding}: need kernel >= 1, stride >= 1 "
                         "and 0 <= padding < kernel")
    n_out = output_size(n, kernel, stride, padding)
    if n_out < 1:
        raise ValueError(f"a kernel of {kernel} with padding {padding} does not fit in {n} rows")
    if parts > min(n, n_out):
        raise ValueError(f"{parts} ranks cannot split {n} input rows ({n_out} output rows): every rank needs "
                         "at least one of each; use fewer ranks on this dimension or a larger image")
    owned, out = partition(n, parts), partition(n_out, parts)
    needed = [(out[r] * stride - padding, (out[r + 1] - 1) * stride - padding + kernel) for r in range(parts)]
    geometry = []
    for r in range(parts):
        lo, hi = max(needed[r][0], 0), min(needed[r][1], n)
        recv = tuple((q, max(lo, owned[q]), min(hi, owned[q + 1])) for q in range(parts)
                     if q != r and max(lo, owned[q]) < min(hi, owned[q + 1]))
        send = tuple((q, max(needed[q][0], owned[r]), min(needed[q][1], owned[r + 1])) for q in range(parts)
                     if q != r and max(needed[q][0], owned[r]) < min(needed[q][1], owned[r + 1]))
        geometry.append(AxisGeometry((owned[r], owned[r + 1]), needed[r], (out[r], out[r + 1]), recv, send))
    return geometry


class HaloExchange:
    """The halo exchange of one tile over a grid of ``len(comms)`` split dimensions, and its adjoint.

    Parameters
    ----------
    geometry : sequence of AxisGeometry
        This rank's geometry along each split dimension, in exchange order.
    axes : sequence of int
        The array axis of each (2 and 3 for ``(N, C, H, W)`` rows and columns).
    comms : sequence of mpi4py.MPI.Comm
        For each dimension, the ranks along it (rank ``q`` of the comm is
        part ``q`` of that dimension's split).

    Attributes
    ----------
    seconds : float
        Time spent in :meth:`forward` and :meth:`adjoint` messages so far.
    """

    def __init__(self, geometry, axes, comms):
        self.geometry, self.axes, self.comms = list(geometry), list(axes), list(comms)
        self.seconds = 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """This rank's owned tile ``x`` → the tile of every row and column its output needs, padding zero."""
        for i in range(len(self.geometry)):
            x = self._one(x, i)
        return x

    def adjoint(self, d: np.ndarray) -> np.ndarray:
        """The gradient of the needed tile → that of the owned tile (ghosts' gradients summed into their owners)."""
        for i in reversed(range(len(self.geometry))):
            d = self._one_adjoint(d, i)
        return d

    def _indexer(self, ndim: int, i: int):
        """``at(a, b)``: rows ``[a, b)`` along dimension ``i``, and along the dimensions exchanged before it their
        rows inside the image (the padding stays local, never sent)."""
        inner = [slice(None)] * ndim
        for j in range(i):
            g = self.geometry[j]
            lo, hi = g.inside()
            inner[self.axes[j]] = slice(lo - g.needed[0], hi - g.needed[0])

        def at(a: int, b: int) -> tuple:
            index = list(inner)
            index[self.axes[i]] = slice(a, b)
            return tuple(index)

        return at

    def _one(self, x: np.ndarray, i: int) -> np.ndarray:
        g, axis, comm = self.geometry[i], self.axes[i], self.comms[i]
        (olo, ohi), (lo, hi) = g.owned, g.needed
        at = self._indexer(x.ndim, i)
        out = np.zeros(_resized(x.shape, axis, hi - lo), x.dtype)
        a, b = max(lo, olo), min(hi, ohi)
        if a < b:
            out[at(a - lo, b - lo)] = x[at(a - olo, b - olo)]
        into = [out[at(a - lo, b - lo)] for _, a, b in g.recv]
        incoming = self._exchange(comm, [q for q, _, _ in g.recv], [v.shape for v in into],
                                  [q for q, _, _ in g.send], [x[at(a - olo, b - olo)] for _, a, b in g.send], x.dtype)
        for view, buf in zip(into, incoming):
            view[...] = buf
        return out

    def _one_adjoint(self, d: np.ndarray, i: int) -> np.ndarray:
        g, axis, comm = self.geometry[i], self.axes[i], self.comms[i]
        (olo, ohi), (lo, hi) = g.owned, g.needed
        at = self._indexer(d.ndim, i)
        dx = np.zeros(_resized(d.shape, axis, ohi - olo), d.dtype)
        a, b = max(lo, olo), min(hi, ohi)
        if a < b:
            dx[at(a - olo, b - olo)] += d[at(a - lo, b - lo)]
        into = [dx[at(a - olo, b - olo)] for _, a, b in g.send]
        back = self._exchange(comm, [q for q, _, _ in g.send], [v.shape for v in into],
                              [q for q, _, _ in g.recv], [d[at(a - lo, b - lo)] for _, a, b in g.recv], d.dtype)
        for view, buf in zip(into, back):
            view += buf
        return dx

    def _exchange(self, comm: MPI.Comm, sources, shapes, dests, data, dtype) -> list[np.ndarray]:
        """Send ``data[j]`` to ``dests[j]`` and receive arrays of ``shapes[i]`` from ``sources[i]``, all at once.

        One round of the collectives' engine (compiled where it can be):
        the outgoing pieces are copied into one buffer, the incoming land
        after them, and the received arrays are views of it.
        """
        t = time.perf_counter()
        at = tuple(accumulate([v.size for v in data] + [math.prod(shape) for shape in shapes], initial=0))
        arena = np.empty(at[-1], dtype)
        for j, piece in enumerate(data):
            arena[at[j] : at[j + 1]].reshape(piece.shape)[...] = piece
        execute(_round(tuple(dests), tuple(sources), at), arena, comm)
        first = len(data)
        self.seconds += time.perf_counter() - t
        return [arena[at[first + i] : at[first + i + 1]].reshape(shape) for i, shape in enumerate(shapes)]


@lru_cache(maxsize=1024)
def _round(dests: tuple, sources: tuple, at: tuple) -> tuple[Round, ...]:
    """The exchange as one engine round: send piece ``j`` to ``dests[j]``, receive the pieces after them."""
    first = len(dests)
    return (Round(sends=tuple(Send(q, at[j], at[j + 1]) for j, q in enumerate(dests)),
                  recvs=tuple(Recv(q, at[first + i], at[first + i + 1]) for i, q in enumerate(sources))),)


def _resized(shape, axis: int, n: int) -> tuple:
    shape = list(shape)
    shape[axis] = n
    return tuple(shape)
