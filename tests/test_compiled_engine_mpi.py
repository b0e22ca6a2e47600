"""The compiled engine and the repeated-call fast path, against the Python loop and the whole path, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives.algorithms.schedule import Round, Send
from collectives.runtime import auto, engine, native, registry, repeat, traffic
from collectives.runtime.communicator import REPEATS, library_comm, unchecked
from conftest import collective_assert, world

pytestmark = pytest.mark.mpi(min_size=1)

MPI = pytest.importorskip("mpi4py.MPI")
SCHEDULED = [name for name in collectives.ALGORITHMS["allreduce"] if name not in ("mpi", "auto")]


def _python_loop(monkeypatch):
    """Make the engine run its Python loop (as for an MPI without a binding).

    The world's library communicator is made first, with its handles: one
    made while the binding is hidden would keep none, and never repeat.
    """
    library_comm(world())
    monkeypatch.setattr(native, "binding", lambda: None)


def _compiled_only(monkeypatch):
    """Make the Python loop raise: what runs must be the compiled engine."""
    def refuse(*args, **kwargs):
        raise AssertionError("the Python loop ran")

    monkeypatch.setattr(engine, "rounds_posted", refuse)


def _input(n: int, dtype: str, rank: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + rank)
    if dtype.startswith("int"):
        return rng.integers(-50, 50, n).astype(dtype)
    return rng.standard_normal(n).astype(dtype)


def _bits_equal(comm, a, b, what):
    collective_assert(comm, a.dtype == b.dtype and a.tobytes() == b.tobytes(), what)


def test_binding_found_for_this_mpi():
    bind = native.binding()
    assert bind is not None, MPI.Get_library_version()
    assert bind.handle.itemsize == MPI._sizeof(MPI.Comm)
    assert bind.calls[native.STATUS_IGNORE] == (1 if bind.handle.itemsize == 4 else 0)
    assert bind.calls[native.IN_PLACE] == int(MPI.IN_PLACE)
    assert all(bind.calls[: native.STATUS_IGNORE])


@pytest.mark.parametrize("algorithm", SCHEDULED)
def test_allreduce_compiled_equals_the_python_loop(algorithm, monkeypatch):
    comm = world()
    for n, op, dtype in ((1, "sum", "float32"), (comm.Get_size() + 1, "max", "int64"), (1009, "sum", "float32"),
                         (1009, "max", "float64")):
        x = _input(n, dtype, comm.Get_rank())
        _python_loop(monkeypatch)
        with traffic.count() as loop_traffic:
            want = collectives.allreduce(x, algorithm=algorithm, op=op)
        monkeypatch.undo()
        _compiled_only(monkeypatch)
        with traffic.count() as compiled_traffic:
            got = collectives.allreduce(x, algorithm=algorithm, op=op)
        monkeypatch.undo()
        _bits_equal(comm, got, want, f"{algorithm} {op} {dtype} n={n}")
        collective_assert(comm, compiled_traffic == loop_traffic, f"{compiled_traffic} != {loop_traffic}")


@pytest.mark.parametrize("family,algorithm", [
    (family, name) for family in ("allgather", "reduce_scatter", "broadcast")
    for name in collectives.ALGORITHMS[family] if name not in ("mpi", "auto")])
def test_other_families_compiled_equal_the_python_loop(family, algorithm, monkeypatch):
    comm = world()
    p, rank = comm.Get_size(), comm.Get_rank()
    for n in (1, 2 * p + 1, 1001):
        x = _input(n, "float64", rank)

        def call():
            if family == "allgather":
                return collectives.allgather(x, algorithm=algorithm)
            if family == "reduce_scatter":
                return collectives.reduce_scatter(x, op="min", algorithm=algorithm)
            buf = x.copy()
            return collectives.broadcast(buf, root=p - 1, algorithm=algorithm)

        _python_loop(monkeypatch)
        want = call()
        monkeypatch.undo()
        _compiled_only(monkeypatch)
        got = call()
        monkeypatch.undo()
        _bits_equal(comm, got, want, f"{family} {algorithm} n={n}")


def test_float16_runs_the_python_loop(monkeypatch):
    # Numba has no CPU float16; every rank raises before posting anything, so none waits
    _compiled_only(monkeypatch)
    with pytest.raises(AssertionError, match="the Python loop ran"):
        collectives.allreduce(np.ones(5, np.float16), algorithm="ring", comm=world())


def test_the_compiled_engine_raises_the_library_error():
    lib = library_comm(world())
    bad = (Round(sends=(Send(lib.Get_size() + 3, 0, 1),)),)
    with pytest.raises(MPI.Exception) as info:
        engine.execute(bad, np.ones(4, np.float32), lib)
    assert info.value.Get_error_class() == MPI.ERR_RANK


ALL = SCHEDULED + ["mpi", "auto"]


@pytest.mark.parametrize("algorithm", ALL)
def test_repeated_calls_equal_the_whole_path(algorithm):
    comm = world()
    dtype = "float32"
    for n, op in ((1, "sum"), (3, "min"), (1009, "avg"), (1009, "prod")):
        x = _input(n, dtype, comm.Get_rank())
        if op == "prod":
            x = np.abs(x) + np.float32(0.5)
        want = collectives.allreduce(x, algorithm=algorithm, op=op, comm=comm)  # check on: the whole path
        with unchecked():
            REPEATS.pop(repeat.signature(comm, x, op, algorithm), None)
            first = collectives.allreduce(x, algorithm=algorithm, op=op, comm=comm)
            kept = repeat.kept(comm, x, op, algorithm) is not None
            fresh = collectives.allreduce(x, algorithm=algorithm, op=op, comm=comm)
            out = np.full_like(x, np.nan)
            into = collectives.allreduce(x, out, algorithm=algorithm, op=op, comm=comm)
            grid = x.reshape(1, -1).copy()
            in_place = collectives.allreduce(grid, grid, algorithm=algorithm, op=op, comm=comm)
        # "mpi" with a NaN-propagating min is a Python user op: not kept, and still right
        collective_assert(comm, kept == (not (algorithm == "mpi" and op == "min")), f"kept={kept}")
        for got, how in ((first, "first"), (fresh, "new recvbuf"), (into, "given recvbuf"),
                         (in_place.reshape(-1), "in place, 2-D")):
            _bits_equal(comm, got, want, f"{algorithm} {op} n={n}: {how}")
        collective_assert(comm, into is out and in_place is grid and in_place.shape == (1, n))


@pytest.mark.parametrize("algorithm", ["recursive_doubling", "ring", "mpi"])
def test_a_repeat_with_a_bad_buffer_takes_the_whole_path_and_raises(algorithm):
    comm = world()
    x = np.ones(8, np.float32)
    with unchecked():
        collectives.allreduce(x, algorithm=algorithm, comm=comm)
        assert repeat.kept(comm, x, "sum", algorithm) is not None
        strided = np.ones(16, np.float32)[::2]
        readonly = np.ones(8, np.float32)
        readonly.flags.writeable = False
        overlap = np.ones(9, np.float32)
        for send, recv, match in (
            (strided, None, "not C-contiguous"),
            (readonly, readonly, "read-only"),
            (overlap[:8], overlap[1:], "overlaps"),
            (x, np.ones(8, np.float64), "dtype"),
            (x, np.ones(7, np.float32), "elements"),
            (x, x[::-1].copy()[::-1], "not C-contiguous"),
            (x, [0.0] * 8, "recvbuf must be"),
        ):
            with pytest.raises(collectives.CollectiveError, match=match):
                collectives.allreduce(send, recv, algorithm=algorithm, comm=comm)
        np.testing.assert_array_equal(collectives.allreduce(x, algorithm=algorithm, comm=comm),
                                      np.full(8, comm.Get_size(), np.float32))
        subclass = np.zeros(8, np.float32).view(np.recarray)  # not ndarray exactly: the whole path takes it
        assert collectives.allreduce(x, subclass, algorithm=algorithm, comm=comm) is subclass
        np.testing.assert_array_equal(subclass, np.full(8, comm.Get_size(), np.float32))


def test_repeats_count_their_traffic():
    comm = world()
    x = np.ones(100, np.float32)
    with traffic.count() as whole:
        collectives.allreduce(x, algorithm="ring", comm=comm)
    with unchecked():
        collectives.allreduce(x, algorithm="ring", comm=comm)
        with traffic.count() as repeated:
            collectives.allreduce(x, algorithm="ring", comm=comm)
    assert repeated == whole


def test_a_new_profile_forgets_the_repeats():
    comm = world()
    x = np.ones(4, np.float32)
    with unchecked():
        collectives.allreduce(x, comm=comm)
    assert repeat.kept(comm, x, "sum", "auto") is not None
    auto.set_profile(auto.current_profile())
    assert repeat.kept(comm, x, "sum", "auto") is None


def test_a_freed_communicator_is_forgotten():
    comm = world().Dup()
    with unchecked():
        collectives.allreduce(np.ones(4, np.float32), algorithm="ring", comm=comm)
    comm.Free()
    with pytest.raises(collectives.CollectiveError, match="COMM_NULL"):
        collectives.allreduce(np.ones(4, np.float32), algorithm="ring", comm=comm)


def test_a_misaligned_repeat_takes_the_whole_path_and_keeps_the_runner():
    comm = world()
    raw = np.zeros(4 * 8 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32)  # 8 float32 one byte past an aligned address
    assert not misaligned.flags.aligned
    misaligned[...] = 1.0
    with unchecked():
        collectives.allreduce(np.ones(8, np.float32), algorithm="mpi", comm=comm)
        kept = repeat.kept(comm, misaligned, "sum", "mpi")
        got = collectives.allreduce(misaligned, algorithm="mpi", comm=comm)
        assert repeat.kept(comm, misaligned, "sum", "mpi") == kept
    np.testing.assert_array_equal(got, np.full(8, comm.Get_size(), np.float32))


@pytest.mark.parametrize("algorithm", ["recursive_doubling", "mpi"])
def test_a_kept_array_changed_in_place_takes_the_whole_path(algorithm):
    """The same array objects as the kept call, changed since: the compiled checks read them anew."""
    comm = world()
    p = comm.Get_size()
    with unchecked():
        send, recv = np.ones(8, np.float32), np.zeros(8, np.float32)
        collectives.allreduce(send, recv, algorithm=algorithm, comm=comm)
        recv.flags.writeable = False
        with pytest.raises(collectives.CollectiveError, match="read-only"):
            collectives.allreduce(send, recv, algorithm=algorithm, comm=comm)
        recv = np.zeros(8, np.float32)
        collectives.allreduce(send, recv, algorithm=algorithm, comm=comm)
        recv.dtype = np.int32  # the same memory, re-typed: same size, another dtype
        with pytest.raises(collectives.CollectiveError, match="dtype"):
            collectives.allreduce(send, recv, algorithm=algorithm, comm=comm)
        grid = np.ones((2, 4), np.float32)
        collectives.allreduce(grid, grid, algorithm=algorithm, comm=comm)
        grid.shape = (4, 2)  # reshaped in place: still C-contiguous, still runs
        np.testing.assert_array_equal(collectives.allreduce(grid, grid, algorithm=algorithm, comm=comm),
                                      np.full((4, 2), p * p, np.float32))
        grid.strides = (4, 16)  # now a transposed view of the same memory
        with pytest.raises(collectives.CollectiveError, match="not C-contiguous"):
            collectives.allreduce(grid, grid, algorithm=algorithm, comm=comm)


def test_a_freed_communicators_repeats_are_dropped():
    comm = world().Dup()
    x = np.ones(4, np.float32)
    with unchecked():
        collectives.allreduce(x, algorithm="ring", comm=comm)
    assert repeat.kept(comm, x, "sum", "ring") is not None
    comm.Free()
    assert not [key for key, entry in REPEATS.items() if entry[0] is comm]


def test_only_the_librarys_all_reduce_is_kept_from_the_largest_size():
    comm = world()
    x = _input(repeat.LARGEST // 4 + 3, "float32", comm.Get_rank())
    want = collectives.allreduce(x, algorithm="mpi", comm=comm)
    with unchecked():
        for algorithm in ("mpi", "ring"):
            collectives.allreduce(x, algorithm=algorithm, comm=comm)
        assert repeat.kept(comm, x, "sum", "ring") is None
        assert repeat.kept(comm, x, "sum", "mpi") is not None
        _bits_equal(comm, collectives.allreduce(x, algorithm="mpi", comm=comm), want, "mpi, 1 MiB + 12 B")


def test_at_most_kept_signatures_are_kept_and_the_oldest_goes_first(monkeypatch):
    comm = world()
    monkeypatch.setattr(repeat, "KEPT", 2)
    REPEATS.clear()
    xs = [np.ones(n, np.float32) for n in (3, 4, 5)]
    with unchecked():
        for x in xs:
            collectives.allreduce(x, algorithm="ring", comm=comm)
    assert [repeat.kept(comm, x, "sum", "ring") is not None for x in xs] == [False, True, True]
    assert len(REPEATS) == 2
