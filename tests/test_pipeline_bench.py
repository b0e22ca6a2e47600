"""python -m training.pipeline_bench at tiny sizes: its table, JSON and traces, and its refusals."""

from __future__ import annotations

import json

import pytest

from conftest import launch


def test_tiny_cases_predict_and_check_the_stash(tmp_path):
    out = launch(tmp_path, 2, "training.pipeline_bench", "--micro-batches", "2,4", "--width", "64", "--batch", "16",
                 "--steps", "2", "--warmup", "1", "--json", str(tmp_path / "pb.json"),
                 "--trace-dir", str(tmp_path / "traces"))
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / "pb.json").read_text())["records"]
    assert [(r["schedule"], r["micro_batches"]) for r in records] == [("gpipe", 2), ("gpipe", 4), ("1f1b", 2),
                                                                        ("1f1b", 4)]
    for r in records:
        assert r["peak_stash_bytes"] == r["expected_peak_stash_bytes"]
        assert r["step_s"] > 0 and r["predicted_step_s"] > 0 and 0 <= r["bubble"] < 1
        assert r["bubble_formula"] == 1 / (r["micro_batches"] + 1) and r["message_bytes"] == 4 * 64 * 16 // r[
            "micro_batches"]
    assert sorted(p.name for p in (tmp_path / "traces").glob("*.json")) == ["1f1b_2.json", "1f1b_4.json",
                                                                           "gpipe_2.json", "gpipe_4.json"]
    assert "stash ok" in out.stdout and "(S-1)/(M+S-1)" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["--schedule", "zigzag"], "--schedule 'zigzag': use gpipe, 1f1b or both"),
    (["--batch", "3", "--micro-batches", "4"], "--batch 3 is smaller than 4 micro-batches"),
    (["--profile", "/nonexistent.json"], "No such file"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path):
    out = launch(tmp_path, 2, "training.pipeline_bench", *argv)
    assert out.returncode == 2 and out.stderr.count(message) == 1, out.stderr
