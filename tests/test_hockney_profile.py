"""Piecewise Hockney fits and profiles (no MPI)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from collectives.model import cost_model
from collectives.model.hockney import Piecewise, fit
from collectives.model.profile import ENV, Profile, active, load
from collectives.runtime import auto


def _sizes():
    return np.array([0] + [1 << k for k in range(0, 27)], float)


def test_one_line_is_recovered_with_noise(rng):
    n = _sizes()
    t = (2e-6 + n / 10e9) * (1 + 0.01 * rng.standard_normal(len(n)))
    m = fit(n, t)
    assert len(m.segments) <= 2
    assert m.alpha == pytest.approx(2e-6, rel=0.05)
    assert 1 / m.beta == pytest.approx(10e9, rel=0.05)
    assert m.r2 > 0.99 and m.max_rel_residual < 0.05


def test_protocol_switch_is_found_as_a_breakpoint():
    n = _sizes()
    eager = 1.5e-6 + n / 4e9
    rendezvous = 8e-6 + n / 12e9
    t = np.where(n < 65536, eager, rendezvous)
    m = fit(n, t)
    assert len(m.segments) == 2
    assert 32768 < m.segments[1].lo < 65536
    assert m.segments[0].alpha == pytest.approx(1.5e-6, rel=1e-6)
    assert m.segments[1].alpha == pytest.approx(8e-6, rel=1e-6)
    assert 1 / m.beta == pytest.approx(12e9, rel=1e-6)
    assert m.max_rel_residual < 1e-9


def test_fit_refuses_nonpositive_times():
    with pytest.raises(ValueError):
        fit([1, 2, 3], [1e-6, 0.0, 1e-6])


def test_profile_round_trips_and_fingerprints(tmp_path):
    p = Profile.hockney(2e-6, 1e-10, 3e-11, inter=(5e-6, 1e-9))
    path = tmp_path / "p.json"
    p.save(str(path))
    q = load(str(path))
    assert q == p and q.fingerprint() == p.fingerprint()
    assert Profile.hockney(2e-6, 1e-10, 4e-11).fingerprint() != p.fingerprint()
    # the --json output of alphabeta, with the profile under "profile", loads too
    wrapped = tmp_path / "ab.json"
    wrapped.write_text(json.dumps({"profile": p.to_dict(), "predictions": []}))
    assert load(str(wrapped)) == p


@pytest.mark.parametrize("name,value,default", [
    ("reduce_alone", Piecewise.line(0.0, 2e-11), None),
    ("reduce_sent", Piecewise.line(0.0, 9e-11), None),
    ("call_overheads", {"allreduce/ring": 5e-6}, {}),
])
def test_a_field_added_later_round_trips_and_older_profiles_load_without_it(name, value, default):
    p = Profile.hockney(2e-6, 1e-10, 3e-11, inter=(5e-6, 1e-9))
    new = dataclasses.replace(p, **{name: value})
    assert Profile.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    assert new.fingerprint() != p.fingerprint()
    old = new.to_dict()
    del old[name]
    assert getattr(Profile.from_dict(old), name) == default
    assert Profile.from_dict(old) == p


def test_an_algorithm_without_its_own_overhead_gets_the_shared_one():
    p = dataclasses.replace(Profile.hockney(2e-6, 1e-10), call_overhead=3e-6,
                            call_overheads={"allreduce/ring": 5e-6})
    assert p.overhead("allreduce", "ring") == 5e-6
    assert p.overhead("allreduce", "recursive_doubling") == 3e-6
    assert p.overhead("allgather", "ring") == 3e-6


def test_a_broken_profile_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a profile"):
        load(str(bad))
    bad.write_text(json.dumps({"version": 1}))
    with pytest.raises(ValueError, match="not a profile"):
        load(str(bad))


@pytest.mark.parametrize("data,says", [
    ([1, 2], "expected a JSON object, got a list"),
    ("profile", "expected a JSON object, got a str"),
    ({"profile": [1]}, "expected a JSON object, got a list"),
    ({**Profile.hockney(2e-6, 1e-10).to_dict(), "call_overheads": [5e-6]}, "not a profile"),
    ({**Profile.hockney(2e-6, 1e-10).to_dict(), "intra": None}, "not a profile"),
])
def test_a_profile_of_the_wrong_shape_names_its_path(data, says, tmp_path):
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=says) as e:
        load(str(path))
    assert str(e.value).startswith(f"{path} is not a profile: ")


@pytest.mark.parametrize("field,value", [
    (("intra", "segments", 0, "alpha"), float("nan")),
    (("intra", "segments", 0, "beta"), -1e-10),
    (("reduce", "segments", 0, "beta"), float("inf")),
    (("copy", "per_byte"), [[64.0, -1e-9]]),
    (("call_overhead",), -3e-6),
    (("round_overhead",), float("nan")),
    (("call_overheads",), {"allreduce/ring": -5e-6}),
])
def test_a_profile_with_a_nan_or_negative_cost_is_refused(field, value, tmp_path):
    d = Profile.hockney(2e-6, 1e-10, 3e-11, inter=(5e-6, 1e-9)).to_dict()
    inner = d
    for key in field[:-1]:
        inner = inner[key]
    inner[field[-1]] = value
    path = tmp_path / "bad_costs.json"
    path.write_text(json.dumps(d))  # NaN and Infinity: Python's json writes and reads them
    with pytest.raises(ValueError, match="costs must be finite and >= 0") as e:
        load(str(path))
    assert str(e.value).startswith(f"{path} is not a profile: ")


def test_auto_uses_the_profile_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV, raising=False)
    auto.set_profile()
    assert active() == (None, "")
    assert auto.choose("allreduce", 64 << 20, 64) == auto.builtin("allreduce", 64 << 20, 64)
    # a network where latency is free and bandwidth dear: the naive root loses, a bandwidth-optimal one wins
    path = tmp_path / "net.json"
    Profile.hockney(0.0, 1e-9, 0.0).save(str(path))
    monkeypatch.setenv(ENV, str(path))
    try:
        assert active()[1] == str(path)
        auto.set_profile()  # read the environment again
        assert auto.choose("allreduce", 64 << 20, 64) in ("ring", "rabenseifner", "sharded_ps")
        # latency dear and bandwidth free: fewest rounds
        Profile.hockney(1e-3, 0.0, 0.0).save(str(path))
        auto.set_profile()
        assert auto.choose("allreduce", 64 << 20, 64) == "recursive_doubling"
        monkeypatch.setenv(ENV, str(tmp_path / "missing.json"))
        with pytest.raises(ValueError, match="no such file"):
            active()
        auto.set_profile()
        assert auto.profile_fingerprint().startswith("unreadable profile")
        monkeypatch.setenv(ENV, "")
        assert auto.current_profile() is None
    finally:
        auto.set_profile()


def test_auto_keeps_the_profile_it_read_until_told_to_read_again(tmp_path, monkeypatch):
    """Read once per process: a file rewritten mid-run must not split the ranks' decisions."""
    path = tmp_path / "net.json"
    Profile.hockney(1e-3, 0.0, 0.0).save(str(path))  # latency dear: fewest rounds
    monkeypatch.setenv(ENV, str(path))
    auto.set_profile()
    try:
        first = auto.current_profile()
        assert auto.choose("allreduce", 64 << 20, 64) == "recursive_doubling"
        Profile.hockney(0.0, 1e-9, 0.0).save(str(path))  # bandwidth dear
        monkeypatch.setenv(ENV, "")
        assert auto.current_profile() is first
        assert auto.choose("allreduce", 64 << 20, 64) == "recursive_doubling"
        monkeypatch.setenv(ENV, str(path))
        auto.set_profile()
        assert auto.current_profile() != first
        assert auto.choose("allreduce", 64 << 20, 64) in ("ring", "rabenseifner", "sharded_ps")
    finally:
        auto.set_profile()


def test_auto_decides_again_after_set_profile():
    """Decisions are cached per size; a new profile (or none) must not inherit them."""
    try:
        auto.set_profile(None)
        assert auto.choose("allreduce", 64 << 20, 64) == auto.builtin("allreduce", 64 << 20, 64) == "ring"
        auto.set_profile(Profile.hockney(1e-3, 0.0, 0.0))  # latency dear: fewest rounds
        assert auto.choose("allreduce", 64 << 20, 64) == "recursive_doubling"
        auto.set_profile(None)
        assert auto.choose("allreduce", 64 << 20, 64) == "ring"
    finally:
        auto.set_profile()


def test_footprint_round_trips_and_moves_only_the_slope():
    from collectives.model.hockney import Segment

    pw = Piecewise((Segment(0.0, 1e6, 1e-6, 1e-10), Segment(1e6, math.inf, 5e-6, 3e-10)), footprint=6.0)
    assert Piecewise.from_dict(pw.to_dict()) == pw
    # a 1 KB message inside a 60 MB working set: small-message alpha, large-working-set beta
    assert pw(1e3, resident=60e6) == pytest.approx(1e-6 + 3e-10 * 1e3)
    assert pw(1e3) == pytest.approx(1e-6 + 1e-10 * 1e3)
    assert pw(1e3, flows=2, resident=60e6) == pytest.approx(1e-6 + 2 * 3e-10 * 1e3)


def test_cost_per_byte_inside_a_working_set_follows_the_measured_sizes():
    """Between cache and memory the cost per byte climbs smoothly; a line per regime misses it."""
    mib = 1 << 20
    sizes = [mib, 2 * mib, 4 * mib, 8 * mib, 16 * mib, 32 * mib]
    per_byte = [3e-11, 3e-11, 6e-11, 12e-11, 14e-11, 14e-11]  # a cache running out from 2 MiB
    times = [1e-6 + b * n for n, b in zip(sizes, per_byte)]
    pw = fit(sizes, times, max_segments=2, footprint=6.0)
    assert [n for n, _ in pw.per_byte] == sizes
    assert Piecewise.from_dict(json.loads(json.dumps(pw.to_dict()))) == pw
    # at a measured size, its own cost per byte (net of the segment's alpha)
    for n, b in zip(sizes, per_byte):
        seg = pw.segment(n)
        assert pw.cost_per_byte(n) == pytest.approx(b + (1e-6 - seg.alpha) / n)
    # halfway in log size between 4 and 8 MiB, halfway in cost; clamped past the ends
    mid = pw.cost_per_byte(math.sqrt(32) * mib)
    assert mid == pytest.approx((pw.cost_per_byte(4 * mib) + pw.cost_per_byte(8 * mib)) / 2)
    assert pw.cost_per_byte(1e12) == pytest.approx(pw.cost_per_byte(32 * mib))
    assert pw.cost_per_byte(1.0) == pytest.approx(pw.cost_per_byte(mib))
    # a 1 KiB message in a 36 MiB working set (measured at 6 MiB): its own alpha, 6 MiB's cost per byte
    assert pw(1024, resident=36 * mib) == pytest.approx(pw.segment(1024).alpha + pw.cost_per_byte(6 * mib) * 1024)
    # without a footprint there are no points, and nothing to interpolate
    assert fit(sizes, times, max_segments=2).per_byte == ()


def test_piecewise_serialises_infinity():
    m = Piecewise.line(1e-6, 1e-10)
    assert Piecewise.from_dict(json.loads(json.dumps(m.to_dict()))) == m


RECORDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "measurements")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(RECORDS) if f.startswith("alphabeta_")))
def test_every_recorded_profile_still_loads_and_predicts(name):
    prof = load(os.path.join(RECORDS, name))
    assert prof.intra.alpha > 0 and prof.reduce.beta > 0
    assert cost_model.best("allreduce", 1 << 20, 16, prof, ranks_per_node=16)[1] > 0
