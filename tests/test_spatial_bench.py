"""python -m training.spatial_bench at tiny sizes: its table, JSON and picture, and its refusals."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import launch


def test_tiny_sizes_time_predict_and_count_the_halo(tmp_path):
    plot = importlib.util.find_spec("matplotlib") is not None
    out = launch(tmp_path, 2, "training.spatial_bench", "--sizes", "32,48", "--batch", "2", "--channels", "4",
                 "--repeats", "2", "--json", str(tmp_path / "s.json"), *(["--plot", str(tmp_path / "s.png")]
                                                                          if plot else []))
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / "s.json").read_text())["records"]
    assert [r["size"] for r in records] == [32, 48] and all(r["grid"] == [2, 1] for r in records)
    for r in records:  # rows cut in two: one halo row of B x C x width each way, forward and adjoint
        assert r["halo_bytes_per_rank"] == 2 * 4 * 2 * 4 * r["size"]
        assert r["one_rank_s"] > 0 and r["spatial_s"] > 0 and r["predicted_s"] > 0 and r["roofline_s"] > 0
    assert not plot or (tmp_path / "s.png").stat().st_size > 0
    assert "speedup" in out.stdout and "halo MB" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["--grid", "3x1"], "--grid 3x1: 3 x 1 tiles need 3 ranks, not 2"),
    (["--grid", "two"], "--grid 'two': ROWSxCOLS"),
    (["--sizes", "1"], "2 ranks cannot split 1 input rows"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path):
    out = launch(tmp_path, 2, "training.spatial_bench", *argv)
    assert out.returncode == 2 and out.stderr.count(message) == 1, out.stderr
