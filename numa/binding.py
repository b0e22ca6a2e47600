"""Bind this rank, and its Numba and BLAS threads, to CPUs; optionally set its memory policy.

``bind(policy)`` is the library call training uses (``--bind spread``):
it reads the topology, places the node's ranks (:mod:`numa.placement`),
pins this process with ``sched_setaffinity``, sets Numba and BLAS to one
thread per core given (and ``NUMBA_NUM_THREADS`` to match Numba's pool, see
:func:`_settle_numba_pool`), and sets the memory policy to the rank's NUMA node.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from . import memory, threads
from .placement import place
from .topology import Topology, format_cpulist, read

__all__ = ["Binding", "bind", "current"]


@dataclass
class Binding:
    """What one rank runs on: CPUs, their NUMA nodes, the memory policy and thread counts."""

    host: str
    rank: int
    local_rank: int
    cpus: list[int]
    nodes: list[int]
    mempolicy: str
    mempolicy_nodes: list[int]
    numba_threads: int
    blas_threads: int | None

    def line(self) -> str:
        return (f"host {self.host} rank {self.rank:>3} local {self.local_rank:>2} cpus {format_cpulist(self.cpus):>8} "
                f"numa {format_cpulist(self.nodes):>4} mem {self.mempolicy}"
                f"{'(' + format_cpulist(self.mempolicy_nodes) + ')' if self.mempolicy_nodes else ''} "
                f"threads numba {self.numba_threads} blas {self.blas_threads}")


def current(rank: int = 0, local_rank: int = 0, topo: Topology | None = None) -> Binding:
    """This process's binding as the kernel reports it."""
    topo = topo or read(allowed=range(os.cpu_count() or 1))
    cpus = sorted(os.sched_getaffinity(0))
    nodes = sorted({topo.node_of_cpu(c) for c in cpus if any(c in core.cpus for core in topo.cores)})
    mode, mnodes = memory.policy() if memory.available() else ("unknown", [])
    t = threads.current()
    return Binding(socket.gethostname(), rank, local_rank, cpus, nodes, mode, mnodes, t["numba"], t["blas"])


def _settle_numba_pool(n: int) -> None:
    """Make Numba's thread pool ``n`` threads if it is not running yet, and its configuration agree with it.

    Numba re-reads its configuration at every compile, and raises there if
    ``NUMBA_NUM_THREADS`` (or, unset, the size of the affinity mask just
    changed) differs from the size of a thread pool already launched.  So
    the variable is set to the pool's size once it runs (the rank then uses
    ``n`` of those threads, see :func:`numa.threads.configure`), and to
    ``n``, read at once, before; child processes see the same value.
    """
    import numba
    from numba.core.config import reload_config
    from numba.np.ufunc import parallel

    if parallel._is_initialized:  # Numba's own flag: the pool has been launched
        os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
        reload_config()


def bind(policy: str = "compact", comm=None, threads_per_rank: int | None = None, mem: str | None = "preferred",
         smt: bool = False) -> Binding:
    """Pin this rank by ``policy`` among the ranks of its node (collective over ``comm``).

    ``mem``: ``"preferred"`` or ``"bind"`` to the rank's NUMA node,
    ``"local"``, or None to leave the policy alone.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD if comm is None else comm
    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = node_comm.Get_rank(), node_comm.Get_size()
    node_comm.Free()
    topo = read(allowed=range(os.cpu_count() or 1))
    error = None
    try:
        cpus = place(topo, local_size, policy, threads_per_rank, smt)[local_rank]
    except ValueError as e:
        error = str(e)
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise ValueError(f"cannot bind: {errors[0]}")
    os.sched_setaffinity(0, cpus)
    n = len(cpus)  # one thread per CPU given (first threads of cores, or all siblings with smt)
    _settle_numba_pool(n)
    threads.configure(n)
    if mem is not None and memory.available():
        memory.set_policy(mem, topo.node_of_cpu(cpus[0]))
    return current(comm.Get_rank(), local_rank, topo)
