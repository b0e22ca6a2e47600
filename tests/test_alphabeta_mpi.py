"""The alpha-beta CLI end to end on real MPI, and auto from a profile on every rank (no timing asserted)."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import collectives
from collectives import bench, progress
from collectives.alphabeta import command, links, local_costs, sampling
from collectives.alphabeta.predict import bench_args
from collectives.model import cost_model
from collectives.model.profile import Profile, load
from collectives.passes import drain
from collectives.runtime import auto
from conftest import world

pytestmark = pytest.mark.mpi(min_size=1)


def _shared_dir(tmp_path_factory):
    comm = world()
    return comm.bcast(str(tmp_path_factory.mktemp("ab")) if comm.Get_rank() == 0 else None)


def test_measure_fit_predict_and_write_everything(tmp_path_factory, monkeypatch, capsys):
    comm = world()
    d = _shared_dir(tmp_path_factory)
    js, h5, png = f"{d}/ab.json", f"{d}/ab.h5", f"{d}/ab.png"
    monkeypatch.setattr(progress, "stderr_reaches_terminal", lambda: True)  # as if watched
    try:
        # up to 1 MiB, so the last fitted regime has a slope even when four ranks share two cores
        rc = command.main(["--max-bytes", "1M", "--budget", "0.002", "--max-pairs", "3",
                             "--predict", "--predict-max-bytes", "16K", "--bench-budget", "0.002",
                             "--json", js, "--output", h5, "--plot", png])
    finally:
        auto.set_profile()
    assert rc == 0
    comm.Barrier()
    shown = [line.split(" done")[0] for line in capsys.readouterr().err.splitlines() if " done (" in line]
    if comm.Get_rank() != 0:
        assert shown == []  # rank 0 alone reports
        return
    # one line per pass of the measurements (5 by default), then per size and pass of the --predict bench
    bench_steps = len(bench.sizes(4, 16 << 10)) * 5
    assert shown == ([f"# python -m collectives.alphabeta measuring: {k}/5" for k in range(1, 6)]
                     + [f"# python -m collectives.alphabeta --predict bench: {k}/{bench_steps}"
                        for k in range(1, bench_steps + 1)])
    with open(js) as f:
        doc = json.load(f)
    prof = load(js)
    assert prof.meta["ranks"] == comm.Get_size()
    assert prof.meta["timing"] == "barrier" == bench_args(command.parse_args(["--predict"])).timing  # checked alike
    if comm.Get_size() > 1:
        assert prof.intra.alpha > 0 and prof.intra.beta > 0
        assert prof.intra_exchange is not None
        assert 0 < prof.intra.r2 <= 1
    every = {f"{f}/{a}" for f in local_costs.FAMILIES for a in cost_model.predictable(f)}
    assert set(prof.call_overheads) == every
    assert all(np.isfinite(t) and t >= 0 for t in prof.call_overheads.values())
    # tiny budgets, maybe oversubscribed: no timing asserted
    for pw in (prof.intra, prof.reduce, prof.reduce_sent, prof.reduce_alone, prof.copy):
        assert all(np.isfinite([s.alpha, s.beta]).all() and s.alpha >= 0 and s.beta >= 0 for s in pw.segments)
    recs = doc["predictions"]
    assert {r["algorithm"] for r in recs} == set(collectives.ALGORITHMS["allreduce"])
    for r in recs:
        if r["algorithm"] in cost_model.predictable("allreduce"):
            assert r["predicted_us"] > 0 and np.isfinite(r["rel_error"])
        if r["algorithm"] == "auto":
            assert r["auto_choice"] in cost_model.predictable("allreduce")
            assert r["measured_us"] == r["bench_us"]  # auto only runs in the bench after the profile
        else:
            assert r["bench_us"] > 0  # fixed algorithms: timed alongside the profile and again beside auto
    with h5py.File(h5) as f:
        assert f["reduce/seconds"].shape[0] == len(f["reduce/bytes"])
        sizes = list(f["reduce/bytes"])
        assert list(f["reduce_alone/bytes"]) == sizes == list(f["reduce_sent/bytes"])
        assert json.loads(f.attrs["profile"])["version"] == 1
        assert {n.decode() for n in f["calls/name"][...]} == every
        assert np.all(f["calls/seconds"][...] > 0)
        if comm.Get_size() > 1:
            assert f["pingpong_intra/median"].shape == f["pingpong_intra/bytes"].shape
            assert f["exchange_intra/bytes"][0] == 0
        if comm.Get_size() > 2:
            a = f["pairs/alpha"][...]
            assert a.shape == (comm.Get_size(),) * 2 and np.isfinite(a).sum() >= 2
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_passes_visit_every_size_in_turn():
    calls = []

    def block(n, iters, warm):
        calls.append((n, iters, warm))
        return [float(n)] * iters

    got = drain(sampling._passes([8, 64], lambda n: 5 if n == 8 else 1, 3, 4, block))
    assert calls == [(8, 2, 4), (64, 1, 4), (8, 2, 1), (64, 1, 1), (8, 2, 1), (64, 1, 1)]
    assert {n: len(v) for n, v in got.items()} == {8: 6, 64: 3}


@pytest.mark.parametrize("passes", [1, 3])
def test_kernels_and_messages_sample_every_size(passes):
    comm = world()
    sizes = [64, 1000, 4096]
    want = {n: passes * -(-sampling._iterations(n, 0.0) // passes) for n in sizes}
    for kind in ("reduce", "reduce_sent", "copy"):
        got = drain(local_costs.local_kernel(comm, kind, sizes, 0.0, passes))
        assert {n: len(v) for n, v in got.items()} == {n // 4 * 4: want[n] for n in sizes}
        assert all(np.all(v > 0) for v in got.values())
    if comm.Get_size() > 1:
        for exchange in (False, True):
            got = drain(links.pingpong(comm, 0, 1, sizes, 0.0, exchange=exchange, passes=passes))
            if comm.Get_rank() == 0:
                assert {n: len(v) for n, v in got.items()} == want
                assert all(np.all(v > 0) for v in got.values())
            else:
                assert got == {}


@pytest.mark.parametrize("passes", [1, 2])
def test_calls_of_every_algorithm_are_timed_interleaved(passes, monkeypatch):
    from collectives import bench

    comm = world()
    ran = []

    def recording(family, make):
        def make_recording(a, c):
            run = make(a, c)
            return lambda x, y: ran.append((family, a)) or run(x, y)

        return make_recording

    for family, run in list(bench._RUN.items()):
        monkeypatch.setitem(bench._RUN, family, recording(family, run))
    families = ("allreduce", "broadcast")
    got = drain(local_costs.call_times(comm, 0.0, passes, families))
    want = [(f, a) for f in families for a in cost_model.predictable(f)]
    assert sorted(got) == sorted(want)
    # 50 repeats each, split over the passes, and the slowest rank's time of each on every rank
    assert all(len(v) == passes * -(-50 // passes) and np.all(v > 0) for v in got.values())
    ref = comm.bcast(got, root=0)
    assert all(np.array_equal(ref[k], got[k]) for k in got)
    # interleaved: within a family's repeats no algorithm runs twice before every other ran once
    timed = [a for f, a in ran if f == "allreduce"][5 * len(cost_model.predictable("allreduce")):]
    k = len(cost_model.predictable("allreduce"))
    assert all(sorted(timed[i:i + k]) == sorted(cost_model.predictable("allreduce"))
               for i in range(0, 50 * k, k))


def test_the_reduce_writes_a_buffer_of_its_own_or_the_one_just_sent(monkeypatch):
    from collectives.runtime import reduce_ops

    comm = world()
    into = []
    kernel = reduce_ops.combine
    monkeypatch.setattr(reduce_ops, "combine",
                        lambda dst, src, *a: into.append(dst) or kernel(dst, src, *a))
    pools = sampling.make_pools([4096])
    sent = []
    exchange = local_costs._exchange
    monkeypatch.setattr(local_costs, "_exchange",
                        lambda c, s, r, peer: sent.append(s[0]) or exchange(c, s, r, peer))
    for kind in ("reduce", "reduce_sent"):
        into.clear()
        sent.clear()
        drain(local_costs.local_kernel(comm, kind, [4096], 0.0, 1, pools))
        assert len(into) == 3 + sampling._iterations(4096, 0.0)
        if comm.Get_size() > 1:
            same = [d is s for d, s in zip(into, sent)]
            assert all(same) if kind == "reduce_sent" else not any(same)
    with pytest.raises(ValueError, match="unknown kernel"):
        drain(local_costs.local_kernel(comm, "sum", [4096], 0.0))


def test_the_lone_reduce_runs_on_rank_0_only(monkeypatch):
    from collectives.runtime import reduce_ops

    comm = world()
    sizes = [64, 4096]
    calls = []
    kernel = reduce_ops.combine
    monkeypatch.setattr(reduce_ops, "combine", lambda *a: calls.append(1) or kernel(*a))
    got = drain(local_costs.local_kernel(comm, "reduce", sizes, 0.0, 2, alone=True))
    # per size: 3 warm-up calls in the first pass, 1 in the second, and each pass's share
    runs = sum(3 + 1 + 2 * -(-sampling._iterations(n, 0.0) // 2) for n in sizes)
    assert len(calls) == (runs if comm.Get_rank() == 0 else 0)
    assert all(np.all(v > 0) for v in got.values())
    ref = comm.bcast(got, root=0)  # every rank has rank 0's times
    assert all(np.array_equal(ref[n], got[n]) for n in got)


def test_simulate_needs_only_a_profile(tmp_path_factory):
    comm = world()
    d = _shared_dir(tmp_path_factory)
    prof_path, js, png = f"{d}/p.json", f"{d}/sim.json", f"{d}/sim.png"
    if comm.Get_rank() == 0:
        Profile.hockney(2e-6, 1e-10, 5e-11, inter=(5e-6, 1e-9)).save(prof_path)
    comm.Barrier()
    assert command.main(["--profile", prof_path, "--simulate", "--sim-ranks", "2,7,64,4096",
                           "--ranks-per-node", "1,16", "--sim-max-bytes", "1M",
                           "--json", js, "--plot", png]) == 0
    if comm.Get_rank() == 0:
        with open(js) as f:
            sim = json.load(f)["simulation"]
        assert len(sim) == 2 * 4 * 19  # ranks-per-node x P x sizes 4 B .. 1 MiB
        small = [r for r in sim if r["bytes"] == 4 and r["p"] == 4096]
        assert all(r["winner"] == "recursive_doubling" for r in small)
        assert os.path.getsize(png) > 1000


def test_missing_profile_is_a_clear_error(tmp_path_factory, capsys):
    with pytest.raises(SystemExit) as e:
        command.main(["--profile", "/nonexistent/profile.json"])
    assert e.value.code == 2
    assert ("/nonexistent/profile.json" in capsys.readouterr().err) == (world().Get_rank() == 0)


def test_a_profile_one_rank_cannot_read_stops_every_rank(tmp_path_factory, capsys):
    """Each rank reads the profile itself (on a cluster, maybe from its own disk): all must agree to stop."""
    comm = world()
    d = _shared_dir(tmp_path_factory)
    good, bad = f"{d}/good.json", f"{d}/bad.json"
    if comm.Get_rank() == 0:
        Profile.hockney(2e-6, 1e-10).save(good)
        with open(bad, "w") as f:
            json.dump([1, 2], f)
    comm.Barrier()
    with pytest.raises(SystemExit) as e:
        command.main(["--profile", bad if comm.Get_rank() == comm.Get_size() - 1 else good, "--simulate"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    if comm.Get_rank() == 0:
        assert f"{bad} is not a profile: expected a JSON object, got a list" in err


@pytest.mark.parametrize("option", ["--json", "--output", "--plot", "--save"])
def test_an_unwritable_output_stops_every_rank_before_measuring(option, tmp_path_factory, capsys, monkeypatch):
    comm = world()
    d = _shared_dir(tmp_path_factory)
    blocker = f"{d}/file"  # a file where a directory should be
    if comm.Get_rank() == 0:
        open(blocker, "w").close()
    comm.Barrier()
    argv = ["--max-bytes", "1K", "--budget", "0.001", "--passes", "1"]
    if option == "--save":
        monkeypatch.setenv("XDG_CACHE_HOME", blocker)  # the default path lies under it
        argv.append(option)
    else:
        argv += [option, f"{blocker}/out"]
    with pytest.raises(SystemExit) as e:
        command.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing measured, nothing printed
    if comm.Get_rank() == 0:
        assert f"{option} cannot write {blocker}/" in err


@pytest.mark.parametrize("nbytes", [4, 4096, 1 << 20])
def test_auto_from_a_profile_runs_the_predicted_algorithm(nbytes, tmp_path_factory):
    comm = world()
    p = comm.Get_size()
    prof = Profile.hockney(1e-3, 0.0, 0.0)  # latency dear: fewest rounds wins
    auto.set_profile(prof)
    try:
        name = auto.choose("allreduce", nbytes, p, ranks_per_node=p)
        assert name == cost_model.best("allreduce", nbytes, p, prof, ranks_per_node=p)[0]
        x = np.arange(nbytes // 4, dtype=np.float32) + comm.Get_rank()
        y = collectives.allreduce(x, algorithm="auto")
        ref = np.empty_like(x)
        comm.Allreduce(x, ref)
        np.testing.assert_allclose(y, ref, rtol=1e-6)
    finally:
        auto.set_profile()


def test_the_api_keeps_auto_decisions_per_communicator_until_a_new_profile():
    from collectives.runtime.communicator import library_comm

    comm = world()
    p = comm.Get_size()
    lib = library_comm(comm)
    x = np.ones(1 << 18, np.float32)
    key = ("allreduce", x.nbytes, 4)
    try:
        auto.set_profile(Profile.hockney(1e-3, 0.0, 0.0))  # latency dear
        collectives.allreduce(x, algorithm="auto", comm=comm)
        first = lib.decisions[key]
        assert first == cost_model.best("allreduce", x.nbytes, p, auto.current_profile(),
                                        ranks_per_node=lib.ranks_per_node)[0]
        auto.set_profile(Profile.hockney(0.0, 1e-9, 1e-9))  # bandwidth dear
        assert lib.decisions == {}  # emptied in place: no stale decision survives
        y = collectives.allreduce(x, algorithm="auto", comm=comm)
        assert lib.decisions[key] == auto.choose("allreduce", x.nbytes, p,
                                                 ranks_per_node=lib.ranks_per_node)
        assert np.all(y == p)
        if p > 1:  # the two profiles disagree (one rank: every algorithm costs the same)
            assert lib.decisions[key] != first
    finally:
        auto.set_profile()


def test_ranks_with_different_profiles_are_refused_on_every_rank():
    comm = world()
    if comm.Get_size() < 2:
        pytest.skip("needs two ranks to disagree")
    auto.set_profile(Profile.hockney(1e-6 * (1 + comm.Get_rank()), 1e-10, 0.0))
    fresh = comm.Dup()
    try:
        with pytest.raises(collectives.CollectiveError, match="different cost profiles"):
            collectives.allreduce(np.ones(4, np.float32), comm=fresh)
    finally:
        auto.set_profile()
        fresh.Free()
