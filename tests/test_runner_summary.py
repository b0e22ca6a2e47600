"""The closing line of a test run counts every run that timed out, died or lost a rank's XML as a failure.

The JUnit XML here is written by real pytest runs of a tiny test file; the
``runs.txt`` record is written as scripts/run_tests.sh writes it, and the
summariser runs as that script runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARIZE = os.path.join(ROOT, "scripts", "summarize_junit.py")
NO_SLOW_PLUGINS = ("-p", "no:hypothesispytest")  # where Hypothesis is installed, its plugin takes seconds to load

TINY_TESTS = """
import os
import pytest

def test_a():
    assert not os.environ.get("FAIL_A")

def test_b():
    pytest.skip("skipped everywhere")
"""


@pytest.fixture(scope="module")
def junit(tmp_path_factory):
    """Real JUnit XML: ``passing.xml`` (test_a passes, test_b skipped) and ``failing.xml`` (test_a fails)."""
    where = tmp_path_factory.mktemp("junit")
    (where / "test_tiny.py").write_text(TINY_TESTS)
    for name, fail in (("passing", ""), ("failing", "1")):
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NO_SLOW_PLUGINS,
                        f"--junitxml={where / name}.xml", "test_tiny.py"],
                       cwd=where, env=dict(os.environ, FAIL_A=fail), capture_output=True, timeout=120)
        assert (where / f"{name}.xml").exists()
    return where


def _results(tmp_path, junit, runs: str, files: dict[str, str]):
    """A results directory as run_tests.sh leaves it: ``runs.txt`` and each file copied from ``junit``."""
    (tmp_path / "runs.txt").write_text(runs)
    for name, source in files.items():
        shutil.copyfile(junit / source, tmp_path / name)
    return tmp_path


def _summarize(results):
    out = subprocess.run([sys.executable, SUMMARIZE, str(results)], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout.splitlines()


def test_a_test_failing_on_one_rank_counts_once_as_failed(tmp_path, junit):
    results = _results(tmp_path, junit, "serial 0\nP=2 1\n",
                       {"serial.xml": "passing.xml", "mpi-P2-rank0.xml": "passing.xml",
                        "mpi-P2-rank1.xml": "failing.xml"})
    code, lines = _summarize(results)
    assert lines[-1] == "tests: 1 passed, 1 failed, 2 skipped"
    assert [line for line in lines if "FAILED" in line] == ["  FAILED P=2::test_tiny::test_a"]
    assert code == 1


BOTH_RANKS = {"mpi-P2-rank0.xml": "passing.xml", "mpi-P2-rank1.xml": "passing.xml"}
RANK0_ONLY = {"mpi-P2-rank0.xml": "passing.xml"}


@pytest.mark.parametrize("run_exit", [0, 5], ids=["passed", "no-tests-selected"])
def test_a_clean_run_reports_no_failure(tmp_path, junit, run_exit):
    code, lines = _summarize(_results(tmp_path, junit, f"P=2 {run_exit}\n", BOTH_RANKS))
    assert lines == ["tests: 1 passed, 0 failed, 1 skipped"] and code == 0


@pytest.mark.parametrize("run_exit, files, reason", [
    (124, {}, "ran past its time limit"),
    (137, RANK0_ONLY, "ran past its time limit"),
    (139, BOTH_RANKS, "died of signal 11"),
    (9, RANK0_ONLY, "no readable XML from mpi-P2-rank1.xml"),  # MPICH's mpiexec: a rank killed by signal 9
    (0, RANK0_ONLY, "no readable XML from mpi-P2-rank1.xml"),
    (1, BOTH_RANKS, "exited 1 with no failing test"),
], ids=["timed-out", "killed-after-time-limit", "signal", "rank-lost", "rank-lost-exit-0", "exit-without-failure"])
def test_a_run_that_went_wrong_counts_as_a_failure(tmp_path, junit, run_exit, files, reason):
    results = _results(tmp_path, junit, f"serial 0\nP=2 {run_exit}\n", {"serial.xml": "passing.xml", **files})
    code, lines = _summarize(results)
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("  FAILED P=2: ") and reason in failed[0], lines
    passed = 2 if "mpi-P2-rank0.xml" in files else 1
    assert lines[-1] == f"tests: {passed} passed, 1 failed, {passed} skipped"
    assert code == 1


def test_an_unreadable_xml_counts_as_missing(tmp_path, junit):
    results = _results(tmp_path, junit, "P=2 0\n", RANK0_ONLY)
    (results / "mpi-P2-rank1.xml").write_text((junit / "passing.xml").read_text()[:40])  # cut off mid-write
    code, lines = _summarize(results)
    assert "  FAILED P=2: no readable XML from mpi-P2-rank1.xml" in lines and code == 1


def test_a_directory_without_runs_record_is_refused(tmp_path):
    out = subprocess.run([sys.executable, SUMMARIZE, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "runs.txt" in out.stderr
