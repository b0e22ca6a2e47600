"""Progress lines: on a terminal's stderr, one per size and pass (bench); none with --quiet or to a file.

alphabeta's, one per pass, are checked where it runs: tests/test_alphabeta_mpi.py.
"""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

import pytest

from collectives import bench, progress
from collectives.progress import Progress, stderr_reaches_terminal


def test_progress_counts_and_prints_only_when_enabled():
    shown, hidden = io.StringIO(), io.StringIO()
    on = Progress("tool", 2, True, shown)
    off = Progress("tool", 2, False, hidden)
    for what in ("4, pass 1/1", "8, pass 1/1"):
        on(what)
        off(what)
    lines = shown.getvalue().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == ["# tool: 1/2 done (4, pass 1/1)",
                                                          "# tool: 2/2 done (8, pass 1/1)"]
    assert all(line.endswith(" s") for line in lines)
    assert hidden.getvalue() == "" and off.done == 2


def test_a_file_is_not_a_terminal(capfd):
    assert not stderr_reaches_terminal()


def _launch(argv: list[str], timeout: float = 120) -> tuple[str, str]:
    """Run under ``mpiexec -n 2`` with stderr on a pseudo-terminal; return (stdout, what the terminal got)."""
    try:
        master, slave = pty.openpty()
    except OSError as e:
        pytest.skip(f"no pseudo-terminal here: {e}")
    cmd = ["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, text=True)
    os.close(slave)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                pytest.fail(f"no output for {timeout} s from {cmd}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's last writer closed it
                break
            if not chunk:
                break
            seen += chunk
        out, _ = proc.communicate(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, seen.decode(errors="replace")
    return out, seen.decode(errors="replace").replace("\r\n", "\n")


def test_bench_shows_progress_on_a_terminal_through_mpiexec():
    out, term = _launch(["-m", "collectives.bench", "--max-bytes", "8", "--passes", "2", "--algorithms", "ring"])
    steps = [line.split(" done")[0] for line in term.splitlines() if "done (" in line]
    assert steps == [f"# python -m collectives.bench: {k}/4" for k in (1, 2, 3, 4)], term
    assert "done (" not in out and "ring" in out  # progress on stderr only; rows on stdout as before


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_turns_progress_off(quiet, monkeypatch, capsys):
    monkeypatch.setattr(progress, "stderr_reaches_terminal", lambda: True)
    argv = ["--max-bytes", "8", "--passes", "2", "--algorithms", "ring"] + ["--quiet"] * quiet
    assert bench.main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "done (" in line]
    assert len(lines) == (0 if quiet else 4), lines
