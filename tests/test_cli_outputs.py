"""The roofline checks its outputs (and matplotlib for ``--plot``) before it measures anything."""

from __future__ import annotations

import sys

import pytest

from collectives import cli, plots
from training import roofline

TINY = ["--threads", "1", "--kernels", "triad", "--sizes", "64K", "--budget", "0.01", "--triad-bytes", "1M",
        "--gemm-n", "64"]


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_roofline_unwritable_output_stops_before_measuring(option, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where a directory should be
    with pytest.raises(cli.AgreedExit) as e:
        roofline.main([*TINY, option, str(blocker / "out")])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing was measured
    assert f"{option} cannot write {blocker}/out: Not a directory" in err


def test_plot_without_matplotlib_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: its import fails
    assert "pip install" in plots.missing()
    with pytest.raises(cli.AgreedExit):
        roofline.main([*TINY, "--plot", str(tmp_path / "roof.png")])
    out, err = capsys.readouterr()
    assert out == "" and "--plot needs matplotlib" in err
    assert not (tmp_path / "roof.png").exists()

