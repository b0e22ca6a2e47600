"""``python -m training.layout_bench``: data against model (tensor) parallelism, communication per step.

For an MLP of ``--layers`` fully connected layers of width ``d`` and a
global batch ``B``, every (d, B) of ``--widths`` × ``--batches`` is trained
in two layouts of the P ranks, all data parallel (``D = P``) and all model
parallel (``T = P``, ``--scheme``), and the collectives one step issues in
each (:func:`training.parallel.layout_cost.step_collectives`) are timed
as ``collectives.bench`` times a call (warm-up, a barrier before every
call, the slowest rank's time, the median of repeats; the method the cost
model is checked against) beside their prediction from the measured profile
(``--profile``; by default one measured in the same passes as the
timings, as ``alphabeta --predict`` measures its own).  The table says which layout
communicates less where; the course's rule of thumb is that model
parallelism wins for wide layers (``d ≫ B``).

Examples::

    mpiexec -n 2 python -m mpi4py -m training.layout_bench --json layout.json --plot layout.png
    mpiexec -n 2 python -m mpi4py -m training.layout_bench --widths 64,1024 --batches 8,512 --budget 0.05
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

import collectives
from collectives import bench, cli, plots
from collectives.bench import environment, format_size, write_record
from collectives.alphabeta import command
from collectives.alphabeta.measure import measure as alphabeta_measure
from collectives.alphabeta.sampling import TIMING
from collectives.model.profile import Profile, load
from collectives.passes import interleave
from collectives.runtime.communicator import unchecked

from .parallel.grid import Layout, ProcessGrid
from .parallel.layout_cost import predict_step, step_collectives

PROG = "python -m training.layout_bench"


def parser() -> cli.ArgumentParser:
    """The command line's options."""
    ap = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=cli.size_list, default=[64, 256, 1024, 4096, 8192],
                    help="layer widths d, comma-separated (default 64,256,1K,4K,8K)")
    ap.add_argument("--batches", type=cli.size_list, default=[8, 64, 256, 1024],
                    help="global batches B, comma-separated (default 8,64,256,1K)")
    ap.add_argument("--layers", type=cli.positive_int, default=3, help="fully connected layers (default 3)")
    ap.add_argument("--scheme", choices=["course", "megatron"], default="course", help="the model-parallel scheme")
    ap.add_argument("--algorithm", default="ring", help="the collectives' algorithm (default ring)")
    ap.add_argument("--profile", metavar="PATH",
                    help="predict from this profile (default: measure one, interleaved with the timings)")
    ap.add_argument("--max-bytes", type=cli.size_arg, metavar="BYTES", default=64 << 20,
                    help="largest size of the profile measured alongside (default 64M)")
    ap.add_argument("--budget", type=cli.positive_seconds, metavar="SECONDS", default=0.2,
                    help="timing per collective, as the bench's --budget (default 0.2)")
    ap.add_argument("--max-segments", type=cli.positive_int, default=4,
                    help="most regimes in each of the profile's piecewise fits, as alphabeta's (default 4)")
    ap.add_argument("--profile-budget", type=cli.positive_seconds, metavar="SECONDS", default=0.25,
                    help="the profile's timing per size, as alphabeta's --budget (default 0.25)")
    ap.add_argument("--passes", type=cli.positive_int, default=5,
                    help="passes the timings (and the profile) are spread over (default 5)")
    ap.add_argument("--json", metavar="PATH", help="write the table as JSON")
    ap.add_argument("--plot", metavar="PATH.png", help="PNG of the winner at each (d, B), measured and predicted")
    return ap


def _sweep(c, algorithm: str, comm, args):
    """:mod:`collectives.bench`'s sweep of the one size of collective ``c``, as a pass generator."""
    if c.family == "allgather" and algorithm not in collectives.ALGORITHMS["allgather"]:
        algorithm = "auto"
    return bench.sweep(bench.parse_args(["--collective", c.family, "--algorithms", algorithm, "--min-bytes",
                                         str(c.nbytes), "--max-bytes", str(c.nbytes), "--budget", str(args.budget),
                                         "--passes", str(args.passes), "--timing", TIMING, "--quiet"]), comm)


def measure(args, comm) -> tuple[list[dict], Profile]:
    """One record per (d, B, layout), measured and predicted seconds per step; and the profile predicted from.

    Every distinct collective of every step is timed as :mod:`collectives.bench`
    times a call, all of them interleaved pass by pass
    (:mod:`collectives.passes`); without ``--profile`` the profile is measured
    in the same passes (as ``alphabeta --predict`` does), so that what is
    predicted from and what is checked sample the same spells of a drifting
    machine.
    """
    p = comm.Get_size()
    grids = {name: ProcessGrid(comm, Layout(p, tensor=t)) for name, t in (("data", 1), ("model", p))}
    steps, gens = {}, {}
    for d in args.widths:
        for b in args.batches:
            for name, grid in grids.items():
                calls = step_collectives([d] * (args.layers + 1), b, grid.data.Get_size(), grid.tensor.Get_size(),
                                         args.scheme)
                steps[(d, b, name)] = calls
                for c in calls:  # the same collective (a data layout's all-reduce at every B) is timed once
                    if c not in gens:
                        gens[c] = _sweep(c, args.algorithm, grid.comm(c.axis), args)
    if args.profile:
        prof, done = load(args.profile), interleave(list(gens.values()))
    else:
        ab = command.parse_args(["--max-bytes", str(args.max_bytes), "--passes", str(args.passes), "--no-pairs",
                                 "--budget", str(args.profile_budget), "--max-segments", str(args.max_segments)])
        prof, _, done = alphabeta_measure(comm, ab, alongside=list(gens.values()))
    timed = {c: next(r["time_us"] for r in records if r["algorithm"] != "mpi") * 1e-6
             for c, records in zip(gens, done)}
    out = []
    for (d, b, name), calls in steps.items():
        out.append({"width": d, "batch": b, "layout": name, "measured_s": sum(timed[c] for c in calls),
                    "predicted_s": sum(predict_step(calls, prof, args.algorithm).values()),
                    "largest_message_bytes": max((c.nbytes for c in calls), default=0), "collectives": len(calls)})
    for grid in grids.values():
        grid.free()
    return out, prof


def table(records: list[dict]) -> str:
    """Per (d, B): each layout's measured and predicted microseconds, and the winner by each."""
    lines = [f"{'d':>6} {'B':>6} {'data_us':>10} {'pred':>10} {'model_us':>10} {'pred':>10} "
             f"{'winner':>8} {'predicted':>10}"]
    for d, b in sorted({(r["width"], r["batch"]) for r in records}):
        row = {r["layout"]: r for r in records if r["width"] == d and r["batch"] == b}
        dm, mm = row["data"], row["model"]
        win = "data" if dm["measured_s"] <= mm["measured_s"] else "model"
        guess = "data" if dm["predicted_s"] <= mm["predicted_s"] else "model"
        lines.append(f"{d:>6} {b:>6} {dm['measured_s'] * 1e6:>10.1f} {dm['predicted_s'] * 1e6:>10.1f} "
                     f"{mm['measured_s'] * 1e6:>10.1f} {mm['predicted_s'] * 1e6:>10.1f} {win:>8} {guess:>10}")
    big = [r for r in records if r["largest_message_bytes"] >= 64 << 10 and r["measured_s"] > 0]
    if big:
        worst = max(big, key=lambda r: abs(r["predicted_s"] / r["measured_s"] - 1))
        lines.append(f"# largest |predicted/measured - 1| with messages >= 64 KiB: "
                     f"{worst['predicted_s'] / worst['measured_s'] - 1:+.1%} ({worst['layout']}, d={worst['width']}, "
                     f"B={worst['batch']})")
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
    """Two panels, measured and predicted: which layout communicates less at each (d, B)."""
    plt = plots.pyplot()
    ds = sorted({r["width"] for r in records})
    bs = sorted({r["batch"] for r in records})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key in zip(axes, ("measured_s", "predicted_s")):
        grid = np.zeros((len(bs), len(ds)))
        for r in records:
            if r["layout"] == "model":
                data = next(q for q in records if q["layout"] == "data" and q["width"] == r["width"]
                            and q["batch"] == r["batch"])
                grid[bs.index(r["batch"]), ds.index(r["width"])] = np.log2(data[key] / max(r[key], 1e-12))
        limit = max(np.abs(grid).max(), 1e-9)
        im = ax.imshow(grid, origin="lower", cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(ds)), [format_size(d) for d in ds])
        ax.set_yticks(range(len(bs)), [str(b) for b in bs])
        ax.set_xlabel("layer width d")
        ax.set_title(f"{key.split('_')[0]}: log2(data / model time)")
    axes[0].set_ylabel("global batch B")
    fig.colorbar(im, ax=axes, label="> 0: model parallelism communicates less")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    """Measure, predict, print; exits 2 on every rank on bad input."""
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    error = None
    if args.algorithm not in collectives.ALGORITHMS["allreduce"] or args.algorithm in ("mpi", "auto"):
        error = f"--algorithm {args.algorithm!r}: name a hand-written all-reduce the model predicts"
    elif args.profile:
        try:
            load(args.profile)
        except (OSError, ValueError) as e:
            error = str(e)
    cli.agree_or_exit(comm, error, PROG)
    cli.check_outputs(comm, {"--json": args.json, "--plot": args.plot}, PROG)
    cli.agree_or_exit(comm, plots.missing() if args.plot and comm.Get_rank() == 0 else None, PROG)
    with unchecked():
        records, prof = measure(args, comm)
    env = environment(comm)
    if comm.Get_rank() == 0:
        print(f"# {PROG}: P={comm.Get_size()}, {args.layers} layers, scheme {args.scheme}, "
              f"algorithm {args.algorithm}, float32; data: D=P, model: T=P; profile "
              f"{args.profile or 'measured alongside'}")
        print(table(records), flush=True)
        if args.json:
            write_record(args.json, env, records, args, profile=prof.to_dict())
        if args.plot:
            plot(records, args.plot)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
