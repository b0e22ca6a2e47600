#!/usr/bin/env bash
# The one test command: installs what the tests need, runs the serial tests,
# then the MPI tests at 1, 2, 3, 4 and 5 ranks, each under a time bound so a
# deadlock fails the suite instead of hanging it.
#
#   bash scripts/run_tests.sh            # everything (about 10 minutes on 2 cores)
#   RANKS="2 3" bash scripts/run_tests.sh -k ring   # a subset; extra args go to pytest
#
# runs.txt records each run's exit code; scripts/summarize_junit.py reads it and the XML
# of every rank, so a run that timed out, died or lost a rank's XML counts as failed.
set -u
cd "$(dirname "$0")/.."
RANKS=${RANKS:-"1 2 3 4 5"}
LIMIT=${LIMIT:-420}           # seconds per MPI run
RESULTS=${RESULTS:-results/tests}

python -m pip install -q --disable-pip-version-check -e ".[mpich,test,plots]" || exit 1
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
runs=$RESULTS/runs.txt
export COLLECTIVES_CHECK=1 PYTHONUNBUFFERED=1
status=0

echo "== serial tests"
timeout -k 10 "$LIMIT" python -m pytest -q -p no:cacheprovider -m "not mpi" \
    --junitxml="$RESULTS/serial.xml" tests "$@"
rc=$?; echo "serial $rc" >>"$runs"
[ $rc -ne 0 ] && [ $rc -ne 5 ] && status=1

for p in $RANKS; do
    echo "== MPI tests, $p rank(s)"
    timeout -k 10 "$LIMIT" mpiexec -n "$p" python -m mpi4py scripts/mpi_pytest.py "$RESULTS" \
        -q -p no:cacheprovider -m mpi tests "$@"
    rc=$?; echo "P=$p $rc" >>"$runs"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "MPI tests at P=$p ran past ${LIMIT}s (deadlock?): see $RESULTS/mpi-P$p-rank*.log"
        status=1
    elif [ $rc -ne 0 ] && [ $rc -ne 5 ]; then
        status=1
    fi
done

python scripts/summarize_junit.py "$RESULTS" || status=1
exit $status
