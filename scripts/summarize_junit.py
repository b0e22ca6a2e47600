"""Add up a test run's exit codes and JUnit XML into one closing line: 'tests: N passed, N failed, N skipped'.

Usage: ``python scripts/summarize_junit.py RESULTS_DIR``, on the directory that
scripts/run_tests.sh wrote. Its ``runs.txt`` holds one line per run, the run's
name and its exit code::

    serial 0
    P=2 124

The serial run leaves ``serial.xml``; the run at P ranks leaves
``mpi-P{P}-rank{r}.xml`` for every rank r in 0..P-1 (scripts/mpi_pytest.py).

A test counts as failed if it failed or errored on any rank; otherwise as
skipped if any rank skipped it; otherwise as passed. A run counts as one more
failure when it ran past its time limit, died of a signal, left no readable
XML for some rank, or exited non-zero with no failing test to show for it.
The FAILED lines come first, the closing line last; exit code 1 if anything failed.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET

RUNS_FILE = "runs.txt"
TIMED_OUT = (124, 137)  # timeout(1): the limit passed; 137 when SIGKILL had to follow
NO_TESTS_COLLECTED = 5  # pytest's exit code when the filters select nothing
OUTCOME_ORDER = ("passed", "skipped", "failed")


def read_runs(results_dir: str) -> list[tuple[str, int]]:
    """The runs listed in ``RESULTS_DIR/runs.txt``, as (name, exit code) pairs in order."""
    runs = []
    with open(os.path.join(results_dir, RUNS_FILE)) as f:
        for line in f:
            if line.strip():
                name, code = line.split()
                runs.append((name, int(code)))
    return runs


def expected_xml(run: str) -> list[str]:
    """The XML file names a run must leave, one per rank (``serial`` or ``P=n``)."""
    if run == "serial":
        return ["serial.xml"]
    size = int(run.removeprefix("P="))
    return [f"mpi-P{size}-rank{rank}.xml" for rank in range(size)]


def worse(a: str, b: str) -> str:
    """The worse of two outcomes: failed over skipped over passed."""
    return max(a, b, key=OUTCOME_ORDER.index)


def case_outcomes(path: str) -> dict[str, str]:
    """Each test case in a JUnit XML file, by ``classname::name``, as passed, skipped or failed."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        key = f"{case.get('classname')}::{case.get('name')}"
        outcomes[key] = worse(outcome, outcomes.get(key, outcome))
    return outcomes


def run_failure(code: int, missing: list[str], tests_failed: bool) -> str | None:
    """Why a run counts as a failure of its own, or None when its XML tells the whole story."""
    reasons = []
    if code in TIMED_OUT:
        reasons.append(f"ran past its time limit (deadlock?), exit {code}")
    elif code > 128:
        reasons.append(f"died of signal {code - 128}")
    elif code not in (0, NO_TESTS_COLLECTED) and not tests_failed:
        reasons.append(f"exited {code}" + ("" if missing else " with no failing test in its XML"))
    if missing:
        reasons.append("no readable XML from " + ", ".join(missing))
    return "; ".join(reasons) or None


def summarize(results_dir: str) -> tuple[dict[str, int], list[str]]:
    """Counts of passed, failed and skipped tests, and the names of what failed."""
    outcomes: dict[str, str] = {}
    run_failures = []
    for run, code in read_runs(results_dir):
        missing = []
        run_outcomes: dict[str, str] = {}
        for name in expected_xml(run):
            try:
                per_rank = case_outcomes(os.path.join(results_dir, name))
            except (OSError, ET.ParseError):
                missing.append(name)
                continue
            for key, outcome in per_rank.items():
                run_outcomes[key] = worse(outcome, run_outcomes.get(key, outcome))
        reason = run_failure(code, missing, "failed" in run_outcomes.values())
        if reason:
            run_failures.append(f"{run}: {reason}")
        outcomes.update({f"{run}::{key}": outcome for key, outcome in run_outcomes.items()})
    failed = sorted(key for key, outcome in outcomes.items() if outcome == "failed") + run_failures
    counts = {outcome: sum(1 for o in outcomes.values() if o == outcome) for outcome in OUTCOME_ORDER}
    counts["failed"] += len(run_failures)
    return counts, failed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {os.path.basename(sys.argv[0])} RESULTS_DIR (the directory run_tests.sh wrote)",
              file=sys.stderr)
        return 2
    try:
        counts, failed = summarize(argv[0])
    except (OSError, ValueError) as err:
        print(f"cannot summarize {argv[0]}: {err}", file=sys.stderr)
        return 2
    for name in failed:
        print(f"  FAILED {name}")
    print(f"tests: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
