"""Whether the MPI library takes device (CUDA) memory: asked once per communicator, agreed by every rank.

In this order, on each rank:

1. ``COLLECTIVES_CUDA_AWARE``: ``1`` (or true, yes, on) or ``0`` (false, no,
   off) decides; ``auto`` or unset asks the library;
2. MPI 4.1's info key ``mpi_memory_alloc_kinds`` on ``MPI_COMM_WORLD``:
   a ``cuda`` kind whose restrictors include ``device`` (or that has none)
   says yes; its absence says nothing (the key lists the kinds the program
   asked for at start, and MPICH lists ``mpi,system`` by default);
3. the vendor query in the library mpi4py loaded, through :mod:`ctypes`:
   MPICH's ``MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA, &flag)``, else
   Open MPI's ``MPIX_Query_cuda_support()``;
4. otherwise not.

The communicator's answer is the minimum over its ranks
(:func:`collectives.runtime.communicator.library_comm` gathers it with
what it gathers anyway, so it costs no message): one rank that cannot take
device memory makes every rank stage.  ``collectives.cuda_aware(comm)``
(:func:`collectives.runtime.communicator.cuda_aware`) reports it, and the
bench's header prints it.
"""

from __future__ import annotations

import ctypes
import os

from mpi4py import MPI

from . import native

__all__ = ["local", "setting_problem", "from_info", "from_vendor", "VARIABLE"]

#: The override's environment variable.
VARIABLE = "COLLECTIVES_CUDA_AWARE"
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
#: MPICH's ``MPIX_GPU_SUPPORT_CUDA`` (mpi.h).
_MPIX_GPU_SUPPORT_CUDA = 0


def setting_problem() -> str | None:
    """What is wrong with ``$COLLECTIVES_CUDA_AWARE``, or None."""
    value = os.environ.get(VARIABLE, "auto").strip().lower()
    if value in _ON + _OFF + ("auto", ""):
        return None
    return (f"{VARIABLE}={os.environ[VARIABLE]!r} is none of {', '.join(_ON)} (CUDA-aware), "
            f"{', '.join(_OFF)} (not) or auto (ask the MPI library)")


def local() -> tuple[bool, str]:
    """This rank's answer, and what gave it (for the bench header and messages).

    Call :func:`setting_problem` first: an unknown setting counts as ``auto`` here.
    """
    value = os.environ.get(VARIABLE, "auto").strip().lower()
    if value in _ON:
        return True, f"{VARIABLE}={value}"
    if value in _OFF:
        return False, f"{VARIABLE}={value}"
    if from_info():
        return True, "mpi_memory_alloc_kinds"
    vendor = from_vendor()  # asked too where the info key lists no cuda kind: it lists only kinds requested
    if vendor is not None:
        return vendor
    return False, "neither mpi_memory_alloc_kinds nor a vendor query"


def from_info() -> bool | None:
    """What MPI 4.1's ``mpi_memory_alloc_kinds`` on ``MPI_COMM_WORLD`` says; None where it is absent."""
    try:
        info = MPI.COMM_WORLD.Get_info()
    except (MPI.Exception, NotImplementedError):
        return None
    try:
        kinds = info.Get("mpi_memory_alloc_kinds")
    finally:
        info.Free()
    if kinds is None:
        return None
    return any(_takes_device(kind) for kind in kinds.split(","))


def _takes_device(kind: str) -> bool:
    """Whether one kind of ``mpi_memory_alloc_kinds`` (``name[:restrictor[:...]]``) covers CUDA device memory."""
    name, *restrictors = kind.strip().split(":")
    return name == "cuda" and (not restrictors or "device" in restrictors)


def from_vendor() -> tuple[bool, str] | None:
    """The vendor query's answer and its name, or None where the library has neither query."""
    try:
        lib = native.library()
    except OSError:
        return None
    query = getattr(lib, "MPIX_GPU_query_support", None)
    if query is not None:
        query.restype, query.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        flag = ctypes.c_int(0)
        if query(_MPIX_GPU_SUPPORT_CUDA, ctypes.byref(flag)) == 0:
            return bool(flag.value), "MPIX_GPU_query_support"
    query = getattr(lib, "MPIX_Query_cuda_support", None)
    if query is not None:
        query.restype, query.argtypes = ctypes.c_int, []
        return bool(query()), "MPIX_Query_cuda_support"
    return None
