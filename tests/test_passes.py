"""Pass generators: one pass of each measurement in turn (collectives.passes)."""

from __future__ import annotations

from collectives.passes import drain, interleave, share, visits


def _measurement(name, passes, log):
    for i in range(passes):
        log.append((name, i))
        yield
    return f"{name} done"


def test_interleave_runs_one_pass_of_each_in_turn_and_returns_every_result():
    log = []
    got = interleave([_measurement("profile", 3, log), _measurement("bench", 2, log)])
    assert log == [("profile", 0), ("bench", 0), ("profile", 1), ("bench", 1), ("profile", 2)]
    assert got == ["profile done", "bench done"]


def test_drain_runs_every_pass():
    log = []
    assert drain(_measurement("alone", 4, log)) == "alone done"
    assert log == [("alone", i) for i in range(4)]


def test_visits_warm_up_fully_only_in_the_first_pass():
    got = list(visits([8, 64], 3, 5))
    assert got == [[(8, 5, False), (64, 5, False)], [(8, 1, False), (64, 1, False)],
                   [(8, 1, True), (64, 1, True)]]
    assert [share(7, p) for p in (1, 2, 3, 7, 8)] == [7, 4, 3, 1, 1]
