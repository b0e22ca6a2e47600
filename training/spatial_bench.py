"""``python -m training.spatial_bench``: one 3 × 3 convolution split over the ranks' tiles, as Jin et al. split it.

Jin, Ginsburg and Keutzer split one 3 × 3 convolution (batch 32, 64
channels in and out) over 1, 2 and 4 GPUs at 128², 256² and 512², and
report 1.7–2.2× at two GPUs and 2.1–4.7× at four.  Here the P ranks of
the world hold a ``--grid`` of tiles (default: P × 1, rows cut) and, for
each image size, this reports, as medians over ``--repeats`` after one
warm-up:

- the forward plus backward time of the serial layer on rank 0 alone
  (the others waiting), and of :class:`~training.parallel.spatial.SpatialConv2d`
  on every rank (the slowest rank's, the weight gradients' all-reduce over
  the grid included), and their ratio, the speed-up;
- the halo: bytes this rank sends per step (four exchanges: rows and
  columns, forward and adjoint) and the seconds in it (waiting for the
  neighbour to reach the exchange included: it is where the ranks meet);
- the prediction: the largest tile's share of the one-rank time, plus each
  exchange's largest message at the profile's ``α + β·bytes``, plus the
  all-reduce of the weight gradients from the cost model;
- the roofline's bound: the largest tile's FLOPs at this machine's peak
  FLOP/s (a GEMM, measured first), and the fraction of it the one-rank
  layer reaches.

The profile is ``--profile`` or one measured first by ``collectives.alphabeta``.

Examples::

    mpiexec -n 2 python -m mpi4py -m training.spatial_bench --batch 4 --json spatial.json --plot spatial.png
    mpiexec -n 4 python -m mpi4py -m training.spatial_bench --grid 2x2 --sizes 128,256
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives import cli, plots
from collectives.alphabeta.command import profile_for
from collectives.bench import environment, write_record
from collectives.model.cost_model import best
from collectives.model.profile import load
from collectives.runtime import traffic
from collectives.runtime.communicator import library_comm, unchecked

from .layers import Conv2d, Sequential
from .parallel.halo import axis_geometry
from .parallel.spatial import SpatialConv2d, SpatialGrid, grid_shape
from .roofline import gemm_peak

PROG = "training.spatial_bench"


def parser() -> cli.ArgumentParser:
    """The command line's options."""
    ap = cli.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=cli.int_list, default=[128, 256, 512], metavar="N,N,...",
                    help="image sides (default 128,256,512)")
    ap.add_argument("--batch", type=cli.positive_int, default=32, help="images per step (default 32, as Jin et al.)")
    ap.add_argument("--channels", type=cli.positive_int, default=64, help="channels in and out (default 64)")
    ap.add_argument("--grid", default=None, metavar="RxC", help="tiles: rows x columns (default P x 1)")
    ap.add_argument("--repeats", type=cli.positive_int, default=3, help="timed steps per case (default 3)")
    ap.add_argument("--profile", metavar="PATH", help="predict from this profile (default: measure one first)")
    ap.add_argument("--json", metavar="PATH", help="write the records, the profile and the environment")
    ap.add_argument("--plot", metavar="PATH.png", help="speed-up against image size, measured and predicted")
    return ap


def _grid(text: str | None, p: int) -> tuple[int, int]:
    if text is None:
        return p, 1
    rows, cols = grid_shape(text, "--grid")
    if rows * cols != p:
        raise ValueError(f"--grid {text}: {rows} x {cols} tiles need {rows * cols} ranks, not {p}")
    return rows, cols


def _step(layer, x, dy) -> None:
    layer.forward(x)
    layer.backward(dy)


def _median_time(comm, run, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's seconds for ``run()``."""
    times = []
    for _ in range(repeats):
        comm.Barrier()
        t = time.perf_counter()
        run()
        times.append(comm.allreduce(time.perf_counter() - t, op=MPI.MAX))
    return float(np.median(times))


def measure_size(args, comm, grid: SpatialGrid, n: int, link, profile, peak: float) -> dict:
    """One image size: the one-rank and tiled layer's times, the halo, the prediction and the roofline bound."""
    b, c, p = args.batch, args.channels, comm.Get_size()
    rng = np.random.default_rng(0)
    flops = 3 * 2 * b * c * c * 9  # per output pixel: forward, and backward's input and weight gradients
    one = None
    if comm.Get_rank() == 0:
        serial = Conv2d(c, c, 3)
        Sequential([serial], seed=1)
        x, dy = rng.standard_normal((b, c, n, n), np.float32), rng.standard_normal((b, c, n, n), np.float32)
        _step(serial, x, dy)  # warm-up
        one = _median_time(MPI.COMM_SELF, lambda: _step(serial, x, dy), args.repeats)
        del x, dy
    one = comm.bcast(one)
    layer = SpatialConv2d(c, c, 3, (n, n), grid)
    Sequential([layer], seed=1)
    rows, cols = grid.tile(n, n)
    tile = (b, c, rows.stop - rows.start, cols.stop - cols.start)
    x, dy = rng.standard_normal(tile, np.float32), rng.standard_normal(tile, np.float32)
    grads = layer.grads

    def spatial_step():
        _step(layer, x, dy)
        for g in grads:
            collectives.allreduce(g, g, comm=comm)

    with traffic.count() as t:  # one step's halo, which is also the warm-up
        _step(layer, x, dy)
    halo_bytes = comm.allreduce(t.bytes_sent, op=MPI.MAX)
    layer.halo.seconds = 0.0
    tiled = _median_time(comm, spatial_step, args.repeats)
    halo_s = comm.allreduce(layer.halo.seconds / args.repeats, op=MPI.MAX)
    # the prediction, from the largest tile and each exchange's largest message
    geo = [axis_geometry(n, grid.rows, 3, 1, 1), axis_geometry(n, grid.cols, 3, 1, 1)]
    tile_px = max((a.owned[1] - a.owned[0]) * (e.owned[1] - e.owned[0]) for a in geo[0] for e in geo[1])
    row_msg = 4 * b * c * max(e.owned[1] - e.owned[0] for e in geo[1]) if grid.rows > 1 else 0  # one row
    col_msg = 4 * b * c * max(a.inside()[1] - a.inside()[0] for a in geo[0]) if grid.cols > 1 else 0  # one column
    halo_pred = 2 * sum(link(m) for m in (row_msg, col_msg) if m)
    allreduce_pred = best("allreduce", 4 * (c * c * 9 + c), p, profile)[1] if p > 1 else 0.0
    compute_pred = one * tile_px / (n * n)
    return {"size": n, "ranks": p, "grid": [grid.rows, grid.cols], "batch": b, "channels": c,
            "one_rank_s": one, "spatial_s": tiled, "speedup": one / tiled,
            "predicted_s": compute_pred + halo_pred + allreduce_pred, "predicted_speedup":
                one / (compute_pred + halo_pred + allreduce_pred),
            "halo_bytes_per_rank": int(halo_bytes), "halo_s": halo_s, "halo_predicted_s": halo_pred,
            "allreduce_predicted_s": allreduce_pred,
            "roofline_s": flops * tile_px / peak, "one_rank_roof_fraction": flops * n * n / peak / one}


def table(records: list[dict]) -> str:
    """One line per size: times, speed-up measured and predicted, halo, roofline."""
    lines = [f"{'size':>6} {'1 rank s':>9} {'P ranks s':>10} {'speedup':>8} {'pred':>6} {'halo MB':>8} "
             f"{'halo ms':>8} {'pred ms':>8} {'roof s':>8} {'1-rank roof':>11}"]  # halo ms: waits included
    for r in records:
        lines.append(f"{r['size']:>6} {r['one_rank_s']:>9.3f} {r['spatial_s']:>10.3f} {r['speedup']:>8.2f} "
                     f"{r['predicted_speedup']:>6.2f} {r['halo_bytes_per_rank'] / 1e6:>8.2f} "
                     f"{r['halo_s'] * 1e3:>8.2f} {r['halo_predicted_s'] * 1e3:>8.2f} {r['roofline_s']:>8.3f} "
                     f"{r['one_rank_roof_fraction']:>11.1%}")
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
    """Speed-up over one rank against the image side, measured and predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sizes = [r["size"] for r in records]
    ax.plot(sizes, [r["speedup"] for r in records], "o-", label="measured")
    ax.plot(sizes, [r["predicted_speedup"] for r in records], "s--", label="predicted (profile + one-rank rate)")
    ax.axhline(records[0]["ranks"], color="gray", lw=0.8, label=f"P = {records[0]['ranks']}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.25 * records[0]["ranks"])
    ax.set_xlabel("image side (pixels)")
    ax.set_ylabel("speed-up over one rank")
    ax.set_title(f"3x3 conv, batch {records[0]['batch']}, {records[0]['channels']} channels, grid "
                 f"{records[0]['grid'][0]}x{records[0]['grid'][1]}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    """Measure each size, predict it, print the table; exit 2 on every rank on bad input."""
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    error, shape = None, None
    try:
        shape = _grid(args.grid, comm.Get_size())
        for n in args.sizes:
            axis_geometry(n, shape[0], 3, 1, 1), axis_geometry(n, shape[1], 3, 1, 1)
        if args.profile:
            load(args.profile)
    except (OSError, ValueError) as e:
        error = str(e)
    cli.agree_or_exit(comm, error, PROG)
    cli.check_outputs(comm, {"--json": args.json, "--plot": args.plot}, PROG)
    cli.agree_or_exit(comm, plots.missing() if args.plot and comm.Get_rank() == 0 else None, PROG)
    library_comm(comm)
    largest = 4 * args.batch * args.channels * (max(args.sizes) + 2)
    with unchecked():
        prof = profile_for(comm, args.profile, largest)
        peak = comm.bcast(gemm_peak(1024, 0.5)["GFLOPs"] * 1e9 if comm.Get_rank() == 0 else None)
        grid = SpatialGrid(comm, *shape)
        link = prof.link(inter=False, exchange=True)  # each exchange sends and receives at once
        records = [measure_size(args, comm, grid, n, link, prof, peak) for n in args.sizes]
        grid.free()
    env = environment(comm)
    if comm.Get_rank() == 0:
        print(f"# {PROG}: P={comm.Get_size()}, grid {shape[0]}x{shape[1]}, one 3x3 conv, batch {args.batch}, "
              f"{args.channels} channels, float32, peak {peak / 1e9:.1f} GFLOP/s (GEMM), profile "
              f"{args.profile or 'measured first'}, median of {args.repeats}")
        print(table(records), flush=True)
        if args.json:
            write_record(args.json, env, records, args, profile=prof.to_dict(), peak_flops=peak)
        if args.plot:
            plot(records, args.plot)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
