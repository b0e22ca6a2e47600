"""The benchmark CLI runs every algorithm and writes its JSON and HDF5 records (no timing asserted)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import collectives
from collectives import bench
from collectives.runtime.communicator import check_enabled, library_comm
from conftest import collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)


@pytest.mark.parametrize("nbytes", [4, 4 * 7 + 4, 4096])
@pytest.mark.parametrize("collective", sorted(collectives.ALGORITHMS))
def test_the_mpi_row_is_the_librarys_call_with_our_results(collective, nbytes):
    """The row times the library through mpi4py on the bench's own buffers, and computes what ours do."""
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    x, y, n = bench._buffers(collective, nbytes, np.dtype(np.float32), p, rank)
    want_in = x.copy()
    lib = library_comm(comm)
    bench.library_call(collective, lib, n)(x, y)
    got = (x if collective == "broadcast" else y).copy()
    x[...] = want_in
    bench._RUN[collective]("mpi", comm)(x, y)
    want = x if collective == "broadcast" else y
    collective_assert(comm, got.tobytes() == want.tobytes(), f"{collective} {nbytes} B")


@pytest.mark.parametrize("collective", sorted(collectives.ALGORITHMS))
def test_bench_writes_records(collective, tmp_path_factory):
    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("bench")) if comm.Get_rank() == 0 else None)
    js, h5 = f"{path}/out.json", f"{path}/out.h5"
    assert bench.main(["--collective", collective, "--min-bytes", "4", "--max-bytes", "1K",
                       "--repeats", "2", "--warmup", "1", "--quiet", "--json", js, "--output", h5]) == 0
    assert check_enabled()  # and back on after it
    comm.Barrier()
    if comm.Get_rank() == 0:
        with open(js) as f:
            doc = json.load(f)
        algs = collectives.ALGORITHMS[collective]
        assert doc["environment"]["ranks"] == comm.Get_size()
        assert doc["environment"]["check_mode"] == "off"  # timed without the cross-rank argument check
        assert doc["mpi"] == bench.MPI_ROW and doc["memory"] == "host"
        assert doc["environment"]["cuda_aware"].startswith("False (")  # the suite's MPICH is not CUDA-aware
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


def test_passes_split_the_repeats_and_keep_one_record_per_size(tmp_path_factory):
    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("passes")) if comm.Get_rank() == 0 else None)
    js = f"{path}/out.json"
    assert bench.main(["--min-bytes", "4", "--max-bytes", "64K", "--repeats", "7", "--passes", "3",
                       "--warmup", "1", "--algorithms", "ring,recursive_doubling", "--quiet",
                       "--json", js]) == 0
    comm.Barrier()
    if comm.Get_rank() == 0:
        with open(js) as f:
            recs = json.load(f)["records"]
        assert [r["bytes"] for r in recs] == [s for s in bench.sizes(4, 64 << 10) for _ in range(3)]
        assert {r["repeats"] for r in recs} == {9}  # 3 passes of ceil(7 / 3)


@pytest.mark.parametrize("bad", ["0", "-2"])
def test_passes_below_one_are_refused(bad, capsys):
    with pytest.raises(SystemExit):
        bench.parser().parse_args(["--passes", bad])
    assert ("expected an integer >= 1" in capsys.readouterr().err) == (world().Get_rank() == 0)  # one message


def test_sizes_and_bus_factor():
    assert bench.sizes(4, 64) == [4, 8, 16, 32, 64]
    assert bench.sizes(1, 1) == [1] and bench.sizes(8, 4) == []
    assert bench.bus_factor("allreduce", 4) == 1.5


@pytest.mark.parametrize("option,name", [("--json", "b.json"), ("--output", "b.h5")])
def test_an_unwritable_output_stops_every_rank_before_the_sweep(option, name, tmp_path_factory, capsys):
    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("out")) if comm.Get_rank() == 0 else None)
    with pytest.raises(SystemExit) as e:
        bench.main(["--max-bytes", "64", "--repeats", "2", option, f"{path}/missing/{name}"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # not even the header: nothing was measured
    if comm.Get_rank() == 0:
        assert f"{option} cannot write {path}/missing/{name}" in err


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 7, 1000, 1 << 18])
def test_bench_buffers_share_one_page_offset(count, dtype):
    from collectives.runtime.buffers import MALLOC_OFFSET, PAGE, at_page_offset

    a = at_page_offset(count, dtype)
    assert a.dtype == dtype and a.shape == (count,) and a.flags.c_contiguous
    assert count == 0 or a.ctypes.data % PAGE == MALLOC_OFFSET  # an empty view has no address to speak of
    a[...] = 3  # the whole view is writable memory of its own
    assert np.all(a == 3)
    assert count == 0 or at_page_offset(count, dtype, offset=0).ctypes.data % PAGE == 0
    x, y, n = bench._buffers("allreduce", max(count, 1) * 4, np.dtype(np.float32), 2, 0)
    assert x.ctypes.data % PAGE == y.ctypes.data % PAGE == MALLOC_OFFSET and n == x.size == y.size
    assert np.all((x >= 0) & (x < 1)) and np.unique(x).size > min(n, 2) - 1


@pytest.mark.parametrize("timing, samples, calls", [("loop", 5, 10), ("barrier", 12, 12)])
def test_each_timing_reports_the_ranks_min_average_and_max(timing, samples, calls, tmp_path_factory, capsys):
    """loop: 12 calls as 5 blocks of 2 back-to-back calls, the average over the ranks; barrier: 12 calls one at a
    time, the slowest rank.  The header names the method."""
    comm = world()
    path = comm.bcast(str(tmp_path_factory.mktemp("timing")) if comm.Get_rank() == 0 else None)
    js = f"{path}/out.json"
    assert bench.main(["--min-bytes", "4", "--max-bytes", "4K", "--repeats", "12", "--warmup", "1",
                       "--algorithms", "ring", "--timing", timing, "--json", js]) == 0
    out = capsys.readouterr().out
    comm.Barrier()
    if comm.Get_rank() == 0:
        assert f"# timing: {timing} ({bench.TIMINGS[timing]})" in out
        with open(js) as f:
            doc = json.load(f)
        assert doc["timing"] == timing
        for r in doc["records"]:
            assert (r["timing"], r["samples"], r["repeats"]) == (timing, samples, calls)
            assert 0 < r["min_us"] <= r["avg_us"] <= r["max_us"]
            assert r["time_us"] == r["avg_us" if timing == "loop" else "max_us"]
