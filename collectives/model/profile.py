"""A machine profile: the measured costs that :mod:`collectives.model.cost_model` predicts from.

Written by ``python -m collectives.alphabeta --json PATH`` (or ``--save``),
read by ``algorithm="auto"``.  Where ``auto`` looks, first match wins:

1. the file named by the environment variable ``COLLECTIVES_PROFILE``;
2. ``$XDG_CACHE_HOME/collectives/profile.json`` (``~/.cache/...`` when
   ``XDG_CACHE_HOME`` is unset), the default path ``--save`` writes.

With neither, ``auto`` uses its built-in size rule.  ``COLLECTIVES_PROFILE=""``
(set but empty) switches profiles off.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

from .hockney import Piecewise

__all__ = ["Profile", "default_path", "load", "active", "ENV"]

ENV = "COLLECTIVES_PROFILE"
VERSION = 1


@dataclass(frozen=True)
class Profile:
    """Measured costs of one machine (or cluster), all in seconds and bytes.

    Attributes
    ----------
    intra : Piecewise
        Point-to-point message time between two ranks of one node (alpha, beta).
    inter : Piecewise or None
        The same between ranks on different nodes; ``None`` when only one node
        was measured (the cost model then uses ``intra`` for every link).
    reduce : Piecewise
        Time of our reduce kernel (sum, float32) over ``n`` bytes, just after
        an exchange as the engine runs it, every rank of the node reducing
        at once, into a buffer of its own that it has just written and not
        sent (as every algorithm but recursive doubling reduces): slope gamma.
    reduce_sent : Piecewise or None
        The same into the buffer the rank has just sent, which the peer's
        core has just read (recursive doubling reduces into the range it
        sends); ``None``: use ``reduce``.
    copy : Piecewise
        Time of a local memory copy of ``n`` bytes into a buffer just sent
        from (the API's copy of the send buffer into the last call's result).
    intra_exchange, inter_exchange : Piecewise or None
        Time for ``n`` bytes each way when both ranks of a pair send and
        receive at once (posted and waited for as the engine runs a round), as
        in most rounds of our collectives.
        On shared memory the two copies compete for memory bandwidth, so
        this can be well above the ping-pong time.  ``None``: use the one-way cost.
    reduce_alone : Piecewise or None
        ``reduce`` with one rank of the node reducing while the others wait
        (the naive parameter server's root); ``None``: use ``reduce``.
    call_overhead : float
        Software time per collective call outside the rounds (validation,
        dispatch), for an algorithm without its own entry in ``call_overheads``.
    call_overheads : dict
        The same per algorithm, keyed ``"family/algorithm"``: each measured
        from calls with one element per rank, interleaved as programs and the
        bench mix them (see :func:`collectives.alphabeta.local_costs.call_times`).
    round_overhead : float
        Software time per round of the engine, beyond the network latency.
    meta : dict
        Where and how it was measured (hosts, MPI, ranks, date).
    """

    intra: Piecewise
    reduce: Piecewise
    copy: Piecewise
    inter: Piecewise | None = None
    intra_exchange: Piecewise | None = None
    inter_exchange: Piecewise | None = None
    reduce_alone: Piecewise | None = None
    reduce_sent: Piecewise | None = None
    call_overhead: float = 0.0
    round_overhead: float = 0.0
    call_overheads: dict = field(default_factory=dict, hash=False)
    meta: dict = field(default_factory=dict, compare=False)

    def link(self, inter: bool, exchange: bool = False) -> Piecewise:
        """Message cost on an intra-node (``inter=False``) or inter-node link.

        ``exchange``: both ends send and receive at once.  Missing measurements
        fall back: inter-node to intra-node, exchange to one-way.
        """
        if exchange:
            x = self.inter_exchange if inter and self.inter is not None else self.intra_exchange
            if x is not None:
                return x
        return self.inter if inter and self.inter is not None else self.intra

    def overhead(self, family: str, algorithm: str) -> float:
        """Software seconds per call of ``algorithm``: its own, else ``call_overhead``."""
        return self.call_overheads.get(f"{family}/{algorithm}", self.call_overhead)

    @classmethod
    def hockney(cls, alpha: float, beta: float, gamma: float = 0.0, *, inter=None,
                copy: float = 0.0) -> "Profile":
        """A textbook profile: one ``(alpha, beta)`` link, ``gamma`` per reduced byte.

        ``inter`` is an optional ``(alpha, beta)`` pair for links between nodes.
        No software overheads, no copy cost unless given (seconds per byte).
        """
        return cls(
            intra=Piecewise.line(alpha, beta),
            inter=None if inter is None else Piecewise.line(*inter),
            reduce=Piecewise.line(0.0, gamma),
            copy=Piecewise.line(0.0, copy),
        )

    def to_dict(self) -> dict:
        return {
            "version": VERSION,
            "intra": self.intra.to_dict(),
            "inter": None if self.inter is None else self.inter.to_dict(),
            "intra_exchange": None if self.intra_exchange is None else self.intra_exchange.to_dict(),
            "inter_exchange": None if self.inter_exchange is None else self.inter_exchange.to_dict(),
            "reduce": self.reduce.to_dict(),
            "reduce_alone": None if self.reduce_alone is None else self.reduce_alone.to_dict(),
            "reduce_sent": None if self.reduce_sent is None else self.reduce_sent.to_dict(),
            "copy": self.copy.to_dict(),
            "call_overhead": self.call_overhead,
            "round_overhead": self.round_overhead,
            "call_overheads": dict(self.call_overheads),
            "meta": self.meta,
        }

    def costs(self) -> dict[str, float]:
        """Every cost by name (``"intra.segments[0].alpha"``): seconds, or seconds per byte."""
        out = {"call_overhead": self.call_overhead, "round_overhead": self.round_overhead,
               **{f"call_overheads[{k!r}]": v for k, v in self.call_overheads.items()}}
        for name in ("intra", "inter", "intra_exchange", "inter_exchange", "reduce", "reduce_alone",
                     "reduce_sent", "copy"):
            pw = getattr(self, name)
            for i, s in enumerate(pw.segments if pw is not None else ()):
                out[f"{name}.segments[{i}].alpha"] = s.alpha
                out[f"{name}.segments[{i}].beta"] = s.beta
            for n, b in pw.per_byte if pw is not None else ():
                out[f"{name}.per_byte[{n:g}]"] = b
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        """The inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If ``d`` is not a dict of this version, or a cost is NaN, infinite or negative.
        """
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got a {type(d).__name__}")
        if d.get("version") != VERSION:
            raise ValueError(f"profile version {d.get('version')!r}, expected {VERSION}")
        prof = cls(
            intra=Piecewise.from_dict(d["intra"]),
            inter=None if d.get("inter") is None else Piecewise.from_dict(d["inter"]),
            intra_exchange=None if d.get("intra_exchange") is None else Piecewise.from_dict(d["intra_exchange"]),
            inter_exchange=None if d.get("inter_exchange") is None else Piecewise.from_dict(d["inter_exchange"]),
            reduce=Piecewise.from_dict(d["reduce"]),
            reduce_alone=(None if d.get("reduce_alone") is None
                          else Piecewise.from_dict(d["reduce_alone"])),
            reduce_sent=(None if d.get("reduce_sent") is None
                         else Piecewise.from_dict(d["reduce_sent"])),
            copy=Piecewise.from_dict(d["copy"]),
            call_overhead=float(d.get("call_overhead", 0.0)),
            round_overhead=float(d.get("round_overhead", 0.0)),
            call_overheads={str(k): float(v) for k, v in d.get("call_overheads", {}).items()},
            meta=dict(d.get("meta", {})),
        )
        bad = [f"{name} = {value}" for name, value in prof.costs().items()
               if not (math.isfinite(value) and value >= 0)]
        if bad:
            raise ValueError(f"costs must be finite and >= 0 (seconds, or seconds per byte): {', '.join(bad)}")
        return prof

    def fingerprint(self) -> str:
        """A short hash of the numbers (not the metadata): equal on ranks that loaded the same."""
        body = {k: v for k, v in self.to_dict().items() if k != "meta"}
        return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str) -> None:
        """Write as JSON, atomically (a temporary file renamed into place)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)


def default_path() -> str:
    """``$XDG_CACHE_HOME/collectives/profile.json``, or under ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "collectives", "profile.json")


def load(path: str) -> Profile:
    """Read a profile written by ``collectives.alphabeta`` (``--save``, or ``--json``'s file).

    Raises
    ------
    ValueError
        If the file is not a profile of this version, or holds a NaN,
        infinite or negative cost; the message names ``path``.
    """
    with open(path) as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a profile: {e}") from None
    if isinstance(data, dict) and "version" not in data and "profile" in data:
        data = data["profile"]  # the --json output of collectives.alphabeta
    try:
        return Profile.from_dict(data)
    except KeyError as e:
        raise ValueError(f"{path} is not a profile: no field {e}") from None
    except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a profile: {e}") from None


def active() -> tuple[Profile | None, str]:
    """The profile the environment names, read now, and where it came from (``""`` when none).

    :mod:`collectives.runtime.auto` reads it once per process (see
    :func:`collectives.runtime.auto.set_profile`).

    A named but unreadable profile raises ``ValueError``: silently falling
    back would hide a typo in ``COLLECTIVES_PROFILE``.
    """
    path = os.environ.get(ENV)
    if path is not None:
        if path == "":
            return None, ""
        if not os.path.exists(path):
            raise ValueError(f"{ENV}={path!r}: no such file")
    else:
        path = default_path()
        if not os.path.exists(path):
            return None, ""
    return load(path), path
