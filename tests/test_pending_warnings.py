"""A nonblocking all-reduce that is never waited is named in a warning at exit, on every rank."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np, collectives
x = np.ones(1000, np.float32)
collectives.allreduce_start(x, x, algorithm="ring", name="grads")
y = np.ones(10, np.float64)
collectives.allreduce_start(y, y, algorithm="mpi").wait()
print("exiting", flush=True)
"""


def test_an_unwaited_start_is_named_at_exit_on_every_rank():
    out = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py", "-c", SCRIPT],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("exiting") == 2
    lines = [ln for ln in out.stderr.splitlines() if "RuntimeWarning" in ln]
    assert len(lines) == 2, out.stderr  # one per rank, naming the one left, not the one waited
    assert all("1 started all-reduce(s) never waited: all-reduce 'grads' of 1000 float32" in ln for ln in lines)
