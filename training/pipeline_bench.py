"""``python -m training.pipeline_bench``: a pipeline's bubble and step time, measured beside their predictions.

Every rank is one stage (``S = P``) of an MLP of 64 inputs, ``S × k + 1``
hidden layers of width ``--width`` and 10 classes, so each stage holds
``k = --layers-per-stage`` layers of ``width²`` weights and the stages are
balanced.  For every schedule and micro-batch count ``M`` it runs
``--steps`` traced steps (after ``--warmup`` untimed ones) of the global
batch and reports, as medians over the steps:

- the step time measured (from a barrier to the last stage's last span)
  and predicted: each stage's lowered schedule simulated
  (:func:`training.parallel.pipeline_schedule.simulate`) with that stage's
  measured forward and backward time per micro-batch and each message's
  time from the profile's point-to-point link, ``α + β·bytes``;
- the bubble measured (each stage's time outside forward and backward
  over the step, averaged over the stages), simulated, and the textbook's
  ``(S-1)/(M+S-1)``;
- each stage's peak stashed activation bytes, against ``M`` (GPipe) or
  ``min(S-r, M)`` (1F1B) micro-batches' worth.

The profile is ``--profile`` or, by default, one measured by
``collectives.alphabeta`` before the timings, up to the largest message.

Examples::

    mpiexec -n 2 python -m mpi4py -m training.pipeline_bench --json pipe.json --trace-dir traces/
    mpiexec -n 2 python -m mpi4py -m training.pipeline_bench --micro-batches 4 --width 256 --batch 64 --steps 2
"""

from __future__ import annotations

import os
import time

import numpy as np
from mpi4py import MPI

from collectives import cli
from collectives.algorithms.schedule import partition
from collectives.alphabeta.command import profile_for
from collectives.bench import environment, write_record
from collectives.model.profile import load
from collectives.runtime.communicator import library_comm

from .parallel import trace
from .parallel.grid import Layout, ProcessGrid
from .parallel.pipeline import Pipeline, stage_bounds, stage_model
from .parallel.pipeline_schedule import BACKWARD, FORWARD, SCHEDULES, bubble_fraction, lower, simulate

PROG = "training.pipeline_bench"


def parser() -> cli.ArgumentParser:
    """The command line's options."""
    ap = cli.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--micro-batches", type=cli.int_list, default=[4, 8, 16], metavar="M,M,...",
                    help="micro-batch counts (default 4,8,16)")
    ap.add_argument("--schedule", default="gpipe,1f1b", help="schedules, comma-separated (default gpipe,1f1b)")
    ap.add_argument("--width", type=cli.positive_int, default=1024, help="hidden width (default 1024)")
    ap.add_argument("--layers-per-stage", type=cli.positive_int, default=2, metavar="K",
                    help="width x width layers per stage (default 2)")
    ap.add_argument("--batch", type=cli.positive_int, default=1024, help="global batch (default 1024)")
    ap.add_argument("--steps", type=cli.positive_int, default=3, help="timed steps per case (default 3)")
    ap.add_argument("--warmup", type=cli.nonnegative_int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--profile", metavar="PATH", help="predict from this profile (default: measure one first)")
    ap.add_argument("--json", metavar="PATH", help="write the records, the profile and the environment")
    ap.add_argument("--trace-dir", metavar="DIR", help="write each case's last step as DIR/SCHEDULE_M.json (+ .png)")
    return ap


def sizes(args, stages: int) -> list[int]:
    """The bench's model: 64 inputs, ``S·k + 1`` hidden layers of ``--width``, 10 classes."""
    return [64] + [args.width] * (stages * args.layers_per_stage + 1) + [10]


def run_case(args, comm, schedule: str, m: int, data) -> tuple[list, list]:
    """Warm-up and traced steps of one case.

    Returns, on rank 0, every stage's ``(peak stash bytes, stash bytes of each micro-batch)`` in the last
    step, and every timed step's spans of every rank, on a common time base.
    """
    grid = ProcessGrid(comm, Layout(comm.Get_size(), pipeline=comm.Get_size()))
    widths, s, r = sizes(args, grid.layout.pipeline), grid.layout.pipeline, grid.pipeline.Get_rank()
    bounds = stage_bounds(widths, s)
    pipe = Pipeline(stage_model(widths, "relu", grid.tensor, bounds, r), grid.pipeline, schedule, m,
                    (widths[bounds[r]], widths[bounds[r + 1]]))
    x, y = data
    steps = []
    for step in range(args.warmup + args.steps):
        comm.Barrier()
        reference, pipe.trace = time.perf_counter(), []
        pipe.loss_and_grad(x, y, 1.0 / len(y))
        if step >= args.warmup:
            steps.append(trace.gather(comm, pipe.trace, reference))
    stash = comm.gather((pipe.peak_stash_bytes, pipe.micro_stash_bytes), root=0)
    grid.free()
    return stash, steps


def summarise(schedule: str, m: int, s: int, steps: list, stash, link, message_bytes: list[int]) -> dict:
    """The case's record: measured and predicted step time and bubble, and the peak stash, from rank 0's data.

    ``message_bytes[m]``: the size of micro-batch ``m``'s activation (and of its gradient).
    """
    step_s, bubbles, busiest, predicted, simulated, imbalance = [], [], [], [], [], []
    for spans in steps:
        measured = trace.bubble(spans)
        step_s.append(measured["step_s"])
        bubbles.append(measured["mean"])
        busiest.append(measured["busiest"])
        passes = [{k: float(np.median([e - b for kind, _, b, e in rank if kind == k])) for k in (FORWARD, BACKWARD)}
                  for rank in spans]
        sim = simulate(lower(SCHEDULES[schedule](s, m)),
                       lambda r, op: passes[r][op.kind] if op.kind in passes[r] else link(message_bytes[op.micro]))
        predicted.append(sim.makespan)
        simulated.append(float(np.mean([sim.idle(r) / sim.makespan for r in range(s)])))
        imbalance.append(max(sum(p.values()) for p in passes) / min(sum(p.values()) for p in passes) - 1)
    # the first micro-batches are the largest (partition), and the peak holds the first M or min(S-r, M)
    want = [sum(micro[: m if schedule == "gpipe" else min(s - r, m)]) for r, (_, micro) in enumerate(stash)]
    return {"schedule": schedule, "stages": s, "micro_batches": m, "step_s": float(np.median(step_s)),
            "predicted_step_s": float(np.median(predicted)), "bubble": float(np.median(bubbles)),
            "bubble_busiest": float(np.median(busiest)), "stage_imbalance": float(np.median(imbalance)),
            "bubble_simulated": float(np.median(simulated)), "bubble_formula": bubble_fraction(s, m),
            "peak_stash_bytes": [peak for peak, _ in stash], "expected_peak_stash_bytes": want,
            "message_bytes": max(message_bytes)}


def table(records: list[dict]) -> str:
    """One line per case: step time measured / predicted, bubble measured / simulated / formula, stash check."""
    lines = [f"{'schedule':>8} {'M':>4} {'step_ms':>9} {'pred_ms':>9} {'ratio':>6} {'bubble':>7} {'sim':>7} "
             f"{'busiest':>8} {'(S-1)/(M+S-1)':>14} {'imbal':>6} {'stash ok':>9}"]
    for r in records:
        lines.append(f"{r['schedule']:>8} {r['micro_batches']:>4} {r['step_s'] * 1e3:>9.2f} "
                     f"{r['predicted_step_s'] * 1e3:>9.2f} {r['step_s'] / r['predicted_step_s']:>6.2f} "
                     f"{r['bubble']:>7.1%} {r['bubble_simulated']:>7.1%} {r['bubble_busiest']:>8.1%} "
                     f"{r['bubble_formula']:>14.1%} {r['stage_imbalance']:>6.1%} "
                     f"{str(r['peak_stash_bytes'] == r['expected_peak_stash_bytes']):>9}")
    return "\n".join(lines)


def _check(args, comm) -> str | None:
    s = comm.Get_size()
    if not set(args.schedule.split(",")) <= set(SCHEDULES):
        return f"--schedule {args.schedule!r}: use gpipe, 1f1b or both, comma-separated"
    if args.batch < max(args.micro_batches):
        return f"--batch {args.batch} is smaller than {max(args.micro_batches)} micro-batches"
    if s < 2:
        return "a pipeline needs at least 2 ranks (one stage each)"
    if args.profile:
        try:
            load(args.profile)
        except (OSError, ValueError) as e:
            return str(e)
    return None


def main(argv=None) -> int:
    """Measure each case, predict it, print the table; exit 2 on every rank on bad input."""
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    cli.agree_or_exit(comm, _check(args, comm), PROG)
    cli.check_outputs(comm, {"--json": args.json}, PROG)
    if args.trace_dir and comm.Get_rank() == 0:
        os.makedirs(args.trace_dir, exist_ok=True)
    library_comm(comm)
    s = comm.Get_size()
    act_bytes = 4 * args.width * -(-args.batch // min(args.micro_batches))  # the largest message, float32
    prof = profile_for(comm, args.profile, act_bytes)
    link = prof.link(inter=False)
    g = np.random.default_rng(0)
    data = (g.standard_normal((args.batch, 64)).astype(np.float32), g.integers(0, 10, args.batch))
    records = []
    for schedule in args.schedule.split(","):
        for m in args.micro_batches:
            stash, steps = run_case(args, comm, schedule, m, data)
            if comm.Get_rank() == 0:
                cut = partition(args.batch, m)
                records.append(summarise(schedule, m, s, steps, stash, link,
                                         [4 * args.width * (hi - lo) for lo, hi in zip(cut, cut[1:])]))
                if args.trace_dir:
                    trace.write(os.path.join(args.trace_dir, f"{schedule}_{m}.json"), steps[-1],
                                meta={"title": f"{schedule}, S={s}, M={m}, width {args.width}, batch {args.batch}"})
    env = environment(comm)
    if comm.Get_rank() == 0:
        print(f"# {PROG}: S=P={s}, MLP {sizes(args, s)} relu float32, batch {args.batch}, "
              f"profile {args.profile or 'measured first'}, median of {args.steps} steps")
        print(table(records), flush=True)
        if args.json:
            write_record(args.json, env, records, args, profile=prof.to_dict())
    return 0


if __name__ == "__main__":
    cli.run_main(main)
