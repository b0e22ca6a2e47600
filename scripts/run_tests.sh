#!/usr/bin/env bash
# The one test command: installs what the tests need, runs the serial tests,
# then the MPI tests at 1, 2, 3, 4 and 5 ranks, each under a time bound so a
# deadlock fails the suite instead of hanging it.
#
#   bash scripts/run_tests.sh            # everything (about 11 minutes on 2 cores)
#   RANKS="2 3" bash scripts/run_tests.sh -k ring   # a subset; extra args go to pytest
#
# RANKS               the MPI rank counts to run (default "1 2 3 4 5")
# LIMIT               seconds per run; a run still going then counts as a deadlock (default 420)
# KIT_TEST_RESULTS    the directory for the JUnit XML, the other ranks' logs and runs.txt
#                     (default results/tests); made if missing. Only the files this run
#                     writes are replaced there: serial.xml, mpi-P{P}-rank{r}.xml/.log, runs.txt.
# KIT_TEST_INSTALL=0  skip the pip install, where the extras are installed already
#
# runs.txt records each run's exit code; scripts/summarize_junit.py reads it and the XML
# of every rank, so a run that timed out, died or lost a rank's XML counts as failed.
set -u
cd "$(dirname "$0")/.."
RANKS=${RANKS:-"1 2 3 4 5"}
LIMIT=${LIMIT:-420}
results=${KIT_TEST_RESULTS:-results/tests}
runs=$results/runs.txt

if [ "${KIT_TEST_INSTALL:-1}" != 0 ]; then
    python -m pip install -q --disable-pip-version-check -e ".[mpich,test,plots]" || exit 1
fi
mkdir -p "$results" && : >"$runs" || exit 1
export COLLECTIVES_CHECK=1 PYTHONUNBUFFERED=1
status=0

echo "== serial tests"
rm -f "$results/serial.xml"
timeout -k 10 "$LIMIT" python -m pytest -q -p no:cacheprovider -m "not mpi" \
    --junitxml="$results/serial.xml" tests "$@"
rc=$?; echo "serial $rc" >>"$runs"
[ $rc -ne 0 ] && [ $rc -ne 5 ] && status=1

for p in $RANKS; do
    echo "== MPI tests, $p rank(s)"
    for ((rank = 0; rank < p; rank++)); do  # a rank that dies must not leave an older run's XML
        rm -f "$results/mpi-P$p-rank$rank.xml" "$results/mpi-P$p-rank$rank.log"
    done
    timeout -k 10 "$LIMIT" mpiexec -n "$p" python -m mpi4py scripts/mpi_pytest.py "$results" \
        -q -p no:cacheprovider -m mpi tests "$@"
    rc=$?; echo "P=$p $rc" >>"$runs"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "MPI tests at P=$p ran past ${LIMIT}s (deadlock?): see $results/mpi-P$p-rank*.log"
        status=1
    elif [ $rc -ne 0 ] && [ $rc -ne 5 ]; then
        status=1
    fi
done

python scripts/summarize_junit.py "$results" || status=1
exit $status
