"""The machine's shape: sockets, NUMA nodes, cores and their SMT siblings, from sysfs or hwloc.

``read()`` takes hwloc's XML (``lstopo-no-graphics --of xml``) when hwloc is
installed and sysfs otherwise; ``from_sysfs(root)`` reads any tree laid out
like ``/sys/devices/system`` (the tests build synthetic ones: our machines
have a single NUMA node).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["Topology", "Core", "parse_cpulist", "format_cpulist", "from_sysfs", "from_hwloc_xml", "read"]


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (the kernel's list format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(cpus))


def format_cpulist(cpus) -> str:
    """The inverse of :func:`parse_cpulist`."""
    cpus = sorted(set(cpus))
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True)
class Core:
    """One physical core: its socket, NUMA node and hardware threads (first = the one to pin)."""

    socket: int
    node: int
    cpus: tuple[int, ...]


@dataclass
class Topology:
    """Cores in order (socket, node, first CPU); ``distances[i][j]`` is the SLIT distance of nodes i, j."""

    cores: list[Core]
    distances: dict[int, dict[int, int]] = field(default_factory=dict)
    source: str = "sysfs"

    @property
    def sockets(self) -> list[int]:
        return sorted({c.socket for c in self.cores})

    @property
    def nodes(self) -> list[int]:
        return sorted({c.node for c in self.cores})

    def cpus_of_node(self, node: int) -> list[int]:
        return sorted(cpu for c in self.cores if c.node == node for cpu in c.cpus)

    def node_of_cpu(self, cpu: int) -> int:
        for c in self.cores:
            if cpu in c.cpus:
                return c.node
        raise KeyError(f"cpu {cpu} is not in this topology")

    def describe(self) -> str:
        smt = max((len(c.cpus) for c in self.cores), default=1)
        return (f"{len(self.sockets)} socket(s), {len(self.nodes)} NUMA node(s), {len(self.cores)} cores, "
                f"{smt} thread(s) per core ({self.source})")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def from_sysfs(root: str = "/sys/devices/system", allowed=None) -> Topology:
    """Read ``root/cpu/cpuN/topology`` and ``root/node/nodeN/{cpulist,distance}``.

    ``allowed``: CPUs to keep (default: the online ones); a machine without
    ``node/`` directories is one NUMA node.
    """
    cpu_dir = os.path.join(root, "cpu")
    node_dir = os.path.join(root, "node")
    online = parse_cpulist(_read(os.path.join(cpu_dir, "online"))) if os.path.exists(
        os.path.join(cpu_dir, "online")) else sorted(
        int(m.group(1)) for d in os.listdir(cpu_dir) if (m := re.fullmatch(r"cpu(\d+)", d)))
    keep = set(online if allowed is None else set(online) & set(allowed))
    node_of: dict[int, int] = {}
    distances: dict[int, dict[int, int]] = {}
    if os.path.isdir(node_dir):
        nodes = sorted(int(m.group(1)) for d in os.listdir(node_dir) if (m := re.fullmatch(r"node(\d+)", d)))
        for n in nodes:
            for cpu in parse_cpulist(_read(os.path.join(node_dir, f"node{n}", "cpulist"))):
                node_of[cpu] = n
            dist_file = os.path.join(node_dir, f"node{n}", "distance")
            if os.path.exists(dist_file):
                distances[n] = dict(zip(nodes, (int(x) for x in _read(dist_file).split())))
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in sorted(keep):
        topo = os.path.join(cpu_dir, f"cpu{cpu}", "topology")
        socket = int(_read(os.path.join(topo, "physical_package_id")))
        siblings = parse_cpulist(_read(os.path.join(topo, "thread_siblings_list")))
        cores.setdefault((socket, min(siblings)), [])
        cores[(socket, min(siblings))].append(cpu)
    out = [Core(socket, node_of.get(cpus[0], 0), tuple(sorted(cpus))) for (socket, _), cpus in cores.items()]
    out.sort(key=lambda c: (c.socket, c.node, c.cpus[0]))
    return Topology(out, distances or {0: {0: 10}}, "sysfs")


def _mask(text: str | None) -> list[int]:
    """hwloc's cpuset ``"0x0000000f,0xffffffff"`` (32-bit words, most significant first) -> CPUs."""
    if not text:
        return []
    value = 0
    for word in text.split(","):
        value = (value << 32) | int(word, 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def from_hwloc_xml(xml: str) -> Topology:
    """Parse ``lstopo --of xml`` (hwloc 1.x and 2.x): Package, NUMANode, Core, PU objects with cpusets."""
    root = ET.fromstring(xml)
    objects = list(root.iter("object"))
    node_cpus = {int(o.get("os_index", i)): set(_mask(o.get("cpuset")))
                 for i, o in enumerate(x for x in objects if x.get("type") == "NUMANode")}
    sockets = {int(o.get("os_index", i)): set(_mask(o.get("cpuset")))
               for i, o in enumerate(x for x in objects if x.get("type") == "Package")}
    cores = []
    for o in objects:
        if o.get("type") != "Core":
            continue
        cpus = tuple(sorted(int(pu.get("os_index")) for pu in o.iter("object") if pu.get("type") == "PU"))
        if not cpus:
            continue
        socket = next((s for s, cs in sockets.items() if cpus[0] in cs), 0)
        node = next((n for n, cs in node_cpus.items() if cpus[0] in cs), 0)
        cores.append(Core(socket, node, cpus))
    cores.sort(key=lambda c: (c.socket, c.node, c.cpus[0]))
    distances: dict[int, dict[int, int]] = {}
    for d in root.iter("distances2"):  # hwloc 2: values row by row over the listed nodes
        if d.get("type") != "NUMANode":
            continue
        idx = [int(v) for e in d.iter("indexes") for v in e.text.split()]
        vals = [int(float(v)) for e in d.iter("u64values") for v in e.text.split()]
        n = len(idx)
        distances = {idx[i]: {idx[j]: vals[i * n + j] for j in range(n)} for i in range(n)} if len(vals) == n * n else {}
    if not distances:
        distances = {n: {m: 10 if n == m else 20 for m in node_cpus} for n in node_cpus} or {0: {0: 10}}
    return Topology(cores, distances, "hwloc")


def read(allowed=None) -> Topology:
    """This machine: hwloc's view when ``lstopo-no-graphics`` is installed, else sysfs."""
    if allowed is None:
        allowed = os.sched_getaffinity(0)
    lstopo = shutil.which("lstopo-no-graphics") or shutil.which("lstopo")
    if lstopo:
        try:
            xml = subprocess.run([lstopo, "--of", "xml", "--whole-system"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
            topo = from_hwloc_xml(xml)
            if topo.cores:
                topo.cores = [c for c in topo.cores if set(c.cpus) & set(allowed)]
                return topo
        except (OSError, subprocess.SubprocessError, ET.ParseError, ValueError):
            pass  # fall back to sysfs
    return from_sysfs(allowed=allowed)
