"""The launcher flags that give the same placement: MPICH (Hydra), Open MPI and Slurm.

MPICH and Open MPI get their own vocabulary (``-bind-to``/``-map-by``,
``--map-by ppr:..:PE=..``/``--bind-to``); Slurm gets explicit per-rank
masks (``--cpu-bind=mask_cpu:...``), computed from the same placement as
:func:`numa.bind`, so the three agree on this machine's shape.
"""

from __future__ import annotations

from .placement import place
from .topology import Topology

__all__ = ["flags"]


def _hex(cpus) -> str:
    return hex(sum(1 << c for c in cpus))


def flags(topo: Topology, ranks: int, policy: str = "compact", threads: int | None = None) -> dict[str, str]:
    """``{"mpich": ..., "openmpi": ..., "slurm": ...}`` for ``ranks`` ranks per node."""
    cpus = place(topo, ranks, policy, threads)
    per = len(cpus[0])
    if policy == "socket":
        mpich = "-bind-to socket -map-by socket"
        ompi = "--map-by ppr:1:package --bind-to package"
    elif policy == "spread":
        mpich = f"-bind-to core:{per} -map-by numa"
        ompi = f"--map-by ppr:{-(-ranks // len(topo.nodes))}:numa:PE={per} --bind-to core"
    else:
        mpich = f"-bind-to core:{per} -map-by core:{per}"
        ompi = f"--map-by slot:PE={per} --bind-to core"
    slurm = f"--cpu-bind=verbose,mask_cpu:{','.join(_hex(c) for c in cpus)} --cpus-per-task={per}"
    return {"mpich": mpich, "openmpi": ompi, "slurm": slurm}
