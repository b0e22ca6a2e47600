"""Every job script in jobs/, scaled down, submitted with sbatch to a real one-node Slurm on localhost.

The fixture starts the cluster with scripts/slurm_local.sh (installing
Debian's slurmctld, slurmd and munge when it can) and stops it afterwards;
where Slurm cannot be installed or started, these tests skip and say why.
Every cluster it starts numbers its jobs from 1 again, so a job here may meet
the shared memory an earlier job with its id left in /dev/shm: jobs/common.sh
clears it (test_stale_shared_memory_of_a_crashed_job).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "results", "slurm")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import mpich_stale_shm  # noqa: E402  (the jobs' own cleanup: the names it removes are the ones planted here)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("slurm"))
    script = os.path.join(ROOT, "scripts", "slurm_local.sh")
    start = subprocess.run(["bash", script, "start", state], capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        subprocess.run(["bash", script, "stop", state], capture_output=True, timeout=60)
        pytest.skip(f"no local Slurm: {start.stderr.strip().splitlines()[-1] if start.stderr.strip() else 'failed'}")
    env = dict(os.environ, SLURM_CONF=os.path.join(state, "slurm.conf"), PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    try:
        yield env
    finally:
        stop = subprocess.run(["bash", script, "stop", state], capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, f"slurm_local.sh stop left daemons running: {stop.stderr}"


def _submit(env, script: str, *options: str, exports: str = "") -> str:
    cmd = ["sbatch", "--parsable", f"--chdir={ROOT}", f"--export=ALL{',' + exports if exports else ''}",
           *options, os.path.join("jobs", script)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _wait(env, job: str, limit: float = 600) -> str:
    end = time.time() + limit
    while time.time() < end:
        out = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
        state = next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "UNKNOWN")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"):
            return state
        time.sleep(1)
    subprocess.run(["scancel", job], env=env)
    return "TIMEOUT (test)"


def _log(job: str, submit_dir: str = ROOT) -> str:
    """The job's output file (``%x_%j.out`` in the submit directory), removed once read."""
    logs = glob.glob(os.path.join(submit_dir, f"*_{job}.out"))
    if not logs:
        return "(no output file)"
    text = open(logs[0]).read()
    os.remove(logs[0])
    return text


def _run(env, script, *options, exports=""):
    job = _submit(env, script, *options, exports=exports)
    state = _wait(env, job)
    text = _log(job)
    assert state == "COMPLETED", f"{script}: job {job} ended {state}\n{text[-3000:]}"
    binding = json.load(open(os.path.join(OUT, f"numa_{job}.json")))
    assert len(binding) == 2  # check_world saw the whole world
    assert sorted(len(b["cpus"]) for b in binding) == [1, 1]
    assert binding[0]["cpus"] != binding[1]["cpus"]  # each rank on its own core
    return job, text


TWO = ("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1")


def test_main_job_one_node(slurm):
    job, text = _run(slurm, "sync_sgd_1node.sbatch", *TWO, exports="SYNC_SGD_ARGS=--epochs 3")
    summary = json.load(open(os.path.join(OUT, f"sync_sgd_{job}.json")))
    assert summary["ranks"] == 2 and summary["test_accuracy"] > 0.9
    assert "epoch   3/3" in text


def test_main_job_several_nodes(slurm):
    job, _ = _run(slurm, "sync_sgd_multinode.sbatch", *TWO,
                  exports="SYNC_SGD_ARGS=--samples 2000 --features 32 --hidden 64 --epochs 1")
    summary = json.load(open(os.path.join(OUT, f"sync_sgd_multi_{job}.json")))
    assert summary["ranks"] == 2 and summary["overlap"] is True


def test_alphabeta_between_nodes(slurm):
    job, _ = _run(slurm, "alphabeta_2nodes.sbatch", *TWO, "--exclusive",
                  exports="ALPHABETA_ARGS=--max-bytes 64K --budget 0.002")
    prof = json.load(open(os.path.join(OUT, f"alphabeta_{job}.json")))["profile"]
    assert prof["intra"]["segments"] and os.path.exists(os.path.join(OUT, f"alphabeta_{job}.h5"))


def test_bench_sweep(slurm):
    job, _ = _run(slurm, "bench_sweep.sbatch", *TWO, exports="BENCH_ARGS=--max-bytes 4K --budget 0.01")
    for family in ("allreduce", "allgather", "reduce_scatter", "broadcast"):
        data = json.load(open(os.path.join(OUT, f"bench_{family}_{job}.json")))
        assert data["records"]


def test_gpu_node_script(slurm):
    job, text = _run(slurm, "gpu_node.sbatch", *TWO, "--gres=none",
                     exports="ROOFLINE_ARGS=--sizes 64K --budget 0.01 --triad-bytes 1M --gemm-n 64")
    roof = json.load(open(os.path.join(OUT, f"roofline_{job}.json")))
    assert roof["kernels"] and roof["env"]["threads"]["numba"] == 2  # the whole allocation, one task


def test_wrong_mpi_plugin_is_caught(slurm):
    """PyPI MPICH under --mpi=none starts worlds of one rank: the job must fail, not run P copies."""
    job = _submit(slurm, "sync_sgd_1node.sbatch", *TWO, exports="MPI_PLUGIN=none,SYNC_SGD_ARGS=--epochs 1")
    assert _wait(slurm, job) == "FAILED"
    assert "expected 2" in _log(job)


SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "jobs", "*.sbatch")))
WRONG_DIRECTORY = "submit from the repository root"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_run_outside_the_repository_stops_at_once(tmp_path, script):
    """Without Slurm: the script cannot find jobs/common.sh, says why and exits 2 before running anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "KIT_DIR"}
    out = subprocess.run(["bash", os.path.join(ROOT, "jobs", script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and WRONG_DIRECTORY in out.stderr, out.stderr
    assert out.stdout == "" and len(out.stderr.splitlines()) == 1 and not os.listdir(tmp_path)


def test_a_job_submitted_from_the_wrong_directory_fails_at_once(slurm, tmp_path):
    """Submitted from elsewhere, the job fails with the reason instead of running ``srun '' -m ...``."""
    script = os.path.join(ROOT, "jobs", "gpu_node.sbatch")  # the one whose last step ran srun '' -m ...
    out = subprocess.run(["sbatch", "--parsable", *TWO, "--gres=none", script],
                         cwd=tmp_path, env=slurm, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    assert _wait(slurm, job, limit=60) == "FAILED"
    text = _log(job, submit_dir=str(tmp_path))
    assert WRONG_DIRECTORY in text and "srun" not in text and "not found" not in text, text


CRASH = ("from mpi4py import MPI; import os; c = MPI.COMM_WORLD; c.Barrier(); "
         "os._exit(3) if c.rank == 0 else c.Barrier()")


def test_stale_shared_memory_of_a_crashed_job(slurm):
    """A job whose id an earlier, crashed job had (job ids begun again at 1) runs all the same.

    MPICH unlinks its node segment only in MPI_Finalize, so a crashed step leaves it; a
    later step of the same job and step id opened it as a late comer, and MPI_Init read
    the dead job's messages ("failed to unpack address, invalid bandwidth 0.00"). Here
    the crashed job's segment is copied to the names the next job's steps will use.
    """
    crash = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", *TWO,
                            "--wrap", f'srun --mpi=pmi2 --kill-on-bad-exit=1 "$PYTHON" -c "{CRASH}"'],
                           cwd=ROOT, env=slurm, capture_output=True, text=True, timeout=60)
    assert crash.returncode == 0, crash.stderr
    crashed = crash.stdout.strip().split(";")[0]
    planted = []
    try:
        assert _wait(slurm, crashed) == "FAILED"
        left = mpich_stale_shm.segment(f"{crashed}.0")
        assert os.path.exists(left), f"the crashed step left no {left}: has MPICH changed its naming?"
        job = _submit(slurm, "sync_sgd_1node.sbatch", "--hold", *TWO, exports="SYNC_SGD_ARGS=--epochs 1")
        for step in range(4):
            planted.append(mpich_stale_shm.segment(f"{job}.{step}"))
            shutil.copyfile(left, planted[-1])
        subprocess.run(["scontrol", "release", job], env=slurm, check=True, timeout=60)
        state = _wait(slurm, job)
        text = _log(job)
        assert state == "COMPLETED", f"job {job} ended {state}\n{text[-3000:]}"
        assert "removed stale /dev/shm/mpich_shm_" in text
        assert not [p for p in planted if os.path.exists(p)]
    finally:
        for p in [mpich_stale_shm.segment(f"{crashed}.0"), *planted]:
            if os.path.exists(p):
                os.remove(p)
