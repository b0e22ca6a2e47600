"""An agreed exit of every command line, launched for real: its code, one message, and MPI finalized
(:func:`conftest.launch`).

Under ``python -m mpi4py`` a non-zero ``SystemExit`` that escapes calls
``MPI_Abort``, which leaves MPICH's shared-memory segment in ``/dev/shm``
(1-3 MB a run).  Other runs may create and leak segments of their own
meanwhile, so each rank here first records the segments it has mapped
(``/proc/self/maps``), then runs the tool as ``python -m`` would
(:func:`runpy.run_module` under mpi4py's runner); after the job none of
them may be left.
"""

from __future__ import annotations

import json
import os

from conftest import launch


def _one_message(out, code: int, says: str) -> None:
    assert out.returncode == code, out.stderr
    assert out.stderr.count(says) == 1, out.stderr  # rank 0 only
    assert "Abort" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_bench_bad_option(tmp_path):
    out = launch(tmp_path, 2, "collectives.bench", "--repeats", "-5")
    _one_message(out, 2, "--repeats: expected an integer >= 1")


def test_bench_unwritable_output(tmp_path):
    out = launch(tmp_path, 2, "collectives.bench", "--max-bytes", "8", "--json", str(tmp_path / "no" / "b.json"))
    _one_message(out, 2, "--json cannot write")
    assert "time_us" not in out.stdout  # before the sweep: not even its header


def test_alphabeta_unreadable_profile(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([1, 2]))
    out = launch(tmp_path, 2, "collectives.alphabeta", "--profile", str(path), "--simulate")
    _one_message(out, 2, f"{path} is not a profile")


def test_numa_world_of_the_wrong_size(tmp_path):
    out = launch(tmp_path, 2, "numa", "--expect-ranks", "3")
    _one_message(out, 3, "expected 3")


def test_numa_flags_that_do_not_fit(tmp_path):
    out = launch(tmp_path, 2, "numa", "--flags", "compact", "--threads", str(4 * (os.cpu_count() or 1)))
    _one_message(out, 2, "--flags compact:")


def test_roofline_bad_option(tmp_path):
    out = launch(tmp_path, 1, "training.roofline", "--kernels", "nope")
    _one_message(out, 2, "unknown kernel(s)")
