#!/usr/bin/env bash
# The device (CUDA) checks, in one go on the GPU box: at most 10 minutes, as its time is short.
#
#   bash scripts/gpu_check.sh --prepare     # here, once: .whl (pytest-mpi) and .impi (Intel MPI, trimmed)
#   bash scripts/gpu_check.sh               # there: run(command="bash scripts/gpu_check.sh",
#                                           #   carry=[".whl", ".impi"], timeout_s=600)
#
# There, with the box's own MPI (Open MPI, not CUDA-aware: the staged path):
#   1. the cupy differential tests and the fake-device tests at 2 and 4 ranks;
#   2. collectives.bench at 4 ranks on host and on device memory (the device rows staged).
# Then, if .impi was carried, with Intel MPI and I_MPI_OFFLOAD=1 (CUDA-aware if its query says so:
# the direct path): the same tests at 2 ranks and the device bench at 4.
# Results (logs, JUnit XML, bench JSON) go to $OUT (the device tool's) or /tmp/gpu_check.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .whl "pytest-mpi==0.6"
    bash scripts/impi_trim.sh .impi
    du -sh .whl .impi
    exit 0
fi
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
py=python3
export PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 COLLECTIVES_CHECK=1
if ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
tests="tests/test_cupy_mpi.py tests/test_device_mpi.py"
started=$SECONDS
say() { echo "== $* ($((SECONDS - started)) s)"; }

say environment
{ nvidia-smi -L; $py -c "from mpi4py import MPI; import cupy, numpy, numba
print(MPI.Get_library_version().splitlines()[0]); print('cupy', cupy.__version__, 'numpy', numpy.__version__,
      'numba', numba.__version__)"; } 2>&1 | tee "$out/environment.txt"

for p in 2 4; do
    say "system MPI: tests at $p ranks"
    mkdir -p "$out/system-p$p"
    timeout -k 5 150 mpiexec -n "$p" $py -m mpi4py scripts/mpi_pytest.py "$out/system-p$p" -q \
        -p no:cacheprovider -m mpi -rs $tests 2>&1 | tail -n 15
done
for memory in host cuda; do
    say "system MPI: bench, $memory memory, 4 ranks"
    COLLECTIVES_CHECK=0 timeout -k 5 90 mpiexec -n 4 --bind-to core $py -m mpi4py -m collectives.bench --memory "$memory" \
        --algorithms ring,recursive_doubling,rabenseifner --min-bytes 4 --max-bytes 64M --quiet \
        --json "$out/bench_system_${memory}_p4.json" 2>&1 | tail -n 5
done

if [ -d .impi ]; then
    export I_MPI_ROOT=$PWD/.impi I_MPI_FABRICS=shm I_MPI_OFFLOAD=1 MPI4PY_MPIABI=mpich
    export LD_LIBRARY_PATH=$PWD/.impi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    say "Intel MPI, I_MPI_OFFLOAD=1: CUDA-aware?"
    timeout -k 5 60 .impi/bin/mpiexec.hydra -n 2 $py -c "import collectives
from collectives.runtime.communicator import library_comm
print(collectives.cuda_aware(), library_comm(None).cuda_aware_why)" 2>&1 | tail -n 5 | tee "$out/impi_cuda_aware.txt"
    say "Intel MPI: tests at 2 ranks"
    mkdir -p "$out/impi-p2"
    timeout -k 5 150 .impi/bin/mpiexec.hydra -n 2 $py -m mpi4py scripts/mpi_pytest.py "$out/impi-p2" -q \
        -p no:cacheprovider -m mpi -rs $tests 2>&1 | tail -n 15
    say "Intel MPI: bench, cuda memory, 4 ranks"
    COLLECTIVES_CHECK=0 timeout -k 5 90 .impi/bin/mpiexec.hydra -n 4 $py -m mpi4py -m collectives.bench --memory cuda \
        --algorithms ring,recursive_doubling,rabenseifner --min-bytes 4 --max-bytes 64M --quiet \
        --json "$out/bench_impi_cuda_p4.json" 2>&1 | tail -n 5
fi
say done
