"""Tensor (model) parallel linear layers over the tensor axis's communicator.

A layer's weight matrix is cut across the ``T`` ranks of ``comm``; widths
that do not divide by ``T`` are cut as :func:`collectives.schedule.partition`
cuts (the first ranks hold one feature more).  Four forward/backward
communication pairs join the pieces, each over this toolkit's own
collectives (a layer's ``algorithm`` names its all-reduces; its all-gathers
use the same name where that family has one, else ``"auto"``):

=========================  ==================  ==================
pair                       forward             backward
=========================  ==================  ==================
:func:`copy_to_parallel`   identity            all-reduce
:func:`reduce_from_parallel`  all-reduce       identity
:func:`gather_from_parallel`  all-gather       split
:func:`split_to_parallel`  split               all-gather
=========================  ==================  ==================

Two schemes use them:

- **the course's**: every hidden layer is a :class:`ColumnParallelLinear`
  with ``gather_output=True`` (its input replicated, its output all-gathered
  forward; the input gradient all-reduced backward), the output layer
  replicated;
- **Megatron-LM's**: a :class:`ColumnParallelLinear` (output left cut)
  followed by a :class:`RowParallelLinear` (input cut, output all-reduced
  forward), one all-reduce forward and one backward per pair.

Every layer draws the *full* weight matrix from the model's generator and
keeps its slice, so a model starts from the same weights at every degree.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms.schedule import partition

from ..layers.base import Layer
from ..layers.linear import INITS, Linear, check
from ..kernels import bias_act, bias_act_backward

__all__ = [
    "copy_to_parallel", "reduce_from_parallel", "gather_from_parallel", "split_to_parallel",
    "ColumnParallelLinear", "RowParallelLinear",
]


def _block(n: int, comm: MPI.Comm) -> tuple[int, int]:
    bounds = partition(n, comm.Get_size())
    return bounds[comm.Get_rank()], bounds[comm.Get_rank() + 1]


def _allreduce(a: np.ndarray, comm: MPI.Comm, algorithm: str) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return collectives.allreduce(a, a, algorithm=algorithm, comm=comm)


def _gathering(algorithm: str) -> str:
    """The all-gather of the all-reduce ``algorithm`` where the family has one of that name, else ``auto``."""
    return algorithm if algorithm in collectives.ALGORITHMS["allgather"] else "auto"


def copy_to_parallel(x: np.ndarray, comm: MPI.Comm, algorithm: str = "auto", backward: bool = False):
    """Identity forward; all-reduce (sum) of the gradient backward."""
    return _allreduce(x, comm, algorithm) if backward and comm.Get_size() > 1 else x


def reduce_from_parallel(x: np.ndarray, comm: MPI.Comm, algorithm: str = "auto", backward: bool = False):
    """All-reduce (sum) forward; identity backward."""
    return x if backward or comm.Get_size() == 1 else _allreduce(x, comm, algorithm)


def _gather_columns(x: np.ndarray, n: int, comm: MPI.Comm, algorithm: str) -> np.ndarray:
    """Every rank's columns of ``x`` (its block of ``n``), side by side in rank order."""
    t = comm.Get_size()
    bounds = partition(n, t)
    widest = bounds[1] - bounds[0]  # the first block is never narrower than another
    send = np.zeros((widest, x.shape[0]), x.dtype)
    send[: x.shape[1]] = x.T
    got = collectives.allgather(send.reshape(-1), algorithm=algorithm, comm=comm).reshape(t, widest, x.shape[0])
    return np.ascontiguousarray(np.concatenate([got[r, : bounds[r + 1] - bounds[r]] for r in range(t)]).T)


def gather_from_parallel(x: np.ndarray, n: int, comm: MPI.Comm, algorithm: str = "auto",
                         backward: bool = False) -> np.ndarray:
    """All-gather of the feature (column) blocks of ``n`` forward; this rank's block of the gradient backward.

    Blocks of unequal width travel padded to the widest, ``ceil(n / T)``
    columns, so the all-gather moves ``(T - 1) * rows * ceil(n / T)``
    elements per rank (exactly ``(T - 1) / T`` of the whole when ``T``
    divides ``n``).
    """
    if comm.Get_size() == 1:
        return x
    if backward:
        lo, hi = _block(n, comm)
        return np.ascontiguousarray(x[:, lo:hi])
    return _gather_columns(x, n, comm, algorithm)


def split_to_parallel(x: np.ndarray, n: int, comm: MPI.Comm, algorithm: str = "auto",
                      backward: bool = False) -> np.ndarray:
    """This rank's block of the ``n`` columns forward; all-gather of the gradient's blocks backward."""
    return gather_from_parallel(x, n, comm, algorithm, backward=not backward)


class _Sliced(Layer):
    """A weight cut from a full ``(fan_in, fan_out)`` matrix drawn as :class:`~training.layers.Linear` draws it."""

    param_names = ("W", "b")
    saved = ("x", "y")
    #: Seconds this layer has spent in its collectives (forward and backward), since it was made.
    comm_seconds = 0.0

    def __init__(self, fan_in, fan_out, comm, act, init, algorithm):
        check(fan_in, fan_out, act, init)  # the serial layer's checks
        self.fan_in, self.fan_out, self.comm = int(fan_in), int(fan_out), comm
        self.act, self.init_name, self.algorithm = act, init, algorithm

    def _slice(self) -> tuple[slice, slice]:
        raise NotImplementedError

    def _timed(self, pair, *args, **kwargs):
        t = time.perf_counter()
        out = pair(*args, **kwargs)
        self.comm_seconds += time.perf_counter() - t
        return out

    def init(self, rng: np.random.Generator) -> None:
        full = rng.standard_normal((self.fan_in, self.fan_out)) * INITS[self.init_name](self.fan_in, self.fan_out)
        self.params[0][...] = full[self._slice()]


class ColumnParallelLinear(_Sliced):
    """``y = act(x @ W[:, cols] + b[cols])``: this rank's block of the output features.

    The input ``x`` is replicated on every rank of ``comm`` (its gradient is
    all-reduced backward, unless it is the model's input).  With
    ``gather_output`` the output blocks are all-gathered forward (the
    course's scheme) and the gradient split backward; otherwise the output
    stays cut, for a :class:`RowParallelLinear` next (Megatron's).
    """

    def __init__(self, fan_in: int, fan_out: int, comm: MPI.Comm, act: str = "identity", init: str = "glorot",
                 gather_output: bool = False, algorithm: str = "auto"):
        if comm.Get_size() > fan_out:
            raise ValueError(f"{fan_out} output features cannot be cut over {comm.Get_size()} ranks")
        super().__init__(fan_in, fan_out, comm, act, init, algorithm)
        self.gather_output = gather_output
        self.lo, self.hi = _block(self.fan_out, comm)
        self.param_shapes = ((self.fan_in, self.hi - self.lo), (self.hi - self.lo,))

    def _slice(self):
        return slice(None), slice(self.lo, self.hi)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.y = bias_act(x @ self.params[0], self.params[1], self.act)
        if self.gather_output:
            return self._timed(gather_from_parallel, self.y, self.fan_out, self.comm, _gathering(self.algorithm))
        return self.y

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if self.gather_output:
            dy = gather_from_parallel(dy, self.fan_out, self.comm, backward=True)
        dz, db = bias_act_backward(dy, self.y, self.act, dz=dy)
        self.grads[1][...] = db
        np.matmul(self.x.T, dz, out=self.grads[0])
        if not need_input_grad:
            return None
        return self._timed(copy_to_parallel, dz @ self.params[0].T, self.comm, self.algorithm, backward=True)


class RowParallelLinear(_Sliced):
    """``y = act(sum over ranks of x[:, rows] @ W[rows, :] + b)``: the input cut by features, the output whole.

    The partial products are all-reduced forward; the bias (replicated on
    every rank of ``comm``, and kept bitwise equal there: every rank computes
    its gradient from the same all-reduced values) is added after.  The
    input's gradient stays cut: no message backward.
    """

    def __init__(self, fan_in: int, fan_out: int, comm: MPI.Comm, act: str = "identity", init: str = "glorot",
                 algorithm: str = "auto"):
        if comm.Get_size() > fan_in:
            raise ValueError(f"{fan_in} input features cannot be cut over {comm.Get_size()} ranks")
        super().__init__(fan_in, fan_out, comm, act, init, algorithm)
        self.lo, self.hi = _block(self.fan_in, comm)
        self.param_shapes = ((self.hi - self.lo, self.fan_out), (self.fan_out,))

    def _slice(self):
        return slice(self.lo, self.hi), slice(None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        z = self._timed(reduce_from_parallel, x @ self.params[0], self.comm, self.algorithm)
        self.y = bias_act(z, self.params[1], self.act)
        return self.y

    #: The serial layer's: the replicated bias's gradient from the all-reduced values, the cut weight's from
    #: this rank's input columns, and the input gradient stays cut (no message).
    backward = Linear.backward


#: The schemes ``tensor_mlp`` builds: who splits which layer.
SCHEMES = ("course", "megatron")


def split_widths(sizes, scheme: str) -> list[int]:
    """The widths the scheme cuts over the tensor axis (each must hold at least ``T``): the hidden layers'.

    The course's scheme cuts every hidden layer's output; Megatron's cuts a
    pair's middle width, which is a hidden width too.  The output layer is
    replicated in both, except as the row-parallel half of a Megatron pair.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tensor-parallel scheme {scheme!r}; have {', '.join(SCHEMES)}")
    hidden = list(sizes[1:-1])
    return hidden if scheme == "course" else hidden[: 2 * ((len(sizes) - 1) // 2):2]


def units(n_layers: int, scheme: str) -> list[int]:
    """How many consecutive layers each indivisible unit of the scheme holds: 1, or 2 for a Megatron pair.

    A pipeline stage boundary may fall between units only: inside a pair
    the activation is cut over the tensor axis.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tensor-parallel scheme {scheme!r}; have {', '.join(SCHEMES)}")
    return [1] * n_layers if scheme == "course" else [2] * (n_layers // 2) + [1] * (n_layers % 2)


def tensor_layers(sizes, act: str, comm: MPI.Comm, scheme: str = "course", algorithm: str = "auto") -> list[Layer]:
    """The layers of :func:`tensor_mlp`, in forward order, their parameters not yet bound or drawn."""
    split_widths(sizes, scheme)  # checks the scheme
    init = "he" if act == "relu" else "glorot"
    n = len(sizes) - 1

    def act_of(i):
        return act if i < n - 1 else "identity"

    layers, i = [], 0
    for width in units(n, scheme):
        if width == 2:
            layers.append(ColumnParallelLinear(sizes[i], sizes[i + 1], comm, act_of(i), init, False, algorithm))
            layers.append(RowParallelLinear(sizes[i + 1], sizes[i + 2], comm, act_of(i + 1), init, algorithm))
        elif scheme == "course" and i < n - 1:
            layers.append(ColumnParallelLinear(sizes[i], sizes[i + 1], comm, act_of(i), init, True, algorithm))
        else:
            layers.append(Linear(sizes[i], sizes[i + 1], act_of(i), init))
        i += width
    return layers


def tensor_mlp(sizes, act: str, comm: MPI.Comm, scheme: str = "course", seed: int = 0, dtype=np.float32,
               algorithm: str = "auto"):
    """:func:`training.model.mlp` with its layers cut over ``comm`` (the tensor axis) by ``scheme``.

    - ``"course"``: every hidden layer a :class:`ColumnParallelLinear` whose
      output is all-gathered, the output layer replicated;
    - ``"megatron"``: layers in :class:`ColumnParallelLinear` →
      :class:`RowParallelLinear` pairs, a last unpaired layer replicated.

    At one rank, or with a scheme that cuts nothing, it is the serial model:
    the same layout, draws and results.
    """
    from ..layers import Sequential

    return Sequential(tensor_layers(sizes, act, comm, scheme, algorithm), seed=seed, dtype=dtype)


def replicated(model) -> list[np.ndarray]:
    """The parameters of ``model`` that every rank of the tensor axis holds whole (and must keep equal)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, RowParallelLinear):
            out.append(layer.params[1])
        elif not isinstance(layer, ColumnParallelLinear):
            out += list(getattr(layer, "params", []))
    return out
