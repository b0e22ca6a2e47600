# Sourced by every job script in jobs/ (submit from the repository root: sbatch jobs/NAME.sbatch).
#
# MPI_PLUGIN: srun's --mpi for your MPI: pmi2 for PyPI's MPICH (the default here),
#             pmix for an Open MPI built with PMIx. The wrong one starts P worlds of
#             one rank each without an error: check_world catches that.
# PYTHON:     the interpreter that has this package and mpi4py (default: python).
# UCX_NET_DEVICES: PyPI MPICH talks through UCX; on a single node, or a VM whose network
#             UCX cannot describe (MPI_Init fails now and then: "failed to unpack address,
#             invalid bandwidth"), export UCX_NET_DEVICES=lo before sbatch.
set -euo pipefail
cd "${KIT_DIR:-${SLURM_SUBMIT_DIR:-.}}"
MPI_PLUGIN=${MPI_PLUGIN:-pmi2}
PYTHON=${PYTHON:-python}
OUT=${OUT:-results/slurm}
mkdir -p "$OUT"
# one rank per task, pinned to its cores (Slurm's task/affinity); each rank runs
# SLURM_CPUS_PER_TASK Numba and BLAS threads (collectives.threads reads it)
# a rank that fails ends the step at once instead of leaving the others waiting
launch() { srun --mpi="$MPI_PLUGIN" --cpu-bind=cores --kill-on-bad-exit=1 "$@"; }
# the MPI world must be what Slurm allocated; prints every rank's binding
check_world() {
    launch "$PYTHON" -m numa --expect-ranks "$SLURM_NTASKS" --json "$OUT/numa_${SLURM_JOB_ID}.json"
}
