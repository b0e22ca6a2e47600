"""The command line: ``python -m collectives.alphabeta``; see :mod:`collectives.alphabeta`."""

from __future__ import annotations

import argparse
import json

from mpi4py import MPI

from .. import bench, cli
from ..bench import sizes
from ..model.profile import default_path, load
from ..progress import Progress
from ..runtime.communicator import unchecked
from .local_costs import FAMILIES
from .measure import measure
from .predict import alongside_bench, bench_args, predict_table, simulate
from .report import describe, describe_pairs, describe_predictions, describe_simulation, write_hdf5

PROG = "python -m collectives.alphabeta"


def parser() -> cli.ArgumentParser:
    """The command line's options, each checked by its type (see :mod:`collectives.cli`)."""
    ap = cli.ArgumentParser(prog=PROG,
                            description="Measure alpha, beta, gamma; fit Hockney; predict and simulate collectives.")
    ap.add_argument("--max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest ping-pong size (default 64M)")
    ap.add_argument("--budget", type=cli.positive_seconds, metavar="SECONDS", default=0.25,
                    help="seconds of timing per size (default 0.25)")
    ap.add_argument("--passes", type=cli.positive_int, default=5,
                    help="spread each size's samples over this many passes through the sizes (default 5)")
    ap.add_argument("--max-segments", type=cli.positive_int, default=4, help="most regimes in a piecewise fit")
    ap.add_argument("--no-pairs", dest="pairs", action="store_false", help="skip the pairwise matrix (P > 2)")
    ap.add_argument("--max-pairs", type=cli.positive_int, default=64, help="measure at most this many pairs (sampled)")
    ap.add_argument("--profile", metavar="PATH", help="use this profile instead of measuring")
    ap.add_argument("--json", metavar="PATH", help="write the profile (and predictions, simulation) as JSON")
    ap.add_argument("--save", action="store_true", help=f"write the profile to the default path ({default_path()})")
    ap.add_argument("--output", metavar="PATH.h5", help="write the raw timings to HDF5 (not with --profile)")
    ap.add_argument("--plot", metavar="PATH.png",
                    help="PNG of measured points and fitted lines (or winners with --simulate)")
    ap.add_argument("--predict", action="store_true", help="bench every algorithm and compare with the model")
    ap.add_argument("--collective", default="allreduce", choices=list(FAMILIES))
    ap.add_argument("--min-bytes", type=cli.size_arg, metavar="BYTES", default=4,
                    help="smallest --predict size (default 4)")
    ap.add_argument("--predict-max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest --predict size (default 64M)")
    ap.add_argument("--bench-budget", type=cli.positive_seconds, metavar="SECONDS", default=1.0,
                    help="bench --budget in --predict, seconds (default 1.0)")
    ap.add_argument("--simulate", action="store_true", help="predict at large P from the profile (no measuring needed)")
    ap.add_argument("--sim-ranks", type=cli.int_list, default="2,4,8,16,32,64,128,256,512,1024,2048,4096",
                    help="P values for --simulate (comma-separated ranks)")
    ap.add_argument("--ranks-per-node", type=cli.int_list, default="1,16",
                    help="ranks per node for --simulate (comma-separated)")
    ap.add_argument("--sim-max-bytes", type=cli.size_arg, metavar="BYTES", default=1 << 30,
                    help="largest --simulate size (from 4 bytes; default 1G)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on a terminal's stderr")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and cross-check the options: :class:`collectives.cli.AgreedExit` (2) on every rank if bad."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.predict_max_bytes < args.min_bytes:
        ap.error(f"--predict-max-bytes ({args.predict_max_bytes} bytes) is below --min-bytes ({args.min_bytes} bytes)")
    if args.sim_max_bytes < 4:
        ap.error(f"--sim-max-bytes ({args.sim_max_bytes} bytes) is below the simulation's first size (4 bytes)")
    if args.output and args.profile:
        ap.error("--output writes the raw timings of a measurement: there are none with --profile")
    return args


def profile_for(comm: MPI.Comm, path: str | None, max_bytes: int):
    """The profile at ``path``, or a quick one measured now on ``comm`` up to ``max_bytes`` (collective).

    Quick: three passes, 0.05 s of timing a size, no pairwise matrix; what the
    training benches predict from when no ``--profile`` is given.
    """
    if path:
        return load(path)
    with unchecked():
        return measure(comm, parse_args(["--max-bytes", str(max_bytes), "--no-pairs", "--budget", "0.05",
                                         "--passes", "3", "--quiet"]))[0]


def _check_outputs(comm: MPI.Comm, args) -> None:
    """Every output writable (``--save``'s directory created) and matplotlib there for ``--plot``, before the work."""
    from .. import plots

    cli.check_outputs(comm, {"--json": args.json, "--output": args.output, "--plot": args.plot}, PROG)
    cli.check_outputs(comm, {"--save": default_path() if args.save else None}, PROG, parents=True)
    cli.agree_or_exit(comm, plots.missing() if args.plot and comm.Get_rank() == 0 else None, PROG)


def main(argv=None) -> int:
    """Measure (or load) a profile, then predict and simulate; bad input: an agreed exit 2."""
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    _check_outputs(comm, args)
    result: dict = {}
    raw = measured = None
    if args.profile:
        error = None
        try:
            prof = load(args.profile)
        except (OSError, ValueError) as e:
            error = str(e)
        cli.agree_or_exit(comm, error, PROG)
    with unchecked():  # calls are timed as the bench times them: without the cross-rank argument check
        if not args.profile:
            progress = Progress.for_terminal(f"{PROG} measuring", args.passes, args.quiet, comm)
            prof, raw, extra = measure(comm, args, [alongside_bench(comm, args)] if args.predict else [], progress)
            measured = extra[0] if extra else None
        if rank == 0:
            print(f"# collectives.alphabeta, P={comm.Get_size()}"
                  + (f", profile {args.profile}" if args.profile else ""))
            for k, v in prof.meta.items():
                print(f"# {k}: {v}")
            print(describe(prof), flush=True)
            if raw is not None and "pair_alpha" in raw:
                print(describe_pairs(raw["pair_alpha"], raw["pair_beta"], raw["nodes"]), flush=True)
        result["profile"] = prof.to_dict()
        if args.predict:
            progress = Progress.for_terminal(f"{PROG} --predict bench", bench.steps(bench_args(args)),
                                             args.quiet, comm)
            recs = predict_table(comm, prof, args, measured, progress)
            result["predictions"] = recs
            if rank == 0:
                print(describe_predictions(recs), flush=True)
    if args.simulate and rank == 0:
        sim = simulate(prof, args.collective, args.sim_ranks, args.ranks_per_node, sizes(4, args.sim_max_bytes))
        result["simulation"] = sim
        print(describe_simulation(sim, args.collective), flush=True)
    if rank == 0:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        if args.save:
            prof.save(default_path())
            print(f"# profile saved to {default_path()}")
        if args.output:
            write_hdf5(args.output, prof, raw)
        if args.plot:
            from .. import plots

            if args.simulate:
                plots.winners(result["simulation"], args.collective, args.plot)
            else:
                plots.fits(prof, raw, args.plot)
            print(f"# plot written to {args.plot}")
    return 0
