"""Hand-written MPI collectives over mpi4py point-to-point, with the library's own beside them.

>>> import numpy as np, collectives                          # doctest: +SKIP
>>> x = np.ones(1 << 20, np.float32)
>>> collectives.allreduce(x, x, algorithm="ring")           # in place
"""

from .algorithms import schedule
from .errors import CollectiveError
from .runtime import traffic
from .runtime.api import allgather, allreduce, broadcast, reduce_scatter
from .runtime.communicator import cuda_aware, set_check
from .runtime.pending import Pending, allreduce_start
from .runtime.persistent import PersistentAllreduce, allreduce_init
from .runtime.registry import ALGORITHMS

__all__ = [
    "allreduce",
    "allreduce_start",
    "Pending",
    "allreduce_init",
    "PersistentAllreduce",
    "allgather",
    "reduce_scatter",
    "broadcast",
    "ALGORITHMS",
    "CollectiveError",
    "set_check",
    "cuda_aware",
    "schedule",
    "traffic",
]
