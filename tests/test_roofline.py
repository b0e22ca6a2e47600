"""python -m training.roofline end to end at tiny sizes: every kernel, JSON, PNG, scaling (no speed asserted)."""

from __future__ import annotations

import json

import numba
import pytest

from training import roofline
from training.roofline_cases import CASES

TINY = ["--sizes", "64K", "--budget", "0.01", "--triad-bytes", "1M", "--gemm-n", "64"]


def test_every_kernel_is_measured_and_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "roof.json", tmp_path / "roof.png"
    assert roofline.main(["--threads", "1", *TINY, "--json", str(js), "--plot", str(png)]) == 0
    data = json.loads(js.read_text())
    assert data["env"]["threads"]["numba"] == 1
    assert data["triad"]["GBps"] > 0 and data["gemm"]["GFLOPs"] > 0 and data["fma"]["GFLOPs"] > 0
    assert sorted({r["kernel"] for r in data["kernels"]}) == sorted(CASES)
    for r in data["kernels"]:
        assert r["seconds"] > 0 and r["numpy_seconds"] > 0 and r["speedup_vs_numpy"] > 0
        assert r["bound"] in ("memory", "compute") and r["roof_fraction"] > 0
        assert r["GBps"] == pytest.approx(r["moved_bytes"] / r["seconds"] / 1e9)
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "triad" in out and "vs numpy" in out


def test_scaling_reports_each_thread_count(tmp_path, capsys):
    counts = "1,2" if numba.config.NUMBA_NUM_THREADS >= 2 else "1,1"
    js = tmp_path / "scaling.json"
    assert roofline.main(["--scaling", counts, "--kernels", "triad,reduce_sum", *TINY, "--json", str(js)]) == 0
    runs = json.loads(js.read_text())["scaling"]
    assert [r["env"]["threads"]["numba"] for r in runs] == [int(c) for c in counts.split(",")]
    assert "speed-up over 1 thread(s)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,says", [(["--kernels", "triad,nope"], "unknown kernel"),
                                       (["--scaling", "0,1"], "integers >= 1")])
def test_bad_arguments_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as e:  # an agreed exit: MPI is finalized, not aborted
        roofline.main(argv)
    assert e.value.code == 2
    assert says in capsys.readouterr().err
