"""Every job script in jobs/, scaled down, submitted with sbatch to a real one-node Slurm on localhost.

The fixture starts the cluster with scripts/slurm_local.sh (installing
Debian's slurmctld, slurmd and munge when it can) and stops it afterwards;
where Slurm cannot be installed or started, these tests skip and say why.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "results", "slurm")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.environ.get("KIT_SLURM_TESTS") != "1":
        pytest.skip("set KIT_SLURM_TESTS=1 to run: under srun, PyPI MPICH's UCX fails MPI_Init now and then "
                    "on the dev VM, so these are not yet reliable enough for CI")
    state = str(tmp_path_factory.mktemp("slurm"))
    start = subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_local.sh"), "start", state],
                           capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.skip(f"no local Slurm: {start.stderr.strip().splitlines()[-1] if start.stderr.strip() else 'failed'}")
    # UCX on loopback: under srun + PMI2 on this VM, PyPI MPICH's UCX failed MPI_Init 3 times in
    # 8 ("failed to unpack address, invalid bandwidth 0.00") while describing the network;
    # with UCX_NET_DEVICES=lo none in 42.  (Its OFI netmod hung under srun.)
    env = dict(os.environ, SLURM_CONF=os.path.join(state, "slurm.conf"), PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), UCX_NET_DEVICES="lo")
    try:
        yield env
    finally:
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_local.sh"), "stop", state], timeout=60)


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


def _log(job: str) -> str:
    """The job's output file (``%x_%j.out`` in the submit directory), removed once read."""
    logs = glob.glob(os.path.join(ROOT, f"*_{job}.out"))
    if not logs:
        return "(no output file)"
    text = open(logs[0]).read()
    os.remove(logs[0])
    return text


#: MPI_Init failing inside UCX's address exchange: a flake of this VM's network, not of the job
UCX_INIT_FLAKE = "MPIDI_UCX_comm_addr_exchange"


def _run(env, script, *options, exports=""):
    for attempt in range(2):
        job = _submit(env, script, *options, exports=exports)
        state = _wait(env, job)
        text = _log(job)
        if state == "COMPLETED" or UCX_INIT_FLAKE not in text:
            break
        print(f"{script}: job {job} hit the UCX MPI_Init flake; submitting once more")
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
