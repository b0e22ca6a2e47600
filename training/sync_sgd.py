"""Synchronous data-parallel SGD whose gradient all-reduce is any of our algorithms.

Every data-parallel rank holds the whole model (or its tensor and pipeline
pieces of it, below).  Each step, each rank computes the gradient of its
part of the global batch, the gradients are summed by
``collectives.allreduce`` in buckets, and every rank applies the same SGD
update, so the replicas stay bitwise identical.

    mpiexec -n 16 python -m mpi4py -m training.sync_sgd                 # digits MLP, about 20 epochs
    mpiexec -n 4 python -m mpi4py -m training.sync_sgd --allreduce ring --bucket-mb 0.01 --overlap --json run.json
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data synthetic --samples 60000 --features 256 \\
        --hidden 512,512 --epochs 2 --metrics steps.h5
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data train.h5 --checkpoint ck.h5 --checkpoint-every 50
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data train.h5 --checkpoint ck.h5 --resume
    mpiexec -n 4 python -m mpi4py -m training.sync_sgd --tensor-parallel 2 --epochs 4
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --pipeline-stages 2 --micro-batches 4 --trace step.json
    mpiexec -n 4 python -m mpi4py -m training.sync_sgd --model cnn --data shapes --spatial 2x2

With ``--tensor-parallel T`` each replica's layers are cut over T ranks;
with ``--pipeline-stages S`` they are placed on S consecutive stages and
each step runs ``--micro-batches M`` through the ``--schedule`` (GPipe or
1F1B); with ``--model cnn --spatial RxC`` every image is cut into tiles
over R*C ranks.  The gradients are all-reduced over the data-parallel ranks
that remain.

The time split printed per epoch: *compute* (forward, backward, update),
*communication* (the all-reduce calls) and *waiting* (the part of the
all-reduce time a rank spent waiting for the slowest rank to finish its
compute: per step, the slowest rank's compute time minus this rank's).
With ``--overlap`` each bucket's all-reduce starts as soon as backward has
filled it and is progressed between layers; *hidden* is the fraction of
the communication span (first start to last completion) that passed
before backward ended.

Exit status, the same on every rank: 0 done; 2 a bad option, data file,
output path or checkpoint, found before the first step; 3 the parameters
(checked every step) or an epoch's loss went NaN or inf, and the last
checkpoint holds the last finite state; 1 a checkpoint could not be written.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives import cli
from collectives.algorithms.schedule import partition
from collectives.runtime.communicator import library_comm
from numa import threads

from . import checkpoint, divergence, options, resume
from .gradient_buckets import Buckets, Overlap
from .layers import Sequential
from .optim import SGD, learning_rate
from .options import PROG
from .parallel import trace
from .parallel.build import describe, model_on_grid
from .parallel.pipeline import Pipeline
from .parallel.spatial import tiled_range
from .parallel.tensor import replicated
from .parallel.whole import from_whole, to_whole, whole_size
from .sampler import GlobalBatchSampler

__all__ = ["main", "run", "parser"]


def parser() -> cli.ArgumentParser:
    """The command line's parser (its ``--help`` is this module's docstring); see :mod:`training.options`."""
    return options.parser(__doc__)


def _accuracy(model: Sequential, source, comm) -> float:
    bounds = partition(source.n_test, comm.Get_size())
    rank = comm.Get_rank()
    x, y = source.test_rows(np.arange(bounds[rank], bounds[rank + 1]))
    correct = int(np.sum(model.predict(x) == y)) if len(y) else 0
    return comm.allreduce(correct) / max(source.n_test, 1)


def _model_seconds(model) -> np.ndarray:
    """Seconds so far in the tensor-parallel layers' collectives, in the pipeline's messages and in the halos."""
    return np.array([sum(getattr(layer, "comm_seconds", 0.0) for layer in model.layers),
                     getattr(model, "pipe_seconds", 0.0),
                     sum(layer.halo.seconds for layer in model.layers if hasattr(layer, "halo"))])


def _check_replicas(model: Sequential, grid, world, step: int) -> None:
    """Exit 1 on every rank unless the data axis's replicas agree, and the tensor axis's replicated parameters."""
    rep = replicated(model)
    axes = [name for name, comm, a in (("data", grid.data, model.params),
                                       ("tensor", grid.tensor, np.concatenate([r.ravel() for r in rep] or [[]])),
                                       ("spatial", grid.spatial, model.params))
            if len(set(comm.allgather(_checksum(a)))) != 1]
    cli.agree_or_exit(world, f"step {step}: parameters differ across the ranks of the {' and '.join(axes)} axis"
                      if axes else None, PROG, code=1)


def _checksum(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(a.tobytes()).hexdigest()


def _time_split(comm, compute: np.ndarray, comm_time: np.ndarray) -> tuple[float, float, float]:
    """(compute, communication, waiting) seconds summed over steps, averaged over ranks."""
    everyone = np.array(comm.allgather(compute))  # ranks x steps
    wait = np.minimum(everyone.max(axis=0) - compute, comm_time)
    return (float(np.mean(comm.allgather(compute.sum()))),
            float(np.mean(comm.allgather((comm_time - wait).sum()))),
            float(np.mean(comm.allgather(wait.sum()))))


def main(argv=None) -> int:
    """The command line: :func:`run` on ``MPI.COMM_WORLD``."""
    run(argv)
    return 0


def run(argv=None, comm=None) -> tuple[dict, Sequential]:
    """Train as the command line says, on ``comm`` (default COMM_WORLD); return the summary and the model.

    Every stop is agreed by all ranks, after rank 0 printed why: bad options,
    data, outputs or checkpoints raise ``SystemExit(2)`` before training; a
    loss or parameters gone NaN or inf, ``SystemExit(3)``
    (:data:`training.divergence.DIVERGED`); a checkpoint that cannot be
    written mid-run, ``SystemExit(1)``.  (Each is a :class:`collectives.cli.AgreedExit`.)

    The ranks form a data × tensor grid (:mod:`training.parallel.grid`);
    with ``--tensor-parallel T`` the model's layers are cut over the tensor
    axis (:mod:`training.parallel.tensor`) and this rank's model holds its
    pieces.  The grid is freed at the end: the returned model is for its
    parameters, its tensor-parallel layers no longer run.
    """
    args = parser().parse_args(argv)
    world = MPI.COMM_WORLD if comm is None else comm
    p, rank = world.Get_size(), world.Get_rank()
    error, source, sizes = None, None, None
    try:
        if args.threads is not None:
            threads.configure(args.threads)
        source, sizes = options.validate(args, world)
    except (ValueError, OSError) as e:
        error = str(e)
    cli.agree_or_exit(world, error, PROG)
    _prepare_outputs(args, world)
    if args.bind:
        import numa

        error = None
        try:
            numa.bind(args.bind, world, args.threads)
        except (ValueError, OSError) as e:  # a policy that does not fit; sched_setaffinity or libnuma refusing
            error = str(e)
        cli.agree_or_exit(world, error, PROG)
    library_comm(world)  # threads per rank, before the first kernel
    grid, model, tiles = model_on_grid(args, sizes, world, getattr(source, "image", None))
    data = grid.data  # the gradients' all-reduce; the tensor and pipeline axes' ranks hold one replica's pieces
    piped = isinstance(model, Pipeline)
    if tiles is not None:  # each rank reads and trains on its tile of every image
        source = source.tiled(*tiles.tile(*source.image))
        lo, hi = tiled_range(model)
        shares = model.grads[lo:hi]  # the convolutions' per-tile shares, summed over the spatial axis
    opt = SGD(model.params, args.momentum, args.weight_decay, args.nesterov)
    sampler = GlobalBatchSampler(source.n_train, args.batch, data.Get_size(), data.Get_rank(), args.seed)
    buckets = Buckets(model.params.size, model.params.itemsize, args.bucket_mb * (1 << 20))
    bucket_views = [model.grads[lo:hi] for lo, hi in buckets.ranges]
    steps = sampler.steps_per_epoch
    warmup = int(round(args.warmup_epochs * steps))
    config = resume.describe(args, source, sizes, p)
    start_epoch, start_step = _resume(args, world, config, model, opt, steps, grid) if args.resume else (0, 0)
    if rank == 0 and not args.quiet:
        print(f"# sync_sgd: P={p}, data {source.name} ({source.n_train} train, {source.n_test} test), "
              + (f"MLP {sizes} {args.act}" if args.model == "mlp" else
                 f"CNN {sizes[0]} -> conv {sizes[1:-1]} -> {sizes[-1]} on {source.image[0]}x{source.image[1]}")
              + f", global batch {args.batch} ({sampler.per_rank}/rank), "
              + describe(args, data) +
              f"allreduce {args.allreduce}, {len(buckets.ranges)} bucket(s), threads {threads.current()}",
              flush=True)
    rows: list[dict] = []
    epochs_out = []
    global_step = start_epoch * steps + start_step
    saved_step = global_step if args.resume else None  # the step the checkpoint file holds
    scale = 1.0 / args.batch
    run_start = time.perf_counter()
    totals = np.zeros(3)
    trained = 0
    hidden_sum = 0.0
    axes_total = np.zeros(3)  # tensor, pipeline, spatial
    last_step = args.epochs * steps
    reference = 0.0
    for epoch in range(start_epoch, args.epochs):
        first = start_step if epoch == start_epoch else 0
        idx = sampler.epoch(epoch)[first:]
        xs, ys = source.train_rows(idx.ravel())  # this rank's rows only, one read per epoch
        b = sampler.per_rank
        n_steps = len(idx)
        compute, comm_t, axes_t = np.zeros(n_steps), np.zeros(n_steps), np.zeros((n_steps, 3))
        loss_sum = 0.0
        span_sum = exposed_sum = 0.0
        t_epoch = time.perf_counter()
        for s in range(n_steps):
            x, y = xs[s * b : (s + 1) * b], ys[s * b : (s + 1) * b]
            if args.trace and global_step + 1 == last_step:  # the last step, on a common time base
                world.Barrier()
                reference, model.trace = time.perf_counter(), []
            axes_before = _model_seconds(model)
            t0 = time.perf_counter()
            if args.overlap:
                overlap = Overlap(model, buckets.ranges, bucket_views, args.allreduce, data)
                loss = model.loss_and_grad(x, y, scale, overlap.layer_done)
                t1 = time.perf_counter()
                overlap.finish()
                inside = overlap.inside
                span_sum += overlap.span
                exposed_sum += overlap.exposed
            else:
                loss = model.loss_and_grad(x, y, scale)
                t1 = time.perf_counter()
                if tiles is not None:
                    collectives.allreduce(shares, shares, op="sum", algorithm=args.allreduce, comm=grid.spatial)
                for view in bucket_views:
                    collectives.allreduce(view, view, op="sum", algorithm=args.allreduce, comm=data)
                inside = 0.0
            t2 = time.perf_counter()
            lr = learning_rate(global_step, args.lr, args.batch, args.scale_lr, warmup)
            opt.step(model.grads, lr)
            t3 = time.perf_counter()
            axes_t[s] = _model_seconds(model) - axes_before  # inside forward and backward
            compute[s], comm_t[s] = (t1 - t0 - inside - axes_t[s].sum()) + (t3 - t2), t2 - t1 + inside
            loss_sum += loss * len(y)
            global_step += 1
            if args.check:
                _check_replicas(model, grid, world, global_step)
            rows.append({"step": global_step, "epoch": epoch, "loss": loss, "lr": lr,
                         "compute_s": compute[s], "comm_s": comm_t[s]})
            if not divergence.finite_everywhere(model.params, world):
                _diverged(args, world, "the parameters hold NaN or inf after the update", global_step, epoch,
                          saved_step, rows, config)
            if args.checkpoint_every and global_step % args.checkpoint_every == 0:
                done = first + s + 1
                saved_step = _save(args, world, grid, model, opt, config, global_step, epoch + (done == steps),
                                   done % steps)
        wall = time.perf_counter() - t_epoch
        split = _time_split(world, compute, comm_t)
        totals += split
        axes_s = np.mean(world.allgather(axes_t.sum(axis=0)), axis=0)
        axes_total += axes_s
        trained += n_steps * args.batch
        loss_mean = data.allreduce(loss_sum) / max(n_steps * args.batch, 1)
        if not math.isfinite(loss_mean):
            _diverged(args, world, "the epoch's mean loss is NaN or inf", global_step, epoch, saved_step, rows,
                      config)
        acc = _accuracy(model, source, data)
        busy = max(sum(split) + axes_s.sum(), 1e-12)
        hidden = 0.0
        if args.overlap:  # collective on every rank alike
            span_all, exposed_all = world.allreduce(span_sum), world.allreduce(exposed_sum)
            hidden = 1.0 - exposed_all / span_all if span_all > 0 else 0.0
        hidden_sum += hidden
        rec = {"epoch": epoch + 1, "loss": loss_mean, "test_accuracy": acc, "hidden": hidden,
               "samples_per_s": n_steps * args.batch / max(world.allreduce(wall, op=MPI.MAX), 1e-12),
               "compute": split[0] / busy, "communication": split[1] / busy, "waiting": split[2] / busy,
               "tensor_communication": axes_s[0] / busy, "pipeline_communication": axes_s[1] / busy,
               "halo_communication": axes_s[2] / busy}
        epochs_out.append(rec)
        if rank == 0 and not args.quiet:
            print(f"epoch {epoch + 1:>3}/{args.epochs}  loss {loss_mean:.4f}  test acc {acc:6.2%}  "
                  f"{rec['samples_per_s']:>9.0f} samples/s  compute {rec['compute']:4.0%}  "
                  f"comm {rec['communication']:4.0%}  wait {rec['waiting']:4.0%}"
                  + (f"  tensor comm {rec['tensor_communication']:4.0%}" if args.tensor_parallel > 1 else "")
                  + (f"  pipe {rec['pipeline_communication']:4.0%}" if piped else "")
                  + (f"  halo {rec['halo_communication']:4.0%}" if tiles is not None else "")
                  + (f"  hidden {hidden:4.0%}" if args.overlap else ""), flush=True)
    if args.checkpoint and saved_step != global_step:  # the final state, whatever --checkpoint-every
        _save(args, world, grid, model, opt, config, global_step, args.epochs, 0)
    total_wall = world.allreduce(time.perf_counter() - run_start, op=MPI.MAX)
    busy = max(totals.sum() + axes_total.sum(), 1e-12)
    summary = {
        "ranks": p, "algorithm": args.allreduce, "data": source.name, "model": sizes,
        "global_batch": args.batch, "epochs": args.epochs, "steps": global_step,
        "test_accuracy": _accuracy(model, source, data),
        "tensor_parallel": args.tensor_parallel, "tensor_scheme": args.tensor_scheme,
        "pipeline_stages": args.pipeline_stages, "micro_batches": args.micro_batches, "schedule": args.schedule,
        "model_kind": args.model, "spatial": list(args.spatial),
        "final_loss": epochs_out[-1]["loss"] if epochs_out else None,
        "samples_per_s": trained / max(total_wall, 1e-12), "wall_s": total_wall,
        "time_split": {"compute": totals[0] / busy, "communication": totals[1] / busy, "waiting": totals[2] / busy,
                       "tensor_communication": axes_total[0] / busy, "pipeline_communication": axes_total[1] / busy,
                       "halo_communication": axes_total[2] / busy},
        "buckets": len(buckets.ranges), "threads": threads.current(), "overlap": args.overlap,
        "hidden_fraction": hidden_sum / max(len(epochs_out), 1) if args.overlap else 0.0,
        "param_checksum": _checksum(model.params), "epochs_log": epochs_out,
    }
    if args.trace:
        summary["trace"] = trace.save_step(world, grid, model.trace or [], reference, args.trace, args.schedule,
                                           args.micro_batches)
        if rank == 0 and not args.quiet:
            t = summary["trace"]
            print(f"# trace: {t['path']}" + (f" and {t['png']}" if t["png"] else "") + f"; {t['title']}", flush=True)
    if rank == 0:
        if not args.quiet:
            t = summary["time_split"]
            print(f"# done: test accuracy {summary['test_accuracy']:.2%}, {summary['samples_per_s']:.0f} samples/s, "
                  f"{total_wall:.2f} s; compute {t['compute']:.0%}, comm {t['communication']:.0%}, "
                  f"wait {t['waiting']:.0%}"
                  + (f", tensor comm {t['tensor_communication']:.0%}" if args.tensor_parallel > 1 else "")
                  + (f", pipe {t['pipeline_communication']:.0%}" if piped else "")
                  + (f", halo {t['halo_communication']:.0%}" if tiles is not None else "")
                  + f"; params sha1 {summary['param_checksum'][:12]}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
        if args.metrics:
            _write_metrics(args.metrics, rows, config)
    if tiles is not None:
        tiles.free()
    grid.free()  # and with it the library's duplicates of its communicators
    world.Barrier()
    return summary, model


def _prepare_outputs(args, comm) -> None:
    """Check every output before training (removing a torn checkpoint temporary file); exit 2 if one fails."""
    cli.check_outputs(comm, {"--json": args.json, "--metrics": args.metrics, "--trace": args.trace}, PROG)
    why = checkpoint.prepare(args.checkpoint) if args.checkpoint and comm.Get_rank() == 0 else None
    cli.agree_or_exit(comm, why and f"--checkpoint {why}", PROG)


def _resume(args, comm, config: dict, model: Sequential, opt: SGD, steps: int, grid) -> tuple[int, int]:
    """Load ``--checkpoint`` if it continues this run (exit 2 on every rank if not); rank 0 warns of the rest.

    The checkpoint holds the whole model; each rank keeps its pieces of it.
    """
    error, epoch, step_in_epoch, warnings = None, 0, 0, []
    place = (whole_size(model, grid.pipeline), lambda src, dst: from_whole(model, src, dst, grid.tensor,
                                                                            grid.pipeline))
    try:
        epoch, step_in_epoch, warnings = resume.restore(args.checkpoint, config, model, opt, steps, place)
    except checkpoint.CheckpointError as e:
        error = str(e)
    cli.agree_or_exit(comm, error, PROG)
    if comm.Get_rank() == 0:
        for warning in warnings:
            print(f"{PROG}: warning: resuming {args.checkpoint}: {warning}", file=sys.stderr, flush=True)
    return epoch, step_in_epoch


def _save(args, comm, grid, model: Sequential, opt: SGD, config: dict, step: int, epoch: int,
          step_in_epoch: int) -> int:
    """Write the checkpoint of ``step`` and return ``step``; a failed write stops every rank with exit 1.

    The whole model, gathered from the tensor axis to rank 0 (tensor rank 0
    of the first replica): checkpoints do not depend on the layout.
    """
    params = to_whole(model, model.params, grid.tensor, grid.pipeline)
    momentum = None if opt.buffer is None else to_whole(model, opt.buffer, grid.tensor, grid.pipeline)
    error = None
    try:
        checkpoint.save(args.checkpoint, comm, params=model.params if params is None else params,
                        momentum=opt.buffer if momentum is None else momentum, step=step, epoch=epoch,
                        step_in_epoch=step_in_epoch, seed=args.seed, config=config)
    except checkpoint.CheckpointError as e:
        error = str(e)
    cli.agree_or_exit(comm, error, PROG, code=1)
    return step


def _diverged(args, comm, what: str, step: int, epoch: int, saved_step: int | None, rows: list[dict],
              config: dict) -> None:
    """Stop every rank with :data:`~training.divergence.DIVERGED`; the per-step metrics so far are written."""
    if comm.Get_rank() == 0 and args.metrics:
        _write_metrics(args.metrics, rows, config)
    cli.agree_or_exit(comm, divergence.message(what, step, epoch + 1, args.lr, args.checkpoint, saved_step), PROG,
                      code=divergence.DIVERGED)


def _write_metrics(path: str, rows: list[dict], config: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for key in ("step", "epoch", "loss", "lr", "compute_s", "comm_s"):
            f.create_dataset(key, data=np.array([r[key] for r in rows]))
        f.attrs["config"] = json.dumps(config, sort_keys=True)


if __name__ == "__main__":
    cli.run_main(main)
