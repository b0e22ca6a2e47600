"""Topology discovery and pinning of ranks, threads and memory on CPU nodes."""

from .binding import Binding, bind, current
from .launcher import flags
from .placement import POLICIES, place
from .topology import Topology, from_hwloc_xml, from_sysfs, read

__all__ = ["Binding", "bind", "current", "flags", "POLICIES", "place", "Topology", "from_hwloc_xml",
           "from_sysfs", "read"]
