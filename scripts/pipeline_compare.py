"""Our pipeline-parallel SGD beside PyTorch's (torch.distributed.pipelining, gloo, CPU); same model, batch, data.

    pip install -e ".[compare]"        # torch==2.13.0, CPU build
    mpiexec -n 2 python -m mpi4py scripts/pipeline_compare.py --schedule gpipe --micro-batches 4 --json gpipe.json
    mpiexec -n 2 python -m mpi4py scripts/pipeline_compare.py --schedule 1f1b --json 1f1b.json

Two ranks, one stage each: ours runs ``sync_sgd --pipeline-stages 2
--micro-batches M --schedule S``, torch wraps each rank's part of the same
``nn.Sequential`` in a ``PipelineStage`` under ``ScheduleGPipe`` or
``Schedule1F1B``.  Both cut the model between the same Linear layers (from
``training.parallel.pipeline.stage_bounds``, balanced by FLOPs) and split
each global batch into the same M micro-batches.

Both train the digits MLP (64-256-256-10 by default, relu) with SGD
(momentum 0.9, weight decay 1e-4) on the loss's global mean, the same
global batches (the index arrays come from our sampler, one replica), the
same threads per rank, no data loader on either side (rows sliced from
arrays in memory).  Throughput is training samples per second over the
training steps of an epoch (no evaluation), the median over epochs after
the first; the two alternate epoch blocks so that machine drift hits both.
torch.distributed learns rank and size from MPI; gloo meets on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collectives import cli  # noqa: E402
from training import sync_sgd  # noqa: E402
from training.data import digits  # noqa: E402
from training.parallel.pipeline import stage_bounds  # noqa: E402
from training.sampler import GlobalBatchSampler  # noqa: E402
from torch_gloo import init_gloo, need_torch, same_threads  # noqa: E402

PROG = "scripts/pipeline_compare.py"
STAGES = 2


def torch_pipeline(args, comm, sizes: list[int], bounds: list[int]):
    """This rank's stage of torch's pipeline: ``(schedule, optimizer, stage module)``.

    The loss is cross-entropy summed over a micro-batch and divided by the
    global batch, with ``scale_grads=False`` (the schedule then leaves the
    gradients summed over the micro-batches, rather than divided by M): their
    sum is the gradient of the batch mean.
    """
    import torch
    from torch import nn
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    rank = comm.Get_rank()
    init_gloo(comm)
    torch.manual_seed(args.seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    model = nn.Sequential(*layers)  # Linear layer i is module 2i, its relu 2i + 1
    part = model[2 * bounds[rank] : 2 * bounds[rank + 1]]
    stage = PipelineStage(part, rank, STAGES, device=torch.device("cpu"))
    ce = nn.CrossEntropyLoss(reduction="sum")

    def loss_fn(out, target):
        return ce(out, target) / args.batch

    kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[args.schedule]
    schedule = kind(stage, n_microbatches=args.micro_batches, loss_fn=loss_fn, scale_grads=False)
    opt = torch.optim.SGD(part.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    return schedule, opt, part


def torch_epochs(args, comm, epochs: int, sizes: list[int], bounds: list[int]) -> list[float]:
    """Pipeline training with torch; samples/s of each epoch's training steps."""
    import torch

    schedule, opt, _ = torch_pipeline(args, comm, sizes, bounds)
    first, last = comm.Get_rank() == 0, comm.Get_rank() == STAGES - 1
    src = digits(seed=args.seed)
    sampler = GlobalBatchSampler(src.n_train, args.batch, 1, 0, args.seed)
    rates = []
    for epoch in range(epochs):
        idx = sampler.epoch(epoch)
        xs, ys = src.train_rows(idx.ravel())
        xs, ys = torch.from_numpy(xs), torch.from_numpy(ys)
        b = args.batch
        comm.Barrier()
        t0 = time.perf_counter()
        for s in range(len(idx)):
            opt.zero_grad(set_to_none=True)
            if first:
                schedule.step(xs[s * b : (s + 1) * b])
            elif last:
                schedule.step(target=ys[s * b : (s + 1) * b], return_outputs=False)
            opt.step()
        wall = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        rates.append(len(idx) * args.batch / wall)
    return rates


def ours_epochs(args, comm, epochs: int) -> list[float]:
    """Our pipeline (``sync_sgd --pipeline-stages 2``); samples/s of each epoch's training steps."""
    summary, _ = sync_sgd.run(["--epochs", str(epochs), "--batch", str(args.batch), "--lr", str(args.lr),
                               "--hidden", ",".join(map(str, args.hidden)), "--quiet", "--seed", str(args.seed),
                               "--pipeline-stages", str(STAGES), "--micro-batches", str(args.micro_batches),
                               "--schedule", args.schedule], comm)
    return [e["samples_per_s"] for e in summary["epochs_log"]]


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per block (the first of each is warm-up)")
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks of ours and torch's")
    ap.add_argument("--batch", type=int, default=256, help="global batch (split into the micro-batches)")
    ap.add_argument("--hidden", type=cli.int_list, default=[256, 256], help="hidden widths (default 256,256)")
    ap.add_argument("--micro-batches", type=cli.positive_int, default=4, metavar="M")
    ap.add_argument("--schedule", choices=["gpipe", "1f1b"], default="1f1b")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    torch = need_torch(comm, PROG)
    cli.agree_or_exit(comm, None if comm.Get_size() == STAGES else
                      f"runs on {STAGES} ranks (one pipeline stage each), not {comm.Get_size()}", PROG)
    cli.agree_or_exit(comm, None if args.batch % args.micro_batches == 0 else  # torch sizes its buffers once
                      f"--micro-batches {args.micro_batches} must divide --batch {args.batch} (torch's stages "
                      "take every micro-batch to be the size of the first)", PROG)
    cli.agree_or_exit(comm, None if args.schedule != "1f1b" or args.micro_batches >= STAGES else
                      f"--schedule 1f1b needs at least {STAGES} micro-batches (torch's Schedule1F1B)", PROG)
    cli.check_outputs(comm, {"--json": args.json}, PROG)
    n_threads = same_threads(comm, torch)
    src = digits(seed=args.seed)
    sizes = [src.features, *args.hidden, src.classes]
    bounds = [int(i) for i in stage_bounds(sizes, STAGES)]
    ours, theirs = [], []
    for _ in range(args.blocks):
        ours += ours_epochs(args, comm, args.epochs)[1:]
        theirs += torch_epochs(args, comm, args.epochs, sizes, bounds)[1:]
    result = {
        "ranks": comm.Get_size(), "threads_per_rank": n_threads, "global_batch": args.batch, "model": sizes,
        "stage_bounds": bounds, "micro_batches": args.micro_batches, "schedule": args.schedule,
        "torch": torch.__version__,
        "ours_samples_per_s": float(np.median(ours)), "torch_samples_per_s": float(np.median(theirs)),
        "ours_epochs": ours, "torch_epochs": theirs,
    }
    result["ratio"] = result["ours_samples_per_s"] / result["torch_samples_per_s"]
    if comm.Get_rank() == 0:
        theirs_name = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B"}[args.schedule]
        print(f"# P={result['ranks']} (one stage each, Linear layers {bounds}), {n_threads} thread(s)/rank, "
              f"global batch {args.batch} in {args.micro_batches} micro-batches, digits MLP {sizes}, "
              f"torch {torch.__version__} gloo")
        print(f"ours ({args.schedule}): {result['ours_samples_per_s']:.0f} samples/s   "
              f"torch {theirs_name}: {result['torch_samples_per_s']:.0f} samples/s   ratio {result['ratio']:.2f}x")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
