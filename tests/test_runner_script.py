"""scripts/run_tests.sh itself, on a tiny test file: it touches no directory but its own, and its closing line counts lost runs.

One real run of the script, with the pip install skipped (``KIT_TEST_INSTALL=0``)
and pytest's extra arguments pointing it at a tiny test file instead of tests/:
the serial run passes; at P=2 rank 1 is killed by SIGKILL; at P=3 every rank
hangs until the script's time limit (``LIMIT``) ends the run. About 15 s.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import crashed_runs_cleaned_up, launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 10  # seconds: the serial run and P=2 finish well within it; P=3 hangs until it

TINY_TESTS = """
import os
import signal
import time

import pytest
from mpi4py import MPI


def test_serial_passes():
    pass


@pytest.mark.mpi
def test_rank_lost_at_two_deadlock_at_three():
    comm = MPI.COMM_WORLD
    if comm.size == 2 and comm.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if comm.size == 3:
        time.sleep(600)
    comm.Barrier()
"""

STALE_XML = '<testsuites><testsuite><testcase classname="old" name="test_passed_long_ago"/></testsuite></testsuites>'


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The script's output, exit code, the results directory and an unrelated ``RESULTS`` directory."""
    where = tmp_path_factory.mktemp("run_tests")
    (where / "test_tiny.py").write_text(TINY_TESTS)
    unrelated = where / "someone_elses_results"  # RESULTS, a common name, inherited from the user's shell
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("not the test runner's")
    results = where / "results"  # already there, with a file of the user's and an older run's XML
    results.mkdir()
    (results / "notes.txt").write_text("mine")
    for rank in (0, 1):
        (results / f"mpi-P2-rank{rank}.xml").write_text(STALE_XML)
    env = dict(os.environ, RESULTS=str(unrelated), KIT_TEST_RESULTS=str(results), KIT_TEST_INSTALL="0",
               RANKS="2 3", LIMIT=str(LIMIT))
    only_the_tiny_file = [f"--ignore-glob={ROOT}/tests/test_*.py", "-p", "no:hypothesispytest",
                          str(where / "test_tiny.py")]
    with crashed_runs_cleaned_up():  # the killed and the deadlocked run leave MPICH's shared memory
        out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_tests.sh"), *only_the_tiny_file],
                             env=env, capture_output=True, text=True, timeout=10 * LIMIT)
    return out, results, unrelated


def test_only_the_files_the_script_writes_are_replaced(run):
    out, results, unrelated = run
    assert (unrelated / "keep.txt").exists(), "an inherited RESULTS directory was deleted"
    assert (results / "notes.txt").exists(), "a file the script does not write was deleted"
    assert (results / "serial.xml").exists() and (results / "runs.txt").exists(), out.stdout[-2000:]
    assert not (results / "mpi-P2-rank0.xml").exists(), "a rank that died left an older run's XML in place"


def test_closing_line_counts_the_lost_rank_and_the_deadlock(run):
    out, results, _ = run
    lines = out.stdout.splitlines()
    assert lines[-1] == "tests: 1 passed, 2 failed, 0 skipped", out.stdout[-3000:] + out.stderr[-2000:]
    assert any(line.startswith("  FAILED P=2: ") and "mpi-P2-rank1.xml" in line for line in lines)
    assert any(line.startswith("  FAILED P=3: ran past its time limit") for line in lines), out.stdout[-3000:]
    runs = dict(line.split() for line in (results / "runs.txt").read_text().splitlines())
    assert runs["serial"] == "0" and runs["P=2"] != "0" and runs["P=3"] in ("124", "137")
    assert out.returncode == 1


FAILING_TEST = """
import pytest


@pytest.mark.mpi
def test_fails_on_every_rank():
    assert False
"""


def test_a_run_with_failing_tests_exits_1_and_finalizes_mpi(tmp_path):
    """Failed tests are an agreed exit of every rank: exit 1, and MPI finalized, not aborted (its segment gone)."""
    (tmp_path / "test_failing.py").write_text(FAILING_TEST)
    results = tmp_path / "results"
    results.mkdir()
    out = launch(tmp_path, 2, "scripts/mpi_pytest.py", str(results), "-q", "-p", "no:cacheprovider",
                 "-p", "no:hypothesispytest", "--rootdir", str(tmp_path), str(tmp_path / "test_failing.py"))
    assert out.returncode == 1, out.stderr
    assert "1 failed" in out.stdout and "MPI_Abort" not in out.stderr
