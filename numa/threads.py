"""Threads per rank: the cores each MPI rank may use, given to Numba and to BLAS.

Sixteen ranks on sixteen cores must not each start sixteen threads.  The one
rule, used by the collectives' reduce kernel and by the training kernels:

1. ``threads`` passed explicitly (``--threads`` on the command lines) wins;
2. else ``NUMBA_NUM_THREADS`` in the environment (the user said so);
3. else Slurm's ``SLURM_CPUS_PER_TASK`` (cores allocated to this rank);
4. else the cores in this process's affinity mask: all of them when the
   launcher bound each rank to its own cores (``--bind-to core``,
   ``--cpu-bind``), or the mask shared by the ranks on this node (MPICH's
   ``MPI_LOCALNRANKS``, Open MPI's ``OMPI_COMM_WORLD_LOCAL_SIZE``, Slurm's
   ``SLURM_NTASKS_PER_NODE``, else the caller's count) when it did not.
   Whether ranks are bound is best told by comparing their masks
   (:func:`collectives.runtime.communicator.library_comm` does, over the node's ranks);
   without that, a mask smaller than the machine counts as bound.

BLAS (OpenBLAS, MKL, BLIS behind numpy) gets the same count through
``threadpoolctl`` when that is installed.  The first collective call
configures threads unless :func:`configure` was called before (a command
line's ``--threads``); an explicit call always applies.
"""

from __future__ import annotations

import os

__all__ = ["threads_per_rank", "local_ranks", "configure", "configure_once", "count", "current"]

_LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


def local_ranks(default: int = 1) -> int:
    """Ranks on this node as the launcher tells it (first set of MPICH, Open MPI, Slurm), else ``default``."""
    for var in _LOCAL_SIZE_VARS:
        value = os.environ.get(var, "")
        head = value.split("(")[0].split(",")[0]  # Slurm may write "4(x2),3"
        if head.isdigit() and int(head) > 0:
            return int(head)
    return max(1, int(default))


def threads_per_rank(
    threads: int | None = None, local_size: int | None = None, bound: bool | None = None
) -> int:
    """Threads this rank should run, by the rule in the module docstring.

    Parameters
    ----------
    threads : int, optional
        An explicit count; must be >= 1.
    local_size : int, optional
        Ranks on this node when the launcher does not say (e.g. from
        ``Split_type(COMM_TYPE_SHARED)``); default 1.
    bound : bool, optional
        Whether each rank of the node has its own cores (disjoint masks).
        Default: the mask is smaller than the machine.

    Returns
    -------
    int
        At least 1.
    """
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        return int(threads)
    for var in ("NUMBA_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    mask = len(os.sched_getaffinity(0))
    if bound is None:
        bound = mask < (os.cpu_count() or mask)
    if bound:
        return mask  # the launcher gave this rank its own cores
    return max(1, mask // local_ranks(local_size or 1))


_configured = False
_count = [0]  # Numba threads as last configured here; 0: not yet


def count() -> int:
    """This rank's Numba thread count, cheaply (kernels ask it on every call to skip
    the thread pool when there is one thread).  Set by :func:`configure`; before
    that, Numba's own count."""
    if not _count[0]:
        import numba

        _count[0] = numba.get_num_threads()
    return _count[0]



def configure(
    threads: int | None = None, local_size: int | None = None, bound: bool | None = None
) -> int:
    """Set Numba's and BLAS's thread counts for this rank; return the count.

    Parameters are those of :func:`threads_per_rank`.  Numba cannot run more
    threads than ``numba.config.NUMBA_NUM_THREADS`` (fixed when Numba
    loads); the count is capped there.
    """
    global _configured
    import numba

    n = min(threads_per_rank(threads, local_size, bound), numba.config.NUMBA_NUM_THREADS)
    _configured = True
    numba.set_num_threads(n)
    _count[0] = n
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # BLAS keeps its own default; current() says None
        return n
    try:  # Numba loads SciPy's BLAS on its first parallel kernel: load it now, so it is limited too
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass
    threadpool_limits(limits=n, user_api="blas")
    return n


def configure_once(local_size: int | None = None, bound: bool | None = None) -> None:
    """:func:`configure` by the rule, unless threads were configured already."""
    if not _configured:
        configure(None, local_size, bound)


def current() -> dict:
    """Threads in use now: ``{"numba": n, "blas": n or None}`` (None: threadpoolctl missing)."""
    import numba

    blas = None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        blas = max(counts) if counts else None
    return {"numba": numba.get_num_threads(), "blas": blas}
