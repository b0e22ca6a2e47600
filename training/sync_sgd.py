"""Synchronous data-parallel SGD whose gradient all-reduce is any of our algorithms.

Every rank holds the whole model.  Each step, each rank computes the
gradient of its part of the global batch, the gradients are summed by
``collectives.allreduce`` in buckets, and every rank applies the same SGD
update, so the parameters stay bitwise identical on every rank.

    mpiexec -n 16 python -m mpi4py -m training.sync_sgd                 # digits MLP, about 20 epochs
    mpiexec -n 4 python -m mpi4py -m training.sync_sgd --allreduce ring --bucket-mb 0.01 --overlap --json run.json
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data synthetic --samples 60000 --features 256 \\
        --hidden 512,512 --epochs 2 --metrics steps.h5
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data train.h5 --checkpoint ck.h5 --checkpoint-every 50
    mpiexec -n 2 python -m mpi4py -m training.sync_sgd --data train.h5 --checkpoint ck.h5 --resume

The time split printed per epoch: *compute* (forward, backward, update),
*communication* (the all-reduce calls) and *waiting* (the part of the
all-reduce time a rank spent waiting for the slowest rank to finish its
compute: per step, the slowest rank's compute time minus this rank's).
With ``--overlap`` each bucket's all-reduce starts as soon as backward has
filled it and is progressed between layers; *hidden* is the fraction of
the communication span (first start to last completion) that passed
before backward ended.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives import threads
from collectives._comm import library_comm
from collectives.schedule import partition

from . import checkpoint
from .data import open_source
from .model import MLP
from .optim import SGD, learning_rate
from .sampler import GlobalBatchSampler

__all__ = ["main", "run", "parser", "Buckets"]


class Buckets:
    """Contiguous ranges of the flat gradient of at most ``bucket_bytes`` each (at least one element)."""

    def __init__(self, size: int, itemsize: int, bucket_bytes: float):
        step = max(1, int(bucket_bytes // itemsize)) if bucket_bytes > 0 else max(size, 1)
        self.ranges = [(lo, min(lo + step, size)) for lo in range(0, size, step)]


def parser() -> argparse.ArgumentParser:
    names = collectives.ALGORITHMS["allreduce"]
    ap = argparse.ArgumentParser(prog="python -m training.sync_sgd", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    d = ap.add_argument_group("data")
    d.add_argument("--data", default="digits", help="digits (default), synthetic, or PATH.h5 with X and y")
    d.add_argument("--samples", type=int, default=60000, help="synthetic: samples")
    d.add_argument("--features", type=int, default=256, help="synthetic: features")
    d.add_argument("--classes", type=int, default=10, help="synthetic: classes")
    m = ap.add_argument_group("model and optimiser")
    m.add_argument("--hidden", default="128", help="hidden widths, comma-separated (default 128)")
    m.add_argument("--act", default="relu", help="hidden activation: relu, tanh, sigmoid, identity")
    m.add_argument("--epochs", type=int, default=20)
    m.add_argument("--batch", type=int, default=64, help="global batch (split over the ranks)")
    m.add_argument("--lr", type=float, default=0.05)
    m.add_argument("--momentum", type=float, default=0.9)
    m.add_argument("--weight-decay", type=float, default=1e-4)
    m.add_argument("--nesterov", action="store_true")
    m.add_argument("--scale-lr", action="store_true", help="lr x global batch / 256 (Goyal et al.)")
    m.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length")
    m.add_argument("--seed", type=int, default=0)
    c = ap.add_argument_group("communication")
    c.add_argument("--allreduce", default="auto", help=f"one of {', '.join(names)}")
    c.add_argument("--bucket-mb", type=float, default=1.0, help="gradient bucket size in MiB (default 1)")
    c.add_argument("--overlap", action="store_true",
                   help="all-reduce each bucket as soon as backward has filled it, progressed between layers")
    c.add_argument("--bind", choices=["compact", "spread", "socket"],
                   help="pin ranks, their threads and memory (numa.bind) before training")
    c.add_argument("--threads", type=int, help="Numba/BLAS threads per rank (default: cores / ranks per node)")
    c.add_argument("--check", action="store_true", help="compare parameter checksums across ranks every step")
    o = ap.add_argument_group("checkpoints and output")
    o.add_argument("--checkpoint", metavar="PATH.h5", help="checkpoint file")
    o.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: at the end only)")
    o.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    o.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    o.add_argument("--metrics", metavar="PATH.h5", help="write per-step metrics to HDF5")
    o.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap


class _Overlap:
    """One step's buckets, started as backward fills them and progressed between layers.

    ``span``: from the first bucket's start to the last one's completion;
    ``exposed``: from the end of backward's arithmetic (the last layer's
    gradients written) to that completion; hidden = ``1 - exposed / span``.
    ``inside``: seconds spent starting and progressing inside backward
    (communication, not compute).
    """

    def __init__(self, model, ranges, views, algorithm, comm):
        self.model, self.ranges, self.views = model, ranges, views
        self.algorithm, self.comm = algorithm, comm
        self.pending, self.inside, self.first = [], 0.0, None
        self.span = self.exposed = 0.0
        self.arithmetic_done = None

    def layer_done(self, layer: int) -> None:
        t = self.arithmetic_done = time.perf_counter()
        ready = self.model.param_range(layer)[1]  # layers are laid out last first: [0, ready) is final
        while len(self.pending) < len(self.ranges) and self.ranges[len(self.pending)][1] <= ready:
            if self.first is None:
                self.first = t
            view = self.views[len(self.pending)]
            self.pending.append(collectives.allreduce_start(view, view, op="sum", algorithm=self.algorithm,
                                                            comm=self.comm))
        for p in self.pending:
            p.progress()
        self.inside += time.perf_counter() - t

    def finish(self) -> None:
        for p in self.pending:
            p.wait()
        if self.first is not None:
            end = time.perf_counter()
            self.span, self.exposed = end - self.first, end - self.arithmetic_done


def _validate(args, comm) -> tuple[object, list[int]]:
    """Open the data and check every argument; raise ValueError with the reason."""
    p = comm.Get_size()
    if args.allreduce not in collectives.ALGORITHMS["allreduce"]:
        raise ValueError(f"--allreduce {args.allreduce!r} is not an algorithm; use one of "
                         f"{', '.join(collectives.ALGORITHMS['allreduce'])}")
    if args.batch < p:
        raise ValueError(f"--batch {args.batch} is smaller than the {p} ranks: every rank needs a sample per step")
    if args.epochs < 1 or args.lr <= 0 or args.momentum < 0 or args.weight_decay < 0 or args.bucket_mb < 0:
        raise ValueError("--epochs >= 1, --lr > 0, --momentum, --weight-decay and --bucket-mb >= 0, please")
    if args.nesterov and args.momentum == 0:
        raise ValueError("--nesterov needs --momentum > 0")
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise ValueError("--resume and --checkpoint-every need --checkpoint PATH.h5")
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--hidden {args.hidden!r}: comma-separated integers, please") from None
    source = open_source(args.data, samples=args.samples, features=args.features, classes=args.classes,
                         seed=args.seed)
    if args.batch > source.n_train:
        raise ValueError(f"--batch {args.batch} is larger than the {source.n_train} training samples")
    from .kernels import ACTIVATIONS

    if args.act not in ACTIVATIONS:
        raise ValueError(f"--act {args.act!r}: use one of {', '.join(ACTIVATIONS)}")
    return source, [source.features, *hidden, source.classes]


def _agree_or_exit(comm, error: str | None) -> None:
    """Every rank learns every rank's error; all exit 2 together, rank 0 says why."""
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        if comm.Get_rank() == 0:
            print(f"training.sync_sgd: {errors[0]}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _accuracy(model: MLP, source, comm) -> float:
    bounds = partition(source.n_test, comm.Get_size())
    rank = comm.Get_rank()
    x, y = source.test_rows(np.arange(bounds[rank], bounds[rank + 1]))
    correct = int(np.sum(model.predict(x) == y)) if len(y) else 0
    return comm.allreduce(correct) / max(source.n_test, 1)


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


def run(argv=None, comm=None) -> tuple[dict, MLP]:
    """Train as the command line says, on ``comm`` (default COMM_WORLD); return the summary and the model.

    Bad arguments or data raise ``SystemExit(2)`` on every rank, after rank 0 printed why.
    """
    args = parser().parse_args(argv)
    world = MPI.COMM_WORLD if comm is None else comm
    p, rank = world.Get_size(), world.Get_rank()
    error, source, sizes = None, None, None
    try:
        if args.threads is not None:
            threads.configure(args.threads)
        source, sizes = _validate(args, world)
    except (ValueError, OSError) as e:
        error = str(e)
    _agree_or_exit(world, error)
    if args.bind:
        import numa

        try:
            numa.bind(args.bind, world, args.threads)
        except ValueError as e:  # the same on every rank (numa.bind agrees first)
            if world.Get_rank() == 0:
                print(f"training.sync_sgd: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    library_comm(world)  # threads per rank, before the first kernel
    model = MLP(sizes, args.act, seed=args.seed)
    opt = SGD(model.params, args.momentum, args.weight_decay, args.nesterov)
    sampler = GlobalBatchSampler(source.n_train, args.batch, p, rank, args.seed)
    buckets = Buckets(model.params.size, model.params.itemsize, args.bucket_mb * (1 << 20))
    bucket_views = [model.grads[lo:hi] for lo, hi in buckets.ranges]
    steps = sampler.steps_per_epoch
    warmup = int(round(args.warmup_epochs * steps))
    config = {k: v for k, v in vars(args).items() if k not in ("json", "metrics", "quiet", "resume")}
    config["ranks"] = p
    start_epoch = start_step = 0
    error = None
    if args.resume:
        try:
            ck = checkpoint.load(args.checkpoint, size=model.params.size, momentum=args.momentum > 0)
        except checkpoint.CheckpointError as e:
            error = str(e)
        else:
            model.params[...] = ck["params"]
            if opt.buffer is not None:
                opt.buffer[...] = ck["momentum"]
            start_epoch, start_step = ck["epoch"], ck["step_in_epoch"]
    _agree_or_exit(world, error)
    if rank == 0 and not args.quiet:
        print(f"# sync_sgd: P={p}, data {source.name} ({source.n_train} train, {source.n_test} test), "
              f"MLP {sizes} {args.act}, global batch {args.batch} ({sampler.per_rank}/rank), "
              f"allreduce {args.allreduce}, {len(buckets.ranges)} bucket(s), threads {threads.current()}",
              flush=True)
    rows: list[dict] = []
    epochs_out = []
    global_step = start_epoch * steps + start_step
    scale = 1.0 / args.batch
    run_start = time.perf_counter()
    totals = np.zeros(3)
    trained = 0
    hidden_sum = 0.0
    for epoch in range(start_epoch, args.epochs):
        first = start_step if epoch == start_epoch else 0
        idx = sampler.epoch(epoch)[first:]
        xs, ys = source.train_rows(idx.ravel())  # this rank's rows only, one read per epoch
        b = sampler.per_rank
        n_steps = len(idx)
        compute, comm_t = np.zeros(n_steps), np.zeros(n_steps)
        loss_sum = 0.0
        span_sum = exposed_sum = 0.0
        t_epoch = time.perf_counter()
        for s in range(n_steps):
            x, y = xs[s * b : (s + 1) * b], ys[s * b : (s + 1) * b]
            t0 = time.perf_counter()
            if args.overlap:
                overlap = _Overlap(model, buckets.ranges, bucket_views, args.allreduce, world)
                loss = model.loss_and_grad(x, y, scale, overlap.layer_done)
                t1 = time.perf_counter()
                overlap.finish()
                inside = overlap.inside
                span_sum += overlap.span
                exposed_sum += overlap.exposed
            else:
                loss = model.loss_and_grad(x, y, scale)
                t1 = time.perf_counter()
                for view in bucket_views:
                    collectives.allreduce(view, view, op="sum", algorithm=args.allreduce, comm=world)
                inside = 0.0
            t2 = time.perf_counter()
            lr = learning_rate(global_step, args.lr, args.batch, args.scale_lr, warmup)
            opt.step(model.grads, lr)
            t3 = time.perf_counter()
            compute[s], comm_t[s] = (t1 - t0 - inside) + (t3 - t2), t2 - t1 + inside
            loss_sum += loss * len(y)
            global_step += 1
            if args.check:
                sums = world.allgather(_checksum(model.params))
                if len(set(sums)) != 1:
                    raise RuntimeError(f"step {global_step}: parameters differ across ranks: {sums}")
            rows.append({"step": global_step, "epoch": epoch, "loss": loss, "lr": lr,
                         "compute_s": compute[s], "comm_s": comm_t[s]})
            if args.checkpoint and args.checkpoint_every and global_step % args.checkpoint_every == 0:
                done = first + s + 1
                checkpoint.save(args.checkpoint, world, params=model.params, momentum=opt.buffer,
                                step=global_step, epoch=epoch + (done == steps), step_in_epoch=done % steps,
                                seed=args.seed, config=config)
        wall = time.perf_counter() - t_epoch
        split = _time_split(world, compute, comm_t)
        totals += split
        trained += n_steps * args.batch
        loss_mean = world.allreduce(loss_sum) / max(n_steps * args.batch, 1)
        acc = _accuracy(model, source, world)
        busy = max(sum(split), 1e-12)
        hidden = 0.0
        if args.overlap:  # collective on every rank alike
            span_all, exposed_all = world.allreduce(span_sum), world.allreduce(exposed_sum)
            hidden = 1.0 - exposed_all / span_all if span_all > 0 else 0.0
        hidden_sum += hidden
        rec = {"epoch": epoch + 1, "loss": loss_mean, "test_accuracy": acc, "hidden": hidden,
               "samples_per_s": n_steps * args.batch / max(world.allreduce(wall, op=MPI.MAX), 1e-12),
               "compute": split[0] / busy, "communication": split[1] / busy, "waiting": split[2] / busy}
        epochs_out.append(rec)
        if rank == 0 and not args.quiet:
            print(f"epoch {epoch + 1:>3}/{args.epochs}  loss {loss_mean:.4f}  test acc {acc:6.2%}  "
                  f"{rec['samples_per_s']:>9.0f} samples/s  compute {rec['compute']:4.0%}  "
                  f"comm {rec['communication']:4.0%}  wait {rec['waiting']:4.0%}"
                  + (f"  hidden {hidden:4.0%}" if args.overlap else ""), flush=True)
    if args.checkpoint and not args.checkpoint_every:
        checkpoint.save(args.checkpoint, world, params=model.params, momentum=opt.buffer, step=global_step,
                        epoch=args.epochs, step_in_epoch=0, seed=args.seed, config=config)
    total_wall = world.allreduce(time.perf_counter() - run_start, op=MPI.MAX)
    busy = max(totals.sum(), 1e-12)
    summary = {
        "ranks": p, "algorithm": args.allreduce, "data": source.name, "model": sizes,
        "global_batch": args.batch, "epochs": args.epochs, "steps": global_step,
        "test_accuracy": _accuracy(model, source, world),
        "final_loss": epochs_out[-1]["loss"] if epochs_out else None,
        "samples_per_s": trained / max(total_wall, 1e-12), "wall_s": total_wall,
        "time_split": {"compute": totals[0] / busy, "communication": totals[1] / busy, "waiting": totals[2] / busy},
        "buckets": len(buckets.ranges), "threads": threads.current(), "overlap": args.overlap,
        "hidden_fraction": hidden_sum / max(len(epochs_out), 1) if args.overlap else 0.0,
        "param_checksum": _checksum(model.params), "epochs_log": epochs_out,
    }
    if rank == 0:
        if not args.quiet:
            t = summary["time_split"]
            print(f"# done: test accuracy {summary['test_accuracy']:.2%}, {summary['samples_per_s']:.0f} samples/s, "
                  f"{total_wall:.2f} s; compute {t['compute']:.0%}, comm {t['communication']:.0%}, "
                  f"wait {t['waiting']:.0%}; params sha1 {summary['param_checksum'][:12]}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
        if args.metrics:
            _write_metrics(args.metrics, rows, config)
    world.Barrier()
    return summary, model


def _write_metrics(path: str, rows: list[dict], config: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for key in ("step", "epoch", "loss", "lr", "compute_s", "comm_s"):
            f.create_dataset(key, data=np.array([r[key] for r in rows]))
        f.attrs["config"] = json.dumps(config, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
