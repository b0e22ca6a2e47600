"""Pipeline parallelism: consecutive layers on consecutive ranks of the pipeline axis, micro-batches point to point.

Stage ``r`` (rank ``r`` of the pipeline communicator) holds a contiguous
range of the model's layers (:func:`stage_bounds`).  A step cuts this
rank's rows into ``M`` micro-batches (sizes from
:func:`collectives.algorithms.schedule.partition`, differing by at most
one) and runs the stage's lowered schedule
(:mod:`training.parallel.pipeline_schedule`): activations go forward with
``Isend`` / ``Recv``, tagged ``2m``, their gradients come back tagged
``2m + 1``.  There are no collectives on the pipeline axis, except one
broadcast of the step's loss from the last stage.

Each micro-batch's gradient is ``1 / global batch`` times its sum over its
rows, and the stage adds them up, so the step's gradient is the one-rank
model's for any sizes.  Stages are balanced by FLOPs: a linear layer of
``i`` inputs and ``o`` outputs costs ``2io`` per row forward and ``4io``
backward (``2io`` for the model's first layer, which computes no input
gradient; biases and activations are left out), and :func:`balance` cuts the layers so that the costliest stage
is as cheap as it can be.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from collectives.algorithms.schedule import partition
from collectives.runtime import traffic

from ..layers import Sequential
from .pipeline_schedule import BACKWARD, FORWARD, RECV_ACT, RECV_GRAD, SCHEDULES, SEND_ACT, lower
from .tensor import tensor_layers, units

__all__ = ["layer_flops", "balance", "stage_bounds", "stage_model", "Pipeline"]

#: The tag of :meth:`Pipeline.predict`'s messages, above every step's ``2m + 1``.
PREDICT_TAG = 32767


def layer_flops(sizes) -> list[int]:
    """Forward plus backward FLOPs per row of each linear layer of an MLP of widths ``sizes``."""
    return [(4 if i == 0 else 6) * sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1)]


def balance(costs, stages: int) -> list[int]:
    """Cut ``costs`` into ``stages`` contiguous non-empty runs whose largest sum is smallest.

    Parameters
    ----------
    costs : sequence of float
        One per item, in order.
    stages : int
        ``1 <= stages <= len(costs)``.

    Returns
    -------
    list of int
        ``stages + 1`` bounds: run ``s`` is ``costs[bounds[s]:bounds[s+1]]``.
        Among equally good cuts, the one with the earliest boundaries.
    """
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot cut {n} layers into {stages} non-empty stages")
    prefix = np.concatenate([[0.0], np.cumsum(costs, dtype=float)])
    # best[s][j]: the smallest largest run cutting the first j items into s runs; cut[s][j]: where its last starts
    best = np.full((stages + 1, n + 1), np.inf)
    cut = np.zeros((stages + 1, n + 1), int)
    best[0][0] = 0.0
    for s in range(1, stages + 1):
        for j in range(s, n + 1):
            for i in range(s - 1, j):
                v = max(best[s - 1][i], prefix[j] - prefix[i])
                if v < best[s][j]:
                    best[s][j], cut[s][j] = v, i
    bounds = [n]
    for s in range(stages, 0, -1):
        bounds.append(int(cut[s][bounds[-1]]))
    return bounds[::-1]


def stage_bounds(sizes, stages: int, scheme: str = "course", layers=None) -> list[int]:
    """Which linear layers each stage holds: ``stages + 1`` bounds into the layers of an MLP of widths ``sizes``.

    Stage ``s`` holds layers ``bounds[s] .. bounds[s+1]-1`` (layer ``i``
    maps ``sizes[i]`` features to ``sizes[i+1]``).

    Parameters
    ----------
    sizes : sequence of int
    stages : int
    scheme : {"course", "megatron"}
        With Megatron's, a column → row pair is never cut (:func:`training.parallel.tensor.units`).
    layers : sequence of int, optional
        Layers per stage, given explicitly; by default balanced by :func:`layer_flops`.

    Raises
    ------
    ValueError
        More stages than layers (pairs count as one); explicit counts that do
        not add up to the layers, hold none, or cut a pair.
    """
    n = len(sizes) - 1
    widths = units(n, scheme)
    starts = np.concatenate([[0], np.cumsum(widths)]).tolist()
    if stages > len(widths):
        what = f"{len(widths)} units (Megatron pairs count as one)" if scheme == "megatron" else f"{n} layers"
        raise ValueError(f"--pipeline-stages {stages} is more than the model's {what}: every stage needs one")
    if layers is not None:
        layers = list(layers)
        if len(layers) != stages or min(layers) < 1 or sum(layers) != n:
            raise ValueError(f"--stage-layers {','.join(map(str, layers))}: {stages} counts of at least 1 "
                             f"adding up to the model's {n} layers, please")
        bounds = np.concatenate([[0], np.cumsum(layers)]).tolist()
        if not set(bounds) <= set(starts):
            raise ValueError(f"--stage-layers {','.join(map(str, layers))} cuts a column -> row pair of the "
                             "megatron scheme")
        return [int(b) for b in bounds]
    flops = layer_flops(sizes)
    costs = [sum(flops[starts[u]:starts[u + 1]]) for u in range(len(widths))]
    return [int(starts[b]) for b in balance(costs, stages)]


def stage_model(sizes, act: str, tensor, bounds, stage: int, scheme: str = "course", seed: int = 0,
                dtype=np.float32, algorithm: str = "auto") -> Sequential:
    """Stage ``stage``'s layers of :func:`training.parallel.tensor.tensor_mlp`, drawn as the whole model draws them.

    The generator draws the earlier stages' weights first (into throwaway
    buffers), so every stage starts from the one-rank model's parameters.
    ``tensor`` is the tensor axis's communicator (one rank: no cut).
    """
    layers = tensor_layers(sizes, act, tensor, scheme, algorithm)
    lo, hi = bounds[stage], bounds[stage + 1]
    rng = np.random.default_rng(seed)
    if lo:
        Sequential(layers[:lo], dtype=dtype, rng=rng)
    return Sequential(layers[lo:hi], dtype=dtype, rng=rng)


class Pipeline:
    """This rank's stage of a pipeline: a step runs its part of the schedule over ``comm``.

    Stands in for the stage's :class:`~training.layers.Sequential` in the
    training loop: :attr:`params`, :attr:`grads`, :attr:`layers`,
    :meth:`param_range`, :meth:`loss_and_grad` and :meth:`predict`, the
    last two collective over ``comm``.

    Parameters
    ----------
    model : Sequential
        This stage's layers (:func:`stage_model`); the last stage's loss is the model's.
    comm : mpi4py.MPI.Comm
        The pipeline axis: rank ``r`` holds stage ``r``.
    schedule : {"gpipe", "1f1b"}
    micro_batches : int
    widths : (int, int)
        Features of the stage's input and of its output (the activations it receives and sends).

    Attributes
    ----------
    pipe_seconds : float
        Seconds in the pipeline's messages so far: receives (waiting for a
        neighbour, the bubble, included), posting sends, waiting for them,
        and the loss's broadcast.
    trace : list or None
        When a list, each step appends ``(kind, micro-batch, start, end)``
        spans (``perf_counter`` seconds): kinds ``forward``, ``backward``,
        ``recv``, ``send`` and ``wait`` (for the sends, at the step's end).
    peak_stash_bytes : int
        The most bytes of activations the last step held for backward at once
        (every array the stage's layers keep, its input included).
    micro_stash_bytes : list of int
        The bytes each micro-batch's forward held for backward, in the last step.
    """

    def __init__(self, model: Sequential, comm: MPI.Comm, schedule: str, micro_batches: int, widths):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; have {', '.join(SCHEDULES)}")
        if 2 * micro_batches + 1 >= PREDICT_TAG:
            raise ValueError(f"{micro_batches} micro-batches need more message tags than MPI promises")
        self.model, self.comm = model, comm
        self.stage, self.stages = comm.Get_rank(), comm.Get_size()
        self.last = self.stage == self.stages - 1
        self.micro_batches, self.widths = micro_batches, tuple(widths)
        self.ops = lower(SCHEDULES[schedule](self.stages, micro_batches))[self.stage]
        self.params, self.grads, self.layers = model.params, model.grads, model.layers
        self._sum = np.zeros_like(model.grads) if micro_batches > 1 else None
        self.pipe_seconds = 0.0
        self.trace = None
        self.peak_stash_bytes, self.micro_stash_bytes = 0, []

    def param_range(self, layer: int) -> tuple[int, int]:
        """``[lo, hi)`` of this stage's layer ``layer`` in :attr:`params` (see :meth:`Sequential.param_range`)."""
        return self.model.param_range(layer)

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray, scale: float, on_layer=None) -> float:
        """One step of the schedule; this stage's :attr:`grads` become ``scale`` times the sum over the rows.

        Every stage passes the same rows (only the first reads ``x``, only
        the last ``y``).  ``on_layer(i)`` is called as layer ``i``'s
        gradient becomes final, in the stage's last backward.  Returns the
        mean loss over the rows, on every stage.
        """
        rows = len(y)
        if rows < self.micro_batches:
            raise ValueError(f"{rows} rows cannot fill {self.micro_batches} micro-batches")
        cut = partition(rows, self.micro_batches)
        receives = iter([op for op in self.ops if op.kind in (RECV_ACT, RECV_GRAD)])
        ahead = self._post(next(receives, None), cut)  # the next receive is always posted
        received, stash, outgoing, sends = {}, {}, {}, []
        loss, done, held = 0.0, 0, 0
        self.peak_stash_bytes, self.micro_stash_bytes = 0, [0] * self.micro_batches
        for op in self.ops:
            m = op.micro
            lo, hi = cut[m], cut[m + 1]
            t = time.perf_counter()
            if op.kind in (RECV_ACT, RECV_GRAD):
                sends = [(r, a) for r, a in sends if not r.Test()]  # progress them, and let go of the sent
                request, received[m] = ahead
                request.Wait()
                traffic.record(0, 1, 0, received[m].nbytes)
                ahead = self._post(next(receives, None), cut)
                self._span("recv", m, t, comm=True)
            elif op.kind == FORWARD:
                a = received.pop(m) if self.stage else x[lo:hi]
                for layer in self.layers:
                    a = layer.forward(a)
                stash[m] = ([layer.stash() for layer in self.layers], a)
                self.micro_stash_bytes[m] = _bytes(stash[m])
                held += self.micro_stash_bytes[m]
                self.peak_stash_bytes = max(self.peak_stash_bytes, held)
                self._span(FORWARD, m, t)
            elif op.kind == BACKWARD:
                states, out = stash.pop(m)
                held -= self.micro_stash_bytes[m]
                for layer, state in zip(self.layers, states):
                    layer.restore(state)
                if self.last:
                    part, d = self.model.loss.loss_and_grad(out, y[lo:hi], scale)
                    loss += part * (hi - lo)
                else:
                    d = received.pop(m)
                outgoing[m] = self._backward(d, done, on_layer)
                done += 1
                self._span(BACKWARD, m, t)
            else:
                a = np.ascontiguousarray(stash[m][1] if op.kind == SEND_ACT else outgoing.pop(m))
                sends.append((self.comm.Isend(a, dest=op.peer, tag=2 * m + (op.kind != SEND_ACT)), a))
                traffic.record(1, 0, a.nbytes, 0)
                self._span("send", m, t, comm=True)
        t = time.perf_counter()
        MPI.Request.Waitall([r for r, _ in sends])
        self._span("wait", -1, t, comm=True)
        t = time.perf_counter()
        loss = self.comm.bcast(loss / rows if self.last else None, root=self.stages - 1)
        self.pipe_seconds += time.perf_counter() - t
        return loss

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The class of each row of ``x``, on every stage (the last computes them); one forward, no micro-batches."""
        a = x
        if self.stage:
            a = np.empty((len(x), self.widths[0]), self.params.dtype)
            self.comm.Recv(a, source=self.stage - 1, tag=PREDICT_TAG)
        for layer in self.layers:
            a = layer.forward(a)
        if not self.last:
            self.comm.Send(np.ascontiguousarray(a), dest=self.stage + 1, tag=PREDICT_TAG)
        return self.comm.bcast(np.argmax(a, axis=1) if self.last else None, root=self.stages - 1)

    def _post(self, op, cut) -> tuple | None:
        """``Irecv`` the message of receive ``op`` into a new buffer: ``(request, buffer)``; None for no op."""
        if op is None:
            return None
        grad = op.kind == RECV_GRAD
        buf = np.empty((cut[op.micro + 1] - cut[op.micro], self.widths[grad]), self.params.dtype)
        return self.comm.Irecv(buf, source=op.peer, tag=2 * op.micro + grad), buf

    def _backward(self, d: np.ndarray, done: int, on_layer) -> np.ndarray | None:
        """Back through the stage's layers, adding this micro-batch's gradients to the earlier ones'."""
        final = done == self.micro_batches - 1
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            d = layer.backward(d, need_input_grad=i > 0 or self.stage > 0)
            if not layer.param_shapes:
                continue
            if self._sum is not None:
                lo, hi = self.model.param_range(i)
                g, total = self.grads[lo:hi], self._sum[lo:hi]
                if done == 0:
                    total[...] = g
                elif not final:
                    total += g
                else:
                    g += total
            if final and on_layer is not None:
                on_layer(i)
        return d

    def _span(self, kind: str, micro: int, t: float, comm: bool = False) -> None:
        end = time.perf_counter()
        if comm:
            self.pipe_seconds += end - t
        if self.trace is not None:
            self.trace.append((kind, micro, t, end))


def _bytes(entry) -> int:
    """Bytes of the distinct arrays in a stash entry (a layer's output is often the next one's input)."""
    states, out = entry
    arrays = {id(a): a for state in states for a in state if isinstance(a, np.ndarray)}
    arrays[id(out)] = out
    return sum(a.nbytes for a in arrays.values())
