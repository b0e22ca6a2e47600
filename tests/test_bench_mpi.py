"""The benchmark CLI runs every algorithm and writes its JSON and HDF5 records (no timing asserted)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import collectives
from collectives import bench
from conftest import world

pytestmark = pytest.mark.mpi(min_size=1)


@pytest.mark.parametrize("collective", sorted(collectives.ALGORITHMS))
def test_bench_writes_records(collective, tmp_path_factory):
    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("bench")) if comm.Get_rank() == 0 else None)
    js, h5 = f"{path}/out.json", f"{path}/out.h5"
    assert bench.main(["--collective", collective, "--min-bytes", "4", "--max-bytes", "1K",
                       "--repeats", "2", "--warmup", "1", "--quiet", "--json", js, "--output", h5]) == 0
    comm.Barrier()
    if comm.Get_rank() == 0:
        with open(js) as f:
            doc = json.load(f)
        algs = collectives.ALGORITHMS[collective]
        assert doc["environment"]["ranks"] == comm.Get_size()
        assert "MPI" in doc["environment"]["mpi_library"] or doc["environment"]["mpi_library"]
        assert len(doc["records"]) == 9 * len(algs)  # sizes 4 B .. 1 KiB
        assert {r["algorithm"] for r in doc["records"]} == set(algs)
        for r in doc["records"]:
            assert r["time_us"] > 0 and np.isfinite(r["busbw_GBps"])
            if r["algorithm"] == "mpi":
                assert r["ratio_to_mpi"] == 1.0
        with h5py.File(h5) as f:
            assert f["time_us"].shape == (len(doc["records"]),)
            assert f.attrs["ranks"] == comm.Get_size()


def test_size_parsing():
    assert bench.parse_size("64M") == 64 << 20
    assert bench.parse_size("4") == 4
    assert bench.parse_size("1KB") == 1024
    assert bench.sizes(4, 64) == [4, 8, 16, 32, 64]
    assert bench.bus_factor("allreduce", 4) == 1.5
