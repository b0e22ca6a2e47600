"""Progress lines on stderr for the long measurements, when someone is watching.

``python -m collectives.alphabeta`` takes over a minute by default and
``python -m collectives.bench`` tens of seconds; each prints one line per
pass or size as it goes, on rank 0's stderr, only when that ends on a
terminal (so logs, pipes and batch jobs stay as they were) and not
``--quiet``::

    # python -m collectives.bench: 3/25 done (16, pass 1/1), 2 s

Under ``mpiexec`` a rank's stderr is a pipe to the launcher, never a
terminal itself: :func:`stderr_reaches_terminal` follows it up through the
launcher's processes.
"""

from __future__ import annotations

import os
import sys
import time

from mpi4py import MPI


class Progress:
    """Counts steps of a known total and reports each on stderr when enabled.

    Parameters
    ----------
    label : str
        What is running, e.g. ``"collectives.bench"``.
    total : int
        Steps expected; each call of the object is one.
    enabled : bool
        Print the lines (else only count).
    stream : file, optional
        Where to print (default ``sys.stderr`` at call time).
    """

    def __init__(self, label: str, total: int, enabled: bool, stream=None):
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        self.done = 0
        self.start = time.perf_counter()

    @classmethod
    def for_terminal(cls, label: str, total: int, quiet: bool, comm: MPI.Comm) -> "Progress":
        """Enabled on rank 0 of ``comm`` when its stderr reaches a terminal and not ``quiet``."""
        return cls(label, total, not quiet and comm.Get_rank() == 0 and stderr_reaches_terminal())

    def __call__(self, what: str) -> None:
        """One more step done; ``what`` says which."""
        self.done += 1
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"# {self.label}: {self.done}/{self.total} done ({what}), {elapsed:.0f} s",
                  file=self.stream or sys.stderr, flush=True)


#: Programs that start ranks and forward their output (``/proc/PID/comm``, the first 15 characters).
LAUNCHERS = ("mpiexec", "mpirun", "orterun", "prterun", "srun")


def _parent_and_fds(pid: int) -> tuple[int, set[str]]:
    with open(f"/proc/{pid}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return parent, fds


def stderr_reaches_terminal(max_hops: int = 4) -> bool:
    """Whether what this process writes to stderr ends on a terminal.

    True when stderr is a terminal; else, while it is a pipe or socket that
    the parent process holds the other end of (``mpiexec`` and its proxy
    forward a rank's output so), whether a launcher among the parents (see
    :data:`LAUNCHERS`, at most ``max_hops`` up) writes to a terminal.  A pipe
    into another program (``| tee log``), a file, or a system without
    ``/proc`` gives False.
    """
    if sys.stderr.isatty():
        return True
    try:
        pid = os.getpid()
        target = os.readlink(f"/proc/{pid}/fd/2")
        for _ in range(max_hops):
            if not target.startswith(("pipe:", "socket:")):
                return False
            parent, held = _parent_and_fds(pid)
            if parent <= 1 or target not in held:
                return False
            pid, target = parent, os.readlink(f"/proc/{parent}/fd/2")
            if target.startswith(("/dev/pts/", "/dev/tty")):
                with open(f"/proc/{pid}/comm") as f:
                    return f.read().strip().startswith(LAUNCHERS)
    except (OSError, ValueError, IndexError):
        return False
    return False
