"""python -m training.layout_bench at tiny sizes: its table, JSON and PNG, and its refusals."""

from __future__ import annotations

import json
import os

from conftest import ROOT, launch

PROFILE = os.path.join(ROOT, "measurements", "alphabeta_predict_p2_dev_emptyblocks_run4.json")


def test_a_tiny_sweep_writes_table_json_and_plot(tmp_path):
    out = launch(tmp_path, 2, "training.layout_bench", "--widths", "64,256", "--batches", "8", "--budget", "0.001",
                 "--profile", PROFILE, "--json", str(tmp_path / "l.json"), "--plot", str(tmp_path / "l.png"))
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / "l.json").read_text())["records"]
    assert sorted((r["width"], r["batch"], r["layout"]) for r in records) == [
        (64, 8, "data"), (64, 8, "model"), (256, 8, "data"), (256, 8, "model")]
    assert all(r["measured_s"] > 0 and r["predicted_s"] > 0 for r in records)
    assert [line.split()[:2] for line in out.stdout.splitlines() if line[:1] == " "][1:] == [["64", "8"], ["256", "8"]]
    assert (tmp_path / "l.png").stat().st_size > 0


def test_bad_input_exits_2_with_one_message(tmp_path):
    for argv, says in ((["--profile", str(tmp_path / "none.json")], "none.json"),
                       (["--profile", PROFILE, "--algorithm", "mpi"], "--algorithm 'mpi'")):
        out = launch(tmp_path, 2, "training.layout_bench", *argv)
        assert out.returncode == 2 and out.stderr.count(says) == 1, out.stderr


def test_without_a_profile_one_is_measured_alongside_and_recorded(tmp_path):
    out = launch(tmp_path, 2, "training.layout_bench", "--widths", "64", "--batches", "8", "--budget", "0.001",
                 "--profile-budget", "0.001", "--passes", "2", "--max-bytes", "4K", "--max-segments", "1",
                 "--json", str(tmp_path / "l.json"))
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "l.json").read_text())
    assert "measured alongside" in out.stdout and len(doc["records"]) == 2
    assert len(doc["profile"]["intra"]["segments"]) == 1  # --max-segments reaches the profile's fits
