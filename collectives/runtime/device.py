"""Device (CUDA) arrays: what the engine asks of their memory, one backend per array type.

A collective on device arrays keeps its work on the device: the send
buffer is copied into the receive buffer there, the schedule's messages
move device bytes (straight, or staged through pinned host memory: see
:mod:`collectives.runtime.device_engine`), and the reductions run there.
What that needs of an array type is a :class:`Backend`: allocate, view as
bytes, copy, reduce, divide, synchronise with the stream that produced
the data, and copy to and from (pinned) host memory.

cupy arrays get a :class:`CupyBackend`, made on first use (importing cupy
needs no GPU; using it does).  Another array type exposing
``__cuda_array_interface__`` gets a backend through :func:`register`; the
test suite registers a fake device array over host memory this way, so
that the device paths run under MPI in CI with no GPU (as mpi4py's own
tests do).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["Backend", "CupyBackend", "register", "backend_of", "is_device"]


class Backend:
    """The device operations the collectives use, for one array type.  Arrays are flat unless said.

    Every operation is queued on the current stream in order;
    :meth:`synchronize` waits for them (and for whatever the caller queued
    before the collective).  Scratch and pinned buffers are kept per thread
    between calls, like the host scratch (:mod:`collectives.runtime.workspace`).
    """

    def __init__(self):
        self._local = threading.local()

    # -- memory -----------------------------------------------------------
    def empty(self, count: int, dtype):
        """A new flat device array."""
        raise NotImplementedError

    def pinned_empty(self, nbytes: int) -> np.ndarray:
        """A new page-locked host array of ``nbytes`` bytes (uint8)."""
        raise NotImplementedError

    def scratch(self, dtype, count: int, slot: str = "engine"):
        """This thread's device scratch of ``count`` elements in ``slot``, grown as needed and kept.

        As :func:`collectives.runtime.workspace.scratch`, on the device.
        """
        pool = self._pool("scratch")
        key = (slot, np.dtype(dtype))
        buf = pool.get(key)
        if buf is None or buf.size < count:
            buf = pool[key] = self.empty(max(count, 1), key[1])
        return buf[:count]

    def pinned(self, nbytes: int) -> np.ndarray:
        """This thread's pinned host staging buffer of ``nbytes`` bytes, grown as needed and kept."""
        pool = self._pool("pinned")
        buf = pool.get("bytes")
        if buf is None or buf.size < nbytes:
            buf = pool["bytes"] = self.pinned_empty(max(nbytes, 1))
        return buf[:nbytes]

    def _pool(self, name: str) -> dict:
        pool = getattr(self._local, name, None)
        if pool is None:
            pool = {}
            setattr(self._local, name, pool)
        return pool

    # -- on the device ----------------------------------------------------
    def as_bytes(self, a):
        """A flat uint8 view of the contiguous device array ``a``."""
        return a.reshape(-1).view(np.uint8)

    def copy(self, dst, src) -> None:
        """``dst[...] = src`` on the device."""
        raise NotImplementedError

    def reduce(self, dst, src, op: str, incoming_first: bool) -> None:
        """``dst = dst (op) src`` (``src (op) dst`` with ``incoming_first``), as the host kernels compute it."""
        raise NotImplementedError

    def divide(self, a, p: int) -> None:
        """``a /= p`` in place (``avg``), rounded as numpy's division of the dtype."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until the current stream has done everything queued on it."""
        raise NotImplementedError

    # -- across ---------------------------------------------------------------
    def to_host(self, src, host: np.ndarray) -> None:
        """Queue a copy of the device bytes ``src`` into the host bytes ``host``."""
        raise NotImplementedError

    def from_host(self, host: np.ndarray, dst) -> None:
        """Queue a copy of the host bytes ``host`` into the device bytes ``dst``."""
        raise NotImplementedError


#: The reductions as CUDA expressions of ``a`` (the work, written) and ``b`` (the incoming), by
#: ``(op, incoming_first)``: the host kernels' own comparisons, so NaN and signed zeros come out alike.
_EXPRESSIONS = {
    ("sum", False): "a = a + b", ("sum", True): "a = b + a",
    ("prod", False): "a = a * b", ("prod", True): "a = b * a",
    ("min", False): "a = (b < a || b != b) ? b : a", ("min", True): "a = (b <= a || b != b) ? b : a",
    ("max", False): "a = (b > a || b != b) ? b : a", ("max", True): "a = (b >= a || b != b) ? b : a",
}


class CupyBackend(Backend):
    """cupy arrays: elementwise kernels, the current stream, ``cupyx`` pinned memory."""

    def __init__(self):
        super().__init__()
        import cupy

        self.cupy = cupy
        self._kernels = {key: cupy.ElementwiseKernel("T b", "T a", code, f"collectives_{key[0]}_{int(key[1])}")
                         for key, code in _EXPRESSIONS.items()}

    def empty(self, count, dtype):
        return self.cupy.empty(count, dtype)

    def pinned_empty(self, nbytes):
        import cupyx

        return cupyx.empty_pinned(nbytes, np.uint8)

    def copy(self, dst, src):
        dst[...] = src

    def reduce(self, dst, src, op, incoming_first):
        self._kernels[(op, incoming_first)](src, dst)

    def divide(self, a, p):
        self.cupy.divide(a, a.dtype.type(p), out=a)

    def synchronize(self):
        self.cupy.cuda.get_current_stream().synchronize()

    def to_host(self, src, host):
        src.get(stream=self.cupy.cuda.get_current_stream(), out=host, blocking=False)

    def from_host(self, host, dst):
        dst.set(host, stream=self.cupy.cuda.get_current_stream())


_BACKENDS: dict[type, Backend] = {}
_LOCK = threading.Lock()


def register(kind: type, backend: Backend) -> None:
    """Use ``backend`` for device arrays of exactly type ``kind``."""
    with _LOCK:
        _BACKENDS[kind] = backend


def backend_of(a) -> Backend | None:
    """The :class:`Backend` of device array ``a``; None for anything else (numpy arrays included)."""
    kind = type(a)
    if kind is np.ndarray:
        return None
    found = _BACKENDS.get(kind)
    if found is None and kind.__module__.split(".")[0] == "cupy" and kind.__name__ == "ndarray":
        with _LOCK:
            found = _BACKENDS.get(kind)
            if found is None:
                found = _BACKENDS[kind] = CupyBackend()
    return found


def is_device(a) -> bool:
    """Whether ``a`` is a device array the collectives take."""
    return backend_of(a) is not None
