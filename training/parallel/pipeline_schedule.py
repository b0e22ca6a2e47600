"""Pipeline schedules as pure data: which micro-batch each stage computes when, and the messages between stages.

Three steps, none of which touches MPI:

1. a schedule (:func:`gpipe`, :func:`one_f_one_b`) lists, per stage, the
   order of its forward (``F m``) and backward (``B m``) passes over the
   ``M`` micro-batches of a step;
2. :func:`lower` inserts the point-to-point messages around them: a
   stage receives micro-batch ``m``'s activation from the stage before it
   ahead of ``F m`` and sends its own to the stage after; it receives the
   gradient from the stage after ahead of ``B m`` and sends its input's
   gradient back;
3. :func:`simulate` executes every stage's lowered list at once, sends
   non-blocking (as ``Isend``) and receives blocking, with any durations
   (one slot per pass by default, or measured seconds and the profile's
   α + β·bytes per message, which is the prediction of a step's time).  It
   detects a deadlock, counts each stage's idle time and the peak number
   of micro-batches whose activations a stage holds.

:mod:`training.parallel.pipeline` runs the same lowered lists over MPI.

With one slot per pass both schedules take ``2(M+S-1)`` slots, of which
each stage is idle ``2(S-1)``: the bubble, ``(S-1)/(M+S-1)`` of the step.
GPipe (Huang et al. 2019) runs every forward and then every backward, so
each stage holds all ``M`` micro-batches' activations; 1F1B
(PipeDream-Flush, Narayanan et al. 2021) starts ``min(S-1-r, M)``
forwards on stage ``r`` and then alternates, so it holds at most
``min(S-r, M)``.  Backward passes run in micro-batch order in both, as
PyTorch's ``ScheduleGPipe`` and ``Schedule1F1B`` run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

__all__ = ["Op", "SCHEDULES", "clock_cycles", "gpipe", "one_f_one_b", "lower", "simulate", "Simulation",
           "Deadlock", "bubble_fraction", "check"]

FORWARD, BACKWARD = "forward", "backward"
SEND_ACT, RECV_ACT, SEND_GRAD, RECV_GRAD = "send_act", "recv_act", "send_grad", "recv_grad"
COMPUTE = (FORWARD, BACKWARD)
SENDS = (SEND_ACT, SEND_GRAD)
RECVS = (RECV_ACT, RECV_GRAD)


class Op(NamedTuple):
    """One step of a stage's list: a pass over micro-batch ``micro``, or a message of it to or from ``peer``.

    ``str(op)`` is the short form the tests' tables use: ``F0``, ``B0``,
    ``recv a0<0`` (micro-batch 0's activation from stage 0), ``send a0>1``,
    ``recv g0<1`` (its gradient from stage 1), ``send g0>0``.
    """

    kind: str
    micro: int
    peer: int | None = None

    def __str__(self) -> str:
        if self.kind in COMPUTE:
            return f"{self.kind[0].upper()}{self.micro}"
        what = "a" if self.kind in (SEND_ACT, RECV_ACT) else "g"
        return (f"send {what}{self.micro}>{self.peer}" if self.kind in SENDS
                else f"recv {what}{self.micro}<{self.peer}")


def check(stages: int, micro_batches: int) -> None:
    """Raise ValueError unless there is at least one stage and one micro-batch."""
    for name, v in (("stages", stages), ("micro-batches", micro_batches)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"a pipeline needs at least one of its {name}, got {v!r}")


def clock_cycles(micro_batches: int, stages: int) -> list[list[tuple[int, int]]]:
    """torchgpipe's clock cycles: in cycle ``k``, partition ``j`` runs micro-batch ``i = k - j``.

    The forward half of GPipe as a wavefront; ``clock_cycles(3, 3)`` is
    ``[[(0,0)], [(1,0),(0,1)], [(2,0),(1,1),(0,2)], [(2,1),(1,2)], [(2,2)]]``
    (pairs ``(micro-batch, partition)``), as ``torchgpipe.pipeline.clock_cycles(m, n)``.
    """
    check(stages, micro_batches)
    m, n = micro_batches, stages
    return [[(k - j, j) for j in range(max(1 + k - m, 0), min(1 + k, n))] for k in range(m + n - 1)]


def gpipe(stages: int, micro_batches: int) -> list[list[Op]]:
    """GPipe: on every stage, the forwards of micro-batches ``0 .. M-1``, then their backwards in the same order.

    Parameters
    ----------
    stages, micro_batches : int
        ``S`` and ``M``, each at least 1.

    Returns
    -------
    list of list of Op
        Per stage, its passes in order (no messages; see :func:`lower`).
    """
    check(stages, micro_batches)
    passes = [Op(FORWARD, m) for m in range(micro_batches)] + [Op(BACKWARD, m) for m in range(micro_batches)]
    return [list(passes) for _ in range(stages)]


def one_f_one_b(stages: int, micro_batches: int) -> list[list[Op]]:
    """1F1B (PipeDream-Flush): ``min(S-1-r, M)`` warm-up forwards on stage ``r``, then one forward, one backward.

    Parameters
    ----------
    stages, micro_batches : int
        ``S`` and ``M``, each at least 1.

    Returns
    -------
    list of list of Op
        Per stage, its passes in order: the warm-up forwards, the steady
        state alternating ``F(w+i), B(i)``, and the remaining backwards.
    """
    check(stages, micro_batches)
    out = []
    for r in range(stages):
        warm = min(stages - 1 - r, micro_batches)
        ops = [Op(FORWARD, m) for m in range(warm)]
        for i in range(micro_batches - warm):
            ops += [Op(FORWARD, warm + i), Op(BACKWARD, i)]
        ops += [Op(BACKWARD, m) for m in range(micro_batches - warm, micro_batches)]
        out.append(ops)
    return out


#: The schedules ``--schedule`` names.
SCHEDULES: dict[str, Callable[[int, int], list[list[Op]]]] = {"gpipe": gpipe, "1f1b": one_f_one_b}


def lower(schedule: list[list[Op]]) -> list[list[Op]]:
    """Insert the messages: each stage's passes with its receives before and its sends after them.

    Stage ``r`` receives micro-batch ``m``'s activation from ``r-1`` before
    ``F m`` and sends its output to ``r+1`` after; it receives the output's
    gradient from ``r+1`` before ``B m`` and sends its input's gradient to
    ``r-1`` after.  The first stage reads its input and the last computes
    the loss, so neither talks past the ends: ``2(S-1)·M`` messages a step.
    """
    last = len(schedule) - 1
    out = []
    for r, passes in enumerate(schedule):
        ops = []
        for op in passes:
            if op.kind == FORWARD:
                ops += [Op(RECV_ACT, op.micro, r - 1)] if r > 0 else []
                ops += [op] + ([Op(SEND_ACT, op.micro, r + 1)] if r < last else [])
            else:
                ops += [Op(RECV_GRAD, op.micro, r + 1)] if r < last else []
                ops += [op] + ([Op(SEND_GRAD, op.micro, r - 1)] if r > 0 else [])
        out.append(ops)
    return out


class Deadlock(RuntimeError):
    """Every stage that has work left waits on a receive that no stage has sent, or will send."""


@dataclass
class Simulation:
    """What :func:`simulate` found.

    Attributes
    ----------
    start, end : list of list of float
        Per stage, when each op of its lowered list started and ended
        (a receive starts when the stage reaches it and ends when the
        message has arrived).
    busy : list of float
        Per stage, the time spent in passes.
    makespan : float
        When the last op of any stage ended: the step's time.
    peak_stash : list of int
        Per stage, the most micro-batches forwarded and not yet backwarded at once.
    messages : int
        Sends, over all stages.
    """

    start: list[list[float]] = field(default_factory=list)
    end: list[list[float]] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    makespan: float = 0.0
    peak_stash: list[int] = field(default_factory=list)
    messages: int = 0

    def idle(self, stage: int) -> float:
        """Time stage ``stage`` spends outside passes within the step: ``makespan - busy``."""
        return self.makespan - self.busy[stage]


def _unit(stage: int, op: Op) -> float:
    return 1.0 if op.kind in COMPUTE else 0.0


def simulate(lowered: list[list[Op]], duration: Callable[[int, Op], float] = _unit) -> Simulation:
    """Run every stage's lowered list; sends do not block, receives wait for their message.

    Parameters
    ----------
    lowered : list of list of Op
        Per stage, as :func:`lower` returns.
    duration : callable ``(stage, op) -> float``
        How long ``op`` takes on ``stage``.  For a pass, the stage is busy
        that long; for a send, it is the message's time in flight (the
        sender goes on at once); receives take no time of their own.  The
        default: one slot per pass, messages instantaneous.

    Returns
    -------
    Simulation

    Raises
    ------
    Deadlock
        When every unfinished stage waits on a receive with no matching
        send executed (the message names each stage's blocked receive).
    ValueError
        When a message is sent and never received, or sent twice.
    """
    n = len(lowered)
    sim = Simulation(start=[[] for _ in range(n)], end=[[] for _ in range(n)], busy=[0.0] * n,
                     peak_stash=[0] * n)
    clock, pos, stash = [0.0] * n, [0] * n, [0] * n
    arrived: dict[tuple[int, int, str, int], float] = {}  # (from, to, act or grad, micro) -> arrival
    received = set()
    while any(pos[r] < len(lowered[r]) for r in range(n)):
        moved = False
        for r in range(n):
            while pos[r] < len(lowered[r]):
                op = lowered[r][pos[r]]
                t = clock[r]
                if op.kind in RECVS:
                    key = (op.peer, r, "act" if op.kind == RECV_ACT else "grad", op.micro)
                    if key not in arrived:
                        break
                    received.add(key)
                    clock[r] = max(t, arrived[key])
                elif op.kind in SENDS:
                    key = (r, op.peer, "act" if op.kind == SEND_ACT else "grad", op.micro)
                    if key in arrived:
                        raise ValueError(f"stage {r} sends {op} twice")
                    arrived[key] = t + duration(r, op)
                    sim.messages += 1
                else:
                    d = duration(r, op)
                    clock[r] = t + d
                    sim.busy[r] += d
                    stash[r] += 1 if op.kind == FORWARD else -1
                    sim.peak_stash[r] = max(sim.peak_stash[r], stash[r])
                sim.start[r].append(t)
                sim.end[r].append(clock[r])
                pos[r] += 1
                moved = True
        if not moved:
            waits = "; ".join(f"stage {r} waits at op {pos[r]} ({lowered[r][pos[r]]})"
                              for r in range(n) if pos[r] < len(lowered[r]))
            raise Deadlock(f"no stage can go on: {waits}")
    unreceived = sorted(set(arrived) - received)
    if unreceived:
        raise ValueError(f"messages sent and never received (from, to, what, micro-batch): {unreceived}")
    sim.makespan = max((e[-1] for e in sim.end if e), default=0.0)
    return sim


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """The textbook share of a step each stage idles, ``(S-1)/(M+S-1)`` (equal passes, free messages)."""
    check(stages, micro_batches)
    return (stages - 1) / (micro_batches + stages - 1)
