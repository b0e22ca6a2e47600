"""The command line of training.sync_sgd: every option with its type, and the checks that span options and data.

Each option's own range is checked by its argparse type (a usage error,
exit 2); :func:`validate` checks what needs several options, the data or
the world's size, and raises ValueError with the reason.
"""

from __future__ import annotations

import argparse

import collectives
from collectives import cli

from .data import Source, open_source
from .parallel.tensor import split_widths

__all__ = ["PROG", "parser", "validate"]

PROG = "training.sync_sgd"


def parser(doc: str) -> cli.ArgumentParser:
    """The parser of ``python -m training.sync_sgd``; ``doc`` (the module's docstring) makes its ``--help``."""
    names = collectives.ALGORITHMS["allreduce"]
    ap = cli.ArgumentParser(prog=f"python -m {PROG}", description=doc.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc.split("\n\n", 1)[1])
    d = ap.add_argument_group("data")
    d.add_argument("--data", default="digits", help="digits (default), synthetic, or PATH.h5 with X and y")
    d.add_argument("--samples", type=cli.positive_int, default=60000, help="synthetic: samples")
    d.add_argument("--features", type=cli.positive_int, default=256, help="synthetic: features")
    d.add_argument("--classes", type=cli.positive_int, default=10, help="synthetic: classes")
    m = ap.add_argument_group("model and optimiser")
    m.add_argument("--hidden", default="128", help="hidden widths, comma-separated (default 128)")
    m.add_argument("--act", default="relu", help="hidden activation: relu, tanh, sigmoid, identity")
    m.add_argument("--epochs", type=cli.positive_int, default=20)
    m.add_argument("--batch", type=cli.positive_int, default=64, help="global batch (split over the ranks)")
    m.add_argument("--lr", type=cli.positive_float, default=0.05)
    m.add_argument("--momentum", type=cli.nonnegative_float, default=0.9)
    m.add_argument("--weight-decay", type=cli.nonnegative_float, default=1e-4)
    m.add_argument("--nesterov", action="store_true")
    m.add_argument("--scale-lr", action="store_true", help="lr x global batch / 256 (Goyal et al.)")
    m.add_argument("--warmup-epochs", type=cli.nonnegative_float, default=0.0, help="linear warm-up length")
    m.add_argument("--seed", type=cli.nonnegative_int, default=0)
    c = ap.add_argument_group("communication")
    c.add_argument("--allreduce", default="auto", help=f"one of {', '.join(names)}")
    c.add_argument("--bucket-mb", type=cli.nonnegative_float, default=1.0,
                   help="gradient bucket size in MiB (default 1; 0: one bucket)")
    c.add_argument("--overlap", action="store_true",
                   help="all-reduce each bucket as soon as backward has filled it, progressed between layers")
    c.add_argument("--bind", choices=["compact", "spread", "socket"],
                   help="pin ranks, their threads and memory (numa.bind) before training")
    c.add_argument("--threads", type=cli.positive_int,
                   help="Numba/BLAS threads per rank (default: cores / ranks per node)")
    c.add_argument("--tensor-parallel", type=cli.positive_int, default=1, metavar="T",
                   help="cut the layers over T ranks (tensor/model parallelism); the data-parallel degree is P/T")
    c.add_argument("--tensor-scheme", choices=["course", "megatron"], default="course",
                   help="course: hidden layers cut by output, all-gathered; megatron: column -> row pairs")
    c.add_argument("--check", action="store_true",
                   help="compare parameter checksums across ranks every step (replicas on every axis)")
    o = ap.add_argument_group("checkpoints and output")
    o.add_argument("--checkpoint", metavar="PATH.h5", help="checkpoint file")
    o.add_argument("--checkpoint-every", type=cli.nonnegative_int, default=0,
                   help="steps between checkpoints; the final state is saved too (0: at the end only)")
    o.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint (refused if the model, --batch, --seed or the data differ)")
    o.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    o.add_argument("--metrics", metavar="PATH.h5", help="write per-step metrics to HDF5")
    o.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap


def validate(args, comm) -> tuple[Source, list[int]]:
    """Open the data (this rank scans its share for NaN and inf) and check what spans options; return the
    source and the model's widths.  Raises ValueError with the reason (the caller agrees across ranks)."""
    from .kernels import ACTIVATIONS

    p = comm.Get_size()
    if args.allreduce not in collectives.ALGORITHMS["allreduce"]:
        raise ValueError(f"--allreduce {args.allreduce!r} is not an algorithm; use one of "
                         f"{', '.join(collectives.ALGORITHMS['allreduce'])}")
    if args.act not in ACTIVATIONS:
        raise ValueError(f"--act {args.act!r}: use one of {', '.join(ACTIVATIONS)}")
    t = args.tensor_parallel
    if p % t:
        raise ValueError(f"--tensor-parallel {t} does not divide the {p} ranks")
    if args.batch < p // t:
        raise ValueError(f"--batch {args.batch} is smaller than the {p // t} data-parallel ranks: "
                         "every one needs a sample per step")
    if args.nesterov and args.momentum == 0:
        raise ValueError("--nesterov needs --momentum > 0")
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise ValueError("--resume and --checkpoint-every need --checkpoint PATH.h5")
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--hidden {args.hidden!r}: comma-separated integers, please") from None
    if hidden and min(hidden) < 1:
        raise ValueError(f"--hidden {args.hidden!r}: every width must be at least 1")
    source = open_source(args.data, samples=args.samples, features=args.features, classes=args.classes,
                         seed=args.seed, share=(comm.Get_rank(), p))
    if args.batch > source.n_train:
        raise ValueError(f"--batch {args.batch} is larger than the {source.n_train} training samples")
    sizes = [source.features, *hidden, source.classes]
    cut = split_widths(sizes, args.tensor_scheme)
    if t > 1 and not cut:
        raise ValueError(f"--tensor-parallel {t}: the {args.tensor_scheme} scheme cuts no layer of a model "
                         "without hidden layers")
    if t > 1 and min(cut) < t:
        raise ValueError(f"--tensor-parallel {t} is more than the narrowest layer it cuts ({min(cut)} features, "
                         f"{args.tensor_scheme} scheme): every rank needs at least one")
    return source, sizes
