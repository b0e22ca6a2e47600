"""NUMA memory policy through libnuma (ctypes), and first-touch initialisation of big buffers.

``set_policy("preferred", node)`` asks the kernel to allocate this
process's new pages on ``node`` when it can; ``"bind"`` insists;
``"local"`` (the default policy) allocates on the node of the CPU that
first touches a page.  :func:`policy` reads the policy back with
``get_mempolicy``.  :func:`first_touch` fills a new array from the threads
that will use it, so its pages land on their nodes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
from numba import njit, prange

__all__ = ["available", "allowed_nodes", "set_policy", "policy", "first_touch", "MODES"]

# linux/mempolicy.h
_MODE_NAMES = {0: "default", 1: "preferred", 2: "bind", 3: "interleave", 4: "local"}
MODES = ("local", "preferred", "bind")
_lib = None


def _libnuma():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("numa") or "libnuma.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            _lib = False
        else:
            lib.numa_available.restype = ctypes.c_int
            lib.get_mempolicy.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_ulong),
                                          ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong]
            lib.numa_set_preferred.argtypes = [ctypes.c_int]
            lib.numa_set_localalloc.argtypes = []
            lib.numa_allocate_nodemask.restype = ctypes.c_void_p
            lib.numa_bitmask_setbit.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.numa_bitmask_setbit.restype = ctypes.c_void_p
            lib.numa_set_membind.argtypes = [ctypes.c_void_p]
            lib.numa_bitmask_free.argtypes = [ctypes.c_void_p]
            lib.numa_get_mems_allowed.restype = ctypes.c_void_p
            lib.numa_bitmask_isbitset.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.numa_max_node.restype = ctypes.c_int
            _lib = lib if lib.numa_available() >= 0 else False
    return _lib or None


def available() -> bool:
    """Whether libnuma loads and the kernel supports NUMA policies."""
    return _libnuma() is not None


def allowed_nodes() -> list[int]:
    """The NUMA nodes this process may allocate memory on (its cpuset's ``mems``)."""
    lib = _libnuma()
    if lib is None:
        raise OSError("libnuma is not available (Debian: apt-get install libnuma1)")
    mask = lib.numa_get_mems_allowed()
    try:
        return [n for n in range(lib.numa_max_node() + 1) if lib.numa_bitmask_isbitset(mask, n)]
    finally:
        lib.numa_bitmask_free(mask)


def set_policy(mode: str, node: int = 0) -> None:
    """Set this process's memory policy: ``"local"``, ``"preferred"`` (``node``) or ``"bind"`` (``node``).

    Raises
    ------
    ValueError
        If ``mode`` is unknown, or ``node`` is not a NUMA node this process may allocate on
        (libnuma would only print a warning and leave the policy as it was).
    OSError
        If libnuma is not available.
    """
    if mode not in MODES:
        raise ValueError(f"unknown memory policy {mode!r}; use one of {', '.join(MODES)}")
    lib = _libnuma()
    if lib is None:
        raise OSError("libnuma is not available (Debian: apt-get install libnuma1)")
    nodes = allowed_nodes()
    if mode != "local" and node not in nodes:
        raise ValueError(f"NUMA node {node} does not exist or is not allowed to this process; "
                         f"allowed node(s): {', '.join(map(str, nodes))}")
    if mode == "local":
        lib.numa_set_localalloc()
    elif mode == "preferred":
        lib.numa_set_preferred(node)
    else:
        mask = lib.numa_allocate_nodemask()
        lib.numa_bitmask_setbit(mask, node)
        lib.numa_set_membind(mask)
        lib.numa_bitmask_free(mask)


def policy() -> tuple[str, list[int]]:
    """This process's policy as the kernel has it: ``(mode, nodes)`` from ``get_mempolicy``."""
    lib = _libnuma()
    if lib is None:
        raise OSError("libnuma is not available (Debian: apt-get install libnuma1)")
    mode = ctypes.c_int(-1)
    mask = (ctypes.c_ulong * 16)()
    if lib.get_mempolicy(ctypes.byref(mode), mask, 16 * 64, None, 0) != 0:
        raise OSError(ctypes.get_errno(), "get_mempolicy failed")
    nodes = [w * 64 + b for w in range(16) for b in range(64) if mask[w] >> b & 1]
    return _MODE_NAMES.get(mode.value & 0xFF, str(mode.value)), nodes


@njit(parallel=True, cache=True)
def _fill(a, v):
    for i in prange(a.size):  # static schedule: thread t writes (and so places) the t-th chunk
        a[i] = v


def first_touch(shape, dtype=np.float32, value=0.0) -> np.ndarray:
    """A new array whose pages are first written by this rank's Numba threads, in the chunks they will use."""
    out = np.empty(shape, dtype)
    if out.size:
        _fill(out.reshape(-1), out.dtype.type(value))
    return out
