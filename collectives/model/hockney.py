"""Piecewise Hockney fits: ``T(n) = a + b*n`` on consecutive ranges of ``n``.

One idea, used three times by :mod:`collectives.alphabeta`: a message's
time over the network (``a`` = latency alpha, ``b`` = seconds per byte beta),
our reduce kernel's time (``b`` = gamma) and a memory copy.  Where the cost
changes regime (eager -> rendezvous in MPI, a cache level running out for
the kernels) one straight line fits badly, so :func:`fit` detects the
breakpoints: it finds the best split of the sorted sizes into 1..``max_segments``
contiguous ranges by dynamic programming (segmented least squares) and keeps
the number of segments the Bayesian information criterion prefers, with
residuals below :data:`NOISE_FLOOR` counted as noise.

Residuals are *relative* (weights ``1/T**2``): a prediction off by 10 % is
equally bad at 4 bytes and at 64 MiB, and the small sizes are not drowned
by the large ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

__all__ = ["Segment", "Piecewise", "fit", "fit_line"]

#: rms relative residual treated as a perfect fit when choosing the number of
#: segments: timer and machine noise is about 1 %, so a split that only
#: fits the noise better is not a regime change
NOISE_FLOOR = 0.01


@dataclass(frozen=True)
class Segment:
    """``T(n) = alpha + beta * n`` for ``lo <= n < hi`` bytes (seconds, seconds/byte)."""

    lo: float
    hi: float
    alpha: float
    beta: float

    def time(self, n: float, flows: float = 1.0) -> float:
        """Seconds for ``n`` bytes; ``flows`` messages sharing the link pay ``beta`` each."""
        return self.alpha + flows * self.beta * n


@dataclass(frozen=True)
class Piecewise:
    """A fitted piecewise-linear cost, with its fit quality.

    Attributes
    ----------
    segments : tuple of Segment
        Cover ``[0, inf)`` in order; ``segments[i].hi == segments[i+1].lo``.
    r2 : float
        Coefficient of determination of the fit on the measured times.
    max_rel_residual : float
        Largest ``|fitted - measured| / measured`` over the measured points.
    footprint : float
        Bytes resident on one node per byte of ``n`` while it was measured
        (the measurement's working set, e.g. 6 when two ranks each cycle
        through three ``n``-byte buffers); 0 when unknown.  With it the cost
        of a message can be asked *inside* a larger working set (see
        :meth:`__call__`).
    per_byte : tuple of (float, float)
        The measured sizes and their seconds per byte net of their segment's
        ``alpha``, ascending: what :meth:`__call__` interpolates the cost per
        byte from inside a working set.  Empty: the segments' slopes.
    """

    segments: tuple[Segment, ...]
    r2: float = 1.0
    max_rel_residual: float = 0.0
    footprint: float = 0.0
    per_byte: tuple[tuple[float, float], ...] = ()

    @classmethod
    def line(cls, alpha: float, beta: float) -> "Piecewise":
        """One segment: the plain Hockney model."""
        return cls((Segment(0.0, math.inf, float(alpha), float(beta)),))

    def segment(self, n: float) -> Segment:
        """The segment whose range holds ``n`` bytes."""
        for s in self.segments:
            if n < s.hi:
                return s
        return self.segments[-1]

    def __call__(self, n: float, flows: float = 1.0, resident: float = 0.0) -> float:
        """Predicted seconds for ``n`` bytes (see :meth:`Segment.time`).

        ``resident``: bytes the whole node touches meanwhile (the working set
        of the collective this message belongs to).  Latency follows the
        message's own size (the protocol), but the cost per byte follows
        where the data lives: with a known :attr:`footprint`, it is that of
        the size whose measurement had the same working set,
        ``resident / footprint``.  The message is then as fast or slow as
        the cache level or memory that holds it.

        That cost per byte is interpolated (linearly in ``log n``) between
        the measured sizes of :attr:`per_byte`, clamped at its ends, or
        else is the slope of the segment there.  Between the last cache and
        memory the cost per byte climbs smoothly over a factor of 4 in size
        (dev VM: the reduce kernel's 0.03 ns/B at 2 MiB, 0.06 at 4, 0.11 at
        6, 0.14 at 12), where the segments' straight lines missed the
        measured times by up to 45 %.
        """
        seg = self.segment(n)
        if resident > 0 and self.footprint > 0:
            return seg.alpha + flows * self.cost_per_byte(resident / self.footprint) * n
        return seg.time(n, flows)

    def cost_per_byte(self, n: float) -> float:
        """Seconds per byte at size ``n`` net of latency (see :meth:`__call__`)."""
        if not self.per_byte:
            return self.segment(n).beta
        log_sizes, costs = self._per_byte_table
        return float(np.interp(math.log(max(n, 1.0)), log_sizes, costs))

    @cached_property
    def _per_byte_table(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.log([x for x, _ in self.per_byte]), np.array([b for _, b in self.per_byte]))

    @property
    def alpha(self) -> float:
        """Latency: the intercept of the small-size segment, seconds."""
        return self.segments[0].alpha

    @property
    def beta(self) -> float:
        """Asymptotic cost per byte: the slope of the large-size segment, seconds/byte."""
        return self.segments[-1].beta

    def to_dict(self) -> dict:
        return {
            "segments": [
                {**asdict(s), "hi": None if math.isinf(s.hi) else s.hi} for s in self.segments
            ],
            "r2": self.r2,
            "max_rel_residual": self.max_rel_residual,
            "footprint": self.footprint,
            "per_byte": [list(x) for x in self.per_byte],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Piecewise":
        segs = tuple(
            Segment(float(s["lo"]), math.inf if s["hi"] is None else float(s["hi"]),
                    float(s["alpha"]), float(s["beta"]))
            for s in d["segments"]
        )
        if not segs:
            raise ValueError("a piecewise cost needs at least one segment")
        return cls(segs, float(d.get("r2", 1.0)), float(d.get("max_rel_residual", 0.0)),
                   float(d.get("footprint", 0.0)),
                   tuple((float(n), float(b)) for n, b in d.get("per_byte", ())))


def fit_line(n: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares of ``t = a + b n`` with weights ``1/t**2``.

    Returns ``(a, b, sse)`` where ``sse`` is the sum of squared relative
    residuals.  ``a`` and ``b`` are clamped at 0 (a negative latency or
    bandwidth cost is noise, not physics) and the other is refitted.
    """
    n = np.asarray(n, float)
    t = np.asarray(t, float)
    w = 1.0 / t
    A = np.stack([w, n * w], axis=1)
    y = t * w  # == 1
    if len(t) == 1 or np.ptp(n) == 0:
        a, b = float(np.median(t)), 0.0
    else:
        (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
        if b < 0:
            a, b = float(np.sum(w * w * t) / np.sum(w * w)), 0.0
        elif a < 0:
            a, b = 0.0, float(np.sum(w * w * n * t) / np.sum(w * w * n * n))
    rel = (a + b * n - t) / t
    return float(a), float(b), float(np.sum(rel * rel))


def fit(
    n: Sequence[float], t: Sequence[float], max_segments: int = 4, min_points: int = 3,
    footprint: float = 0.0,
) -> Piecewise:
    """Fit a piecewise Hockney model to measured ``(bytes, seconds)`` points.

    Parameters
    ----------
    n, t : sequences of float
        Sizes in bytes and times in seconds (positive); sorted here.
    max_segments : int
        Upper bound on the number of regimes.
    min_points : int
        Fewest points a segment may hold.
    footprint : float
        Node bytes resident per byte of ``n`` during the measurement
        (:attr:`Piecewise.footprint`).

    Returns
    -------
    Piecewise
        Breakpoints sit halfway (geometrically) between the last size of one
        segment and the first of the next.  With a ``footprint``, every
        measured size above 0 also gives a :attr:`Piecewise.per_byte` point
        (median time per size).
    """
    order = np.argsort(np.asarray(n, float), kind="stable")
    n = np.asarray(n, float)[order]
    t = np.asarray(t, float)[order]
    if len(n) == 0 or np.any(t <= 0):
        raise ValueError("fit needs at least one point and positive times")
    m = len(n)
    max_segments = max(1, min(max_segments, m // max(min_points, 1)))
    # cost[i][j]: sse of one line over points i..j-1
    cost = np.full((m + 1, m + 1), np.inf)
    for i in range(m):
        for j in range(i + min_points, m + 1):
            cost[i, j] = fit_line(n[i:j], t[i:j])[2]
    # best[k][j]: least sse of k segments over points 0..j-1
    best = np.full((max_segments + 1, m + 1), np.inf)
    cut = np.zeros((max_segments + 1, m + 1), int)
    best[0, 0] = 0.0
    for k in range(1, max_segments + 1):
        for j in range(1, m + 1):
            cand = best[k - 1, :j] + cost[:j, j]
            i = int(np.argmin(cand))
            best[k, j], cut[k, j] = cand[i], i
    floor = m * NOISE_FLOOR**2
    bic = [
        m * math.log(max(best[k, m], floor) / m) + (3 * k - 1) * math.log(m)
        if np.isfinite(best[k, m])
        else np.inf
        for k in range(1, max_segments + 1)
    ]
    k = int(np.argmin(bic)) + 1
    bounds = [m]
    for kk in range(k, 0, -1):
        bounds.append(cut[kk, bounds[-1]])
    bounds = bounds[::-1]  # 0 = b0 < b1 < ... < bk = m
    segs = []
    for s in range(k):
        i, j = bounds[s], bounds[s + 1]
        a, b, _ = fit_line(n[i:j], t[i:j])
        lo = 0.0 if s == 0 else math.sqrt(max(n[i - 1], 1.0) * max(n[i], 1.0))
        hi = math.inf if s == k - 1 else math.sqrt(max(n[j - 1], 1.0) * max(n[j], 1.0))
        segs.append(Segment(lo, hi, a, b))
    model = Piecewise(tuple(segs))
    pred = np.array([model(x) for x in n])
    rel = np.abs(pred - t) / t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum((pred - t) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    per_byte = ()
    if footprint > 0:
        sizes = np.unique(n[n > 0])
        per_byte = tuple(
            (float(x), max(float(np.median(t[n == x])) - model.segment(x).alpha, 0.0) / float(x))
            for x in sizes
        )
    return Piecewise(model.segments, r2, float(rel.max()), float(footprint), per_byte)
