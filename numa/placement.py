"""Which cores each rank of a node gets: compact, spread over NUMA nodes, or one rank per socket.

A placement is a list, one entry per local rank, of the CPUs that rank may
run on: ``threads`` whole cores each, the first hardware thread of each
core (``smt=True`` adds the siblings).  Ranks never share a core.
"""

from __future__ import annotations

from .topology import Core, Topology

__all__ = ["POLICIES", "place"]

POLICIES = ("compact", "spread", "socket")


def _cpus(cores: list[Core], smt: bool) -> list[int]:
    return sorted(cpu for c in cores for cpu in (c.cpus if smt else c.cpus[:1]))


def place(topo: Topology, ranks: int, policy: str = "compact", threads: int | None = None,
          smt: bool = False) -> list[list[int]]:
    """CPUs for each of ``ranks`` local ranks.

    - ``compact``: consecutive cores, rank after rank (fills a NUMA node,
      then the next: neighbours share caches);
    - ``spread``: ranks dealt round-robin over the NUMA nodes, each rank's
      cores inside one node (every node's memory bandwidth used);
    - ``socket``: one rank per socket, all its cores (``ranks`` must equal
      the sockets).

    ``threads``: cores per rank (default: as many as fit evenly).  Raises
    ``ValueError`` when the ranks do not fit, or ``ranks`` or ``threads`` is below 1.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown placement {policy!r}; use one of {', '.join(POLICIES)}")
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 core per rank, got {threads}")
    cores = topo.cores
    if policy == "socket":
        if ranks != len(topo.sockets):
            raise ValueError(f"'socket' places one rank per socket: {len(topo.sockets)} socket(s), {ranks} ranks")
        return [_cpus([c for c in cores if c.socket == s], smt) for s in topo.sockets]
    nodes = topo.nodes
    per_node = {n: [c for c in cores if c.node == n] for n in nodes}
    if policy == "compact":
        per = threads or max(1, len(cores) // ranks)
        if per * ranks > len(cores):
            raise ValueError(f"{ranks} ranks x {per} cores do not fit in {len(cores)} cores")
        return [_cpus(cores[r * per : (r + 1) * per], smt) for r in range(ranks)]
    # spread: rank r goes to node r mod N, the (r // N)-th block of that node
    counts = [len(range(i, ranks, len(nodes))) for i in range(len(nodes))]
    per = threads or max(1, min(len(per_node[n]) // max(k, 1) for n, k in zip(nodes, counts) if k))
    out = []
    for r in range(ranks):
        n = nodes[r % len(nodes)]
        k = r // len(nodes)
        block = per_node[n][k * per : (k + 1) * per]
        if len(block) < per:
            raise ValueError(f"{ranks} ranks x {per} cores do not fit spread over NUMA nodes {nodes}")
        out.append(_cpus(block, smt))
    return out
