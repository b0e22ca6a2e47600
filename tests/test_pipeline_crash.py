"""A stage that dies mid-step ends the whole pipeline job: its neighbour, blocked in a receive, does not hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import crashed_runs_cleaned_up

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Rank 1 (the last stage) is killed by SIGKILL in its 30th layer forward: mid-step, in the first epoch, while
#: rank 0 waits for a gradient it will never receive.
DIES_MID_STEP = """
import os, signal
from mpi4py import MPI
from training import sync_sgd
from training.layers import linear

forward, calls = linear.Linear.forward, [0]

def dying(self, x):
    calls[0] += 1
    if MPI.COMM_WORLD.Get_rank() == 1 and calls[0] == 30:
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(self, x)

linear.Linear.forward = dying
sync_sgd.run(["--pipeline-stages", "2", "--micro-batches", "4", "--epochs", "1", "--quiet"])
"""


def test_a_stage_that_dies_mid_step_ends_the_job():
    start = time.monotonic()
    with crashed_runs_cleaned_up():  # the killed rank leaves MPICH's shared memory
        out = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py", "-c", DIES_MID_STEP],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode != 0, out.stdout + out.stderr
    assert "KILLED" in out.stdout + out.stderr or "signal 9" in out.stdout + out.stderr, out.stdout + out.stderr
    assert time.monotonic() - start < 60
