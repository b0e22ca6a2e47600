"""Our synchronous SGD beside PyTorch's (gloo, CPU): DDP, or its tensor parallelism; same model, batch, data.

    pip install -e ".[compare]"        # torch==2.13.0, CPU build
    mpiexec -n 2 python -m mpi4py scripts/ddp_compare.py --epochs 6 --json ddp.json
    mpiexec -n 2 python -m mpi4py scripts/ddp_compare.py --tensor-parallel 2 --json tp.json

With ``--tensor-parallel T`` (T = P: every rank holds a cut of one model and
sees the whole batch) ours runs ``sync_sgd --tensor-parallel T
--tensor-scheme megatron`` and torch ``torch.distributed.tensor.parallel``:
``ColwiseParallel`` on the first layer, ``RowwiseParallel`` on the second,
the same pairing (one all-reduce forward, none backward for the first pair).

Both train the digits MLP (64-128-10, relu) with SGD (momentum 0.9, weight
decay 1e-4), the same global batch split over the ranks the same way (the
index arrays come from our sampler), the same threads per rank, no data
loader on either side (rows sliced from arrays in memory).  Throughput is
training samples per second over the training steps of an epoch (no
evaluation), the median over epochs after the first; the two alternate
epoch blocks so that machine drift hits both.  torch.distributed learns
rank and size from MPI; gloo meets on 127.0.0.1.
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
from training.sampler import GlobalBatchSampler  # noqa: E402
from torch_gloo import init_gloo, need_torch, same_threads  # noqa: E402

PROG = "scripts/ddp_compare.py"


def torch_epochs(args, comm, epochs: int) -> list[float]:
    """DDP training; samples/s of each epoch's training steps."""
    import torch
    from torch import nn

    p, rank = comm.Get_size(), comm.Get_rank()
    init_gloo(comm)
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    if args.tensor_parallel > 1:  # one model cut over all P ranks, each seeing the whole batch
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        ddp = parallelize_module(model, init_device_mesh("cpu", (p,)),
                                 {"0": ColwiseParallel(), "2": RowwiseParallel()})
        replicas, replica = 1, 0
    else:
        ddp = nn.parallel.DistributedDataParallel(model)
        replicas, replica = p, rank
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    src = digits(seed=args.seed)
    sampler = GlobalBatchSampler(src.n_train, args.batch, replicas, replica, args.seed)
    rates = []
    for epoch in range(epochs):
        idx = sampler.epoch(epoch)
        xs, ys = src.train_rows(idx.ravel())
        xs, ys = torch.from_numpy(xs), torch.from_numpy(ys)
        b = sampler.per_rank
        comm.Barrier()
        t0 = time.perf_counter()
        for s in range(len(idx)):
            opt.zero_grad(set_to_none=True)
            # the global mean: DDP averages over its replicas, so scale the local sum by replicas / global batch
            loss = loss_fn(ddp(xs[s * b : (s + 1) * b]), ys[s * b : (s + 1) * b]) * (replicas / args.batch)
            loss.backward()
            opt.step()
        wall = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        rates.append(len(idx) * args.batch / wall)
    return rates


def ours_epochs(args, comm, epochs: int) -> list[float]:
    summary, _ = sync_sgd.run(["--epochs", str(epochs), "--batch", str(args.batch), "--lr", str(args.lr),
                               "--hidden", str(args.hidden), "--allreduce", args.allreduce, "--quiet",
                               "--seed", str(args.seed), "--tensor-parallel", str(args.tensor_parallel),
                               "--tensor-scheme", "megatron"], comm)
    return [e["samples_per_s"] for e in summary["epochs_log"]]


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per block (the first of each is warm-up)")
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks of ours and DDP's")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--allreduce", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tensor-parallel", type=int, default=1, metavar="T",
                    help="1: data parallel (DDP); P: one model cut over all ranks (torch's tensor parallelism)")
    ap.add_argument("--json", metavar="PATH")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    torch = need_torch(comm, PROG)
    cli.agree_or_exit(comm, None if args.tensor_parallel in (1, comm.Get_size()) else
                      f"--tensor-parallel {args.tensor_parallel}: 1 (DDP) or {comm.Get_size()} (all ranks)",
                      PROG)
    n_threads = same_threads(comm, torch)
    ours, theirs = [], []
    for _ in range(args.blocks):
        ours += ours_epochs(args, comm, args.epochs)[1:]
        theirs += torch_epochs(args, comm, args.epochs)[1:]
    result = {
        "ranks": comm.Get_size(), "threads_per_rank": n_threads, "global_batch": args.batch,
        "model": [64, args.hidden, 10], "allreduce": args.allreduce, "torch": torch.__version__,
        "tensor_parallel": args.tensor_parallel,
        "ours_samples_per_s": float(np.median(ours)), "ddp_samples_per_s": float(np.median(theirs)),
        "ours_epochs": ours, "ddp_epochs": theirs,
    }
    result["ratio"] = result["ours_samples_per_s"] / result["ddp_samples_per_s"]
    if comm.Get_rank() == 0:
        theirs_name = f"torch tensor parallel {args.tensor_parallel}" if args.tensor_parallel > 1 else "DDP"
        print(f"# P={result['ranks']}, {n_threads} thread(s)/rank, global batch {args.batch}, digits MLP "
              f"{result['model']}, torch {torch.__version__} gloo")
        print(f"ours ({args.allreduce}): {result['ours_samples_per_s']:.0f} samples/s   "
              f"{theirs_name}: {result['ddp_samples_per_s']:.0f} samples/s   ratio {result['ratio']:.2f}x")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
