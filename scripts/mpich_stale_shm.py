"""Remove the shared memory that crashed MPICH steps of this Slurm job left on this node.

Run by ``jobs/common.sh`` (``clear_stale_shm``: one task per node) before a
job's first step and after a failed one; see that file's header for why.
MPICH names a node's segment ``/dev/shm/mpich_{shm,vci}_<hash>_<node>``, the
hash the FNV-1a of the PMI job id, ``"<job id>.<step id>"`` under
``srun --mpi=pmi2``.  A segment some process still maps is kept.
"""

from __future__ import annotations

import glob
import os

SHM = "/dev/shm"
STEPS = 4096  # step ids of one job checked


def fnv1a(text: str) -> str:
    """32-bit FNV-1a of ``text``, in lower-case hex without leading zeros (MPICH's spelling)."""
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{h:x}"


def segment(pmi_job_id: str, node: int = 0, kind: str = "shm") -> str:
    """Path of MPICH's ``kind`` segment for node ``node`` of the world with ``pmi_job_id``."""
    return f"{SHM}/mpich_{kind}_{fnv1a(pmi_job_id)}_{node}"


def stale(job: str) -> list[str]:
    """Names in /dev/shm of MPICH segments of any step of Slurm job ``job``."""
    ours = {fnv1a(f"{job}.{step}") for step in range(STEPS)}
    out = []
    for name in os.listdir(SHM):
        parts = name.split("_")
        if len(parts) == 4 and parts[:2] in (["mpich", "shm"], ["mpich", "vci"]) and parts[2] in ours:
            out.append(name)
    return out


def mapped() -> set[str]:
    """Paths of MPICH segments that some process on this node maps."""
    out = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                out.update(line.split()[-1] for line in f if f"{SHM}/mpich_" in line)
        except OSError:
            pass
    return out


def main() -> int:
    names = stale(os.environ["SLURM_JOB_ID"])
    busy = mapped() if names else set()
    node = os.uname().nodename
    for name in names:
        path = f"{SHM}/{name}"
        if path in busy:
            continue
        try:
            os.unlink(path)
            print(f"removed stale {path} on {node}")
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"cannot remove stale {path} on {node}: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
