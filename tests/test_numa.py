"""numa/: topology from synthetic sysfs trees and hwloc XML, placements, launcher flags, and real binding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from numa import flags, from_hwloc_xml, from_sysfs, place
from numa.topology import format_cpulist, parse_cpulist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def make_sysfs(root, sockets=2, nodes_per_socket=2, cores_per_node=8, smt=2):
    """A Linux-like tree: CPU c < cores is the first thread of core c, c + cores its sibling."""
    cores = sockets * nodes_per_socket * cores_per_node
    n_nodes = sockets * nodes_per_socket
    _write(f"{root}/cpu/online", f"0-{cores * smt - 1}")
    for cpu in range(cores * smt):
        core = cpu % cores
        t = f"{root}/cpu/cpu{cpu}/topology"
        _write(f"{t}/physical_package_id", str(core // (nodes_per_socket * cores_per_node)))
        _write(f"{t}/thread_siblings_list", format_cpulist([core + k * cores for k in range(smt)]))
    for n in range(n_nodes):
        cpus = [c + k * cores for c in range(n * cores_per_node, (n + 1) * cores_per_node) for k in range(smt)]
        _write(f"{root}/node/node{n}/cpulist", format_cpulist(cpus))
        same = lambda m: 10 if m == n else (16 if m // nodes_per_socket == n // nodes_per_socket else 32)  # noqa
        _write(f"{root}/node/node{n}/distance", " ".join(str(same(m)) for m in range(n_nodes)))
    return root


def test_cpulist_round_trip():
    assert parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpulist([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert parse_cpulist("") == []


def test_two_sockets_two_nodes_each_eight_cores_two_threads(tmp_path):
    topo = from_sysfs(make_sysfs(str(tmp_path)))
    assert topo.sockets == [0, 1] and topo.nodes == [0, 1, 2, 3] and len(topo.cores) == 32
    assert all(len(c.cpus) == 2 for c in topo.cores)
    assert topo.cores[0].cpus == (0, 32) and topo.node_of_cpu(40) == 1
    assert topo.distances[0] == {0: 10, 1: 16, 2: 32, 3: 32}
    assert "2 socket(s), 4 NUMA node(s), 32 cores, 2 thread(s) per core" in topo.describe()
    # compact: neighbours; spread: round robin over nodes; socket: one rank each
    assert place(topo, 4, "compact") == [list(range(8 * r, 8 * r + 8)) for r in range(4)]
    assert place(topo, 4, "compact", threads=2) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    spread = place(topo, 8, "spread")
    assert [topo.node_of_cpu(c[0]) for c in spread] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert all(len(c) == 4 for c in spread)
    assert place(topo, 2, "socket") == [list(range(16)), list(range(16, 32))]
    assert place(topo, 2, "socket", smt=True)[0] == sorted(list(range(16)) + list(range(32, 48)))
    cpus = [c for r in place(topo, 16, "spread") for c in r]
    assert len(cpus) == len(set(cpus)) == 32  # no two ranks share a core


def test_odd_shapes_and_refusals(tmp_path):
    topo = from_sysfs(make_sysfs(str(tmp_path), sockets=1, nodes_per_socket=3, cores_per_node=3, smt=1))
    assert topo.nodes == [0, 1, 2] and len(topo.cores) == 9
    assert [len(r) for r in place(topo, 3, "compact")] == [3, 3, 3]
    assert [topo.node_of_cpu(r[0]) for r in place(topo, 5, "spread", threads=1)] == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="do not fit"):
        place(topo, 10, "compact")
    with pytest.raises(ValueError, match="one rank per socket"):
        place(topo, 2, "socket")
    with pytest.raises(ValueError, match="unknown placement"):
        place(topo, 2, "scatter")
    # no node/ directory at all: one NUMA node
    flat = str(tmp_path / "flat")
    make_sysfs(flat, sockets=1, nodes_per_socket=1, cores_per_node=4, smt=1)
    shutil.rmtree(f"{flat}/node")
    assert from_sysfs(flat).nodes == [0]


def test_launcher_flags_agree_with_the_placement(tmp_path):
    topo = from_sysfs(make_sysfs(str(tmp_path)))
    f = flags(topo, 4, "compact")
    assert f["mpich"] == "-bind-to core:8 -map-by core:8"
    assert f["openmpi"] == "--map-by slot:PE=8 --bind-to core"
    assert f["slurm"].startswith("--cpu-bind=verbose,mask_cpu:0xff,0xff00,") and "--cpus-per-task=8" in f["slurm"]
    assert "ppr:2:numa:PE=4" in flags(topo, 8, "spread")["openmpi"]
    assert flags(topo, 2, "socket")["mpich"] == "-bind-to socket -map-by socket"


HWLOC = """<?xml version="1.0"?><topology version="2.0">
<object type="Machine" cpuset="0x0000000f">
 <object type="Package" os_index="0" cpuset="0x00000003">
  <object type="NUMANode" os_index="0" cpuset="0x00000003"/>
  <object type="Core" os_index="0" cpuset="0x00000001"><object type="PU" os_index="0" cpuset="0x00000001"/></object>
  <object type="Core" os_index="1" cpuset="0x00000002"><object type="PU" os_index="1" cpuset="0x00000002"/></object>
 </object>
 <object type="Package" os_index="1" cpuset="0x0000000c">
  <object type="NUMANode" os_index="1" cpuset="0x0000000c"/>
  <object type="Core" os_index="0" cpuset="0x0000000c"><object type="PU" os_index="2"/><object type="PU" os_index="3"/></object>
 </object>
</object>
<distances2 type="NUMANode" nbobjs="2" kind="5"><indexes length="2">0 1</indexes><u64values length="4">10 21 21 10</u64values></distances2>
</topology>"""


def test_hwloc_xml():
    topo = from_hwloc_xml(HWLOC)
    assert topo.source == "hwloc" and topo.sockets == [0, 1] and topo.nodes == [0, 1]
    assert [c.cpus for c in topo.cores] == [(0,), (1,), (2, 3)]
    assert topo.distances == {0: {0: 10, 1: 21}, 1: {0: 21, 1: 10}}


@pytest.mark.skipif(not shutil.which("lstopo-no-graphics"), reason="hwloc is not installed")
def test_this_machine_through_hwloc_matches_sysfs():
    from numa import read

    xml = subprocess.run(["lstopo-no-graphics", "--of", "xml", "--whole-system"], capture_output=True,
                         text=True, check=True).stdout
    hw, fs = from_hwloc_xml(xml), from_sysfs()
    assert [c.cpus for c in hw.cores] == [c.cpus for c in fs.cores]
    assert read().source == "hwloc"


def test_real_binding_and_memory_policy(tmp_path):
    """Two ranks on this machine: each on its own core, memory preferred on its node (read back)."""
    from numa import memory

    cores = len(os.sched_getaffinity(0))
    ranks = min(2, cores)
    js = tmp_path / "b.json"
    out = subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "numa",
                          "--bind", "compact", "--mem", "preferred", "--json", str(js)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    ranks_seen = json.loads(js.read_text())
    cpus = [tuple(r["cpus"]) for r in ranks_seen]
    assert len(set(cpus)) == ranks and all(len(c) == cores // ranks for c in cpus)
    assert all(r["numba_threads"] == cores // ranks for r in ranks_seen)
    if memory.available():
        assert all(r["mempolicy"] == "preferred" and r["mempolicy_nodes"] == [0] for r in ranks_seen)
    assert "cpus" in out.stdout and "mem preferred" in out.stdout


def test_expect_ranks_catches_a_wrong_world(tmp_path):
    out = subprocess.run([sys.executable, "-m", "numa", "--expect-ranks", "2"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 3 and "expected 2" in out.stderr


BIND_AFTER_THE_POOL_THEN_COMPILE = """
import numba, numpy as np
from mpi4py import MPI
import numa
from numa import threads
threads.configure(2)  # Numba's pool launched, as any collective or kernel does first
numa.bind("compact", MPI.COMM_SELF, threads_per_rank=1, mem=None)
f = numba.njit(lambda a: a.sum() + 1)  # a kernel compiled after the pinning: Numba re-reads its configuration
print(f(np.ones(3)), threads.current()["numba"])
"""


def test_binding_in_process_leaves_later_compiles_working():
    """Pinning to fewer cores than Numba's running pool used to make every later compile raise (one rank alone,
    leaving the others waiting): Numba re-reads NUMBA_NUM_THREADS and the affinity mask at each compile."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores")
    out = subprocess.run([sys.executable, "-c", BIND_AFTER_THE_POOL_THEN_COMPILE], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={k: v for k, v in dict(os.environ, PYTHONPATH=ROOT).items()
                                                     if k != "NUMBA_NUM_THREADS"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4.0", "1"]


def test_first_touch_and_policy_in_process():
    from numa import memory

    a = memory.first_touch((1000, 3), value=2.5)
    assert a.shape == (1000, 3) and (a == 2.5).all()
    if not memory.available():
        pytest.skip("libnuma is not available")
    mode, _ = memory.policy()
    assert mode in ("default", "local", "preferred", "bind", "interleave")
    with pytest.raises(ValueError, match="unknown memory policy"):
        memory.set_policy("everywhere")


def test_threads_below_one_are_refused_not_turned_into_bogus_flags(tmp_path):
    topo = from_sysfs(make_sysfs(str(tmp_path)))
    for threads in (0, -1):
        with pytest.raises(ValueError, match="threads must be >= 1 core per rank"):
            place(topo, 2, "compact", threads)
        with pytest.raises(ValueError, match="threads must be >= 1 core per rank"):
            flags(topo, 2, "spread", threads)


def test_a_memory_policy_on_a_node_that_does_not_exist_is_refused():
    from numa import memory

    if not memory.available():
        pytest.skip("libnuma is not available")
    nodes = memory.allowed_nodes()
    assert nodes and all(n >= 0 for n in nodes)
    before = memory.policy()
    for node in (max(nodes) + 1, 1 << 20, -1):
        for mode in ("preferred", "bind"):
            with pytest.raises(ValueError, match=f"NUMA node {node} does not exist"):
                memory.set_policy(mode, node)
    assert memory.policy() == before  # nothing changed


def test_an_unwritable_json_stops_before_binding(tmp_path, capsys):
    from collectives import cli
    from numa import __main__ as numa_main

    with pytest.raises(cli.AgreedExit) as e:
        numa_main.main(["--json", str(tmp_path / "missing" / "b.json")])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "--json cannot write" in err
