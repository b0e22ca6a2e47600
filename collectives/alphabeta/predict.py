"""Predictions checked against a bench, and simulations at scale, from a profile."""

from __future__ import annotations

from mpi4py import MPI

from ..model import cost_model
from ..model.profile import Profile
from ..runtime import auto
from ..runtime.communicator import library_comm, ranks_per_node
from .sampling import TIMING


def bench_args(args, algorithms: str = ""):
    """``collectives.bench`` arguments of ``--predict``'s sweep (``algorithms``: default all), timed as the
    profile's samples are (:data:`.sampling.TIMING`)."""
    from .. import bench

    return bench.parse_args(
        ["--collective", args.collective, "--min-bytes", str(args.min_bytes),
         "--max-bytes", str(args.predict_max_bytes), "--quiet", "--budget", str(args.bench_budget),
         "--passes", str(args.passes), "--algorithms", algorithms, "--timing", TIMING]
    )


def alongside_bench(comm: MPI.Comm, args):
    """The bench of every predictable algorithm (and ``mpi``) as a pass generator, for :func:`.measure.measure`."""
    from .. import bench

    return bench.sweep(bench_args(args, ",".join(cost_model.predictable(args.collective))), comm)


def predict_table(comm: MPI.Comm, prof: Profile, args, alongside: list[dict] | None = None,
                  progress=None) -> list[dict]:
    """Bench every algorithm with ``auto`` on ``prof``; one record per (size, algorithm).

    ``alongside``: records of :func:`alongside_bench`, run interleaved with
    the measurements ``prof`` was fitted from.  Predictions are checked
    against those times (``measured_us``), taken in the same spells as the
    profile; ``auto`` (which cannot run before its profile exists) against
    the fixed algorithms of this bench, in which it is interleaved with them
    (``auto_vs_best``, and every row's ``bench_us``).  Without
    ``alongside`` (a saved profile), both use this bench.  ``progress``:
    see :func:`collectives.bench.sweep`.
    """
    from .. import bench

    auto.set_profile(prof)
    records = bench.run(bench_args(args), comm, progress)
    p = comm.Get_size()
    rpn = ranks_per_node(library_comm(comm))  # what the API's auto decides with
    beside = {(r["bytes"], r["algorithm"]): r["time_us"] for r in alongside or records}
    out = []
    for size in sorted({r["bytes"] for r in records}):
        rows = {r["algorithm"]: r for r in records if r["bytes"] == size}
        fixed = {a: rows[a]["time_us"] for a in cost_model.predictable(args.collective) if a in rows}
        best = min(fixed, key=fixed.get)
        choice = auto.choose(args.collective, size, p, ranks_per_node=rpn)
        for a, r in rows.items():
            measured = r["time_us"] if a == "auto" else beside[(size, a)]
            rec = {"bytes": size, "algorithm": a, "measured_us": measured, "bench_us": r["time_us"]}
            model = choice if a == "auto" else a
            if model in cost_model.predictable(args.collective):
                pred = cost_model.predict(args.collective, model, size, p, prof, ranks_per_node=rpn)
                rec["predicted_us"] = pred * 1e6
                rec["rel_error"] = (pred * 1e6 - measured) / measured
            if a == "auto":
                rec["auto_choice"] = choice
                rec["best_fixed"] = best
                rec["auto_vs_best"] = r["time_us"] / fixed[best]
            out.append(rec)
    return out


def simulate(prof: Profile, family: str, ps, rpns, nbytes_list) -> list[dict]:
    """Predicted time of every algorithm at every (ranks per node, P, bytes)."""
    out = []
    for rpn in rpns:
        for p in ps:
            for n in nbytes_list:
                times = {a: cost_model.predict(family, a, n, p, prof, ranks_per_node=rpn)
                         for a in cost_model.predictable(family)}
                win = min(times, key=times.get)
                out.append({"ranks_per_node": rpn, "p": p, "bytes": n, "winner": win,
                            "predicted_us": {a: t * 1e6 for a, t in times.items()}})
    return out
