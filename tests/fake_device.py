"""A fake device array: host memory behind ``__cuda_array_interface__``, as mpi4py's own tests use.

It lets the device paths (:mod:`collectives.runtime.device_engine`) run
under a real MPI with no GPU: mpi4py takes its memory through the CUDA
array interface, as it would a cupy array's, and its :class:`FakeBackend`
reduces with the host kernels and counts every byte staged to and from
"the device".  It has the part of cupy's array API the collectives use.
"""

from __future__ import annotations

import numpy as np

from collectives.runtime import device
from collectives.runtime.reduce_ops import combine


class FakeDeviceArray:
    """A view of a host array that presents itself as device memory."""

    __slots__ = ("host",)

    def __init__(self, host: np.ndarray):
        self.host = host

    @property
    def __cuda_array_interface__(self) -> dict:
        h = self.host
        return {"shape": h.shape, "typestr": h.dtype.str, "version": 3, "stream": None,
                "data": (h.ctypes.data if h.size else 0, not h.flags.writeable),
                "strides": None if h.flags.c_contiguous else h.strides}

    dtype = property(lambda self: self.host.dtype)
    shape = property(lambda self: self.host.shape)
    size = property(lambda self: self.host.size)
    ndim = property(lambda self: self.host.ndim)
    nbytes = property(lambda self: self.host.nbytes)
    itemsize = property(lambda self: self.host.itemsize)
    flags = property(lambda self: self.host.flags)

    def reshape(self, *shape) -> FakeDeviceArray:
        return FakeDeviceArray(self.host.reshape(*shape))

    def view(self, dtype) -> FakeDeviceArray:
        return FakeDeviceArray(self.host.view(dtype))

    def __getitem__(self, key) -> FakeDeviceArray:
        return FakeDeviceArray(self.host[key])

    def __setitem__(self, key, value) -> None:
        self.host[key] = value.host if isinstance(value, FakeDeviceArray) else value

    def __len__(self) -> int:
        return len(self.host)

    def get(self) -> np.ndarray:
        """A host copy, as cupy's ``get``."""
        return self.host.copy()


class FakeBackend(device.Backend):
    """The device operations on :class:`FakeDeviceArray`: host kernels, and counts of staged bytes."""

    def __init__(self):
        super().__init__()
        self.to_host_bytes = self.from_host_bytes = self.synchronized = 0

    def empty(self, count, dtype):
        return FakeDeviceArray(np.empty(count, dtype))

    def pinned_empty(self, nbytes):
        return np.empty(nbytes, np.uint8)

    def copy(self, dst, src):
        np.copyto(dst.host, src.host)

    def reduce(self, dst, src, op, incoming_first):
        combine(dst.host, src.host, op, incoming_first)

    def divide(self, a, p):
        np.divide(a.host, p, out=a.host)

    def synchronize(self):
        self.synchronized += 1

    def to_host(self, src, host):
        np.copyto(host, src.host)
        self.to_host_bytes += host.nbytes

    def from_host(self, host, dst):
        np.copyto(dst.host, host)
        self.from_host_bytes += host.nbytes


BACKEND = FakeBackend()
device.register(FakeDeviceArray, BACKEND)


def fake(a: np.ndarray) -> FakeDeviceArray:
    """A fake device array holding a copy of ``a``."""
    return FakeDeviceArray(np.array(a, copy=True))
