# Sourced by every job script in jobs/ (submit from the repository root: sbatch jobs/NAME.sbatch).
# Each script sets -euo pipefail first, and stops at once with exit 2 if it cannot find this file.
#
# KIT_DIR:    the repository (default: the directory sbatch was run from).
# MPI_PLUGIN: srun's --mpi for your MPI: pmi2 for PyPI's MPICH (the default here),
#             pmix for an Open MPI built with PMIx. The wrong one starts P worlds of
#             one rank each without an error: check_world catches that.
# PYTHON:     the interpreter that has this package and mpi4py (default: python).
#
# Stale MPICH shared memory (clear_stale_shm: scripts/mpich_stale_shm.py, run once here
# and after a failed step):
#   MPICH puts the ranks of a node in one POSIX shared-memory segment,
#   /dev/shm/mpich_shm_<hash>_<node> (and mpich_vci_..., with several VCIs), whose name
#   is a hash of the PMI job id, under srun --mpi=pmi2 "<job id>.<step id>". The first
#   rank to create it sets it up; only MPI_Finalize removes it. A step that fails or is
#   killed leaves it behind, and a later step with the same job and step id (a Slurm
#   whose job ids began again at 1: a new StateSaveLocation, as in a test cluster, or a
#   counter that wrapped) finds it: every rank opens it as a late comer, nobody sets it
#   up, and MPI_Init reads the dead job's messages. It fails there, in UCX's address
#   exchange ("failed to unpack address, invalid bandwidth 0.00",
#   "no active messages transport"), with "Message truncated", or hangs; whether it
#   does depends on the leftover, hence "now and then". UCX settings (UCX_TLS,
#   UCX_NET_DEVICES) and --cpu-bind do not change it, MPIR_CVAR_NOLOCAL=1 hides it by
#   giving up shared memory, and mpiexec never meets it (Hydra's job id differs on
#   every run). So before the first step, one task per node (a step of its own, a
#   fraction of a second) removes the segments named after this job's id, which can
#   only be another job's, and after a failed step those of this job, whose ranks are
#   gone (steps here run one at a time); a segment some process still maps is kept.
set -euo pipefail
cd "$KIT_DIR"  # set by the sbatch script that sources this file
MPI_PLUGIN=${MPI_PLUGIN:-pmi2}
PYTHON=${PYTHON:-python}
OUT=${OUT:-results/slurm}
mkdir -p "$OUT"
clear_stale_shm() {
    srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 \
        --cpus-per-task=1 --overlap --mpi=none --cpu-bind=none "$PYTHON" scripts/mpich_stale_shm.py \
        || echo "clear_stale_shm: could not check /dev/shm on every node" >&2
}
# one rank per task, pinned to its cores (Slurm's task/affinity); each rank runs
# SLURM_CPUS_PER_TASK Numba and BLAS threads (numa.threads reads it)
# a rank that fails ends the step at once instead of leaving the others waiting
launch() {
    srun --mpi="$MPI_PLUGIN" --cpu-bind=cores --kill-on-bad-exit=1 "$@" \
        || { local rc=$?; clear_stale_shm; return "$rc"; }
}
# the MPI world must be what Slurm allocated; prints every rank's binding
check_world() {
    launch "$PYTHON" -m numa --expect-ranks "$SLURM_NTASKS" --json "$OUT/numa_${SLURM_JOB_ID}.json"
}
if [ -n "${SLURM_JOB_ID:-}" ]; then clear_stale_shm; fi
