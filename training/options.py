"""The command line of training.sync_sgd: every option with its type, and the checks that span options and data.

Each option's own range is checked by its argparse type (a usage error,
exit 2); :func:`validate` checks what needs several options, the data or
the world's size, and raises ValueError with the reason.
"""

from __future__ import annotations

import argparse

import collectives
from collectives import cli

from .data import ImageSource, Source, open_source
from .model import CNN_CHANNELS, cnn_strides
from .parallel.halo import axis_geometry, output_size
from .parallel.pipeline import stage_bounds
from .parallel.spatial import grid_shape
from .parallel.tensor import split_widths

__all__ = ["PROG", "MODEL_DEFAULTS", "parser", "validate"]

PROG = "training.sync_sgd"


#: What an option left out means, for each model: the MLP's for digits, the CNN's for 64 x 64 shapes (98 % in 8
#: epochs, docs/training.md).
MODEL_DEFAULTS = {
    "mlp": {"epochs": 20, "batch": 64, "lr": 0.05, "hidden": "128"},
    "cnn": {"epochs": 8, "batch": 16, "lr": 0.02, "hidden": ",".join(map(str, CNN_CHANNELS))},
}


def parser(doc: str) -> cli.ArgumentParser:
    """The parser of ``python -m training.sync_sgd``; ``doc`` (the module's docstring) makes its ``--help``."""
    names = collectives.ALGORITHMS["allreduce"]
    ap = cli.ArgumentParser(prog=f"python -m {PROG}", description=doc.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc.split("\n\n", 1)[1])
    d = ap.add_argument_group("data")
    d.add_argument("--data", default="digits",
                   help="digits (default), synthetic, shapes (images, for --model cnn), or PATH.h5 with X and y "
                        "(X images (n, channels, height, width) for --model cnn)")
    d.add_argument("--samples", type=cli.positive_int, help="synthetic: samples (default 60000); shapes: 3000")
    d.add_argument("--image-size", type=cli.positive_int, default=64, help="shapes: image side, 32..1024 (default 64)")
    d.add_argument("--features", type=cli.positive_int, default=256, help="synthetic: features")
    d.add_argument("--classes", type=cli.positive_int, default=10, help="synthetic: classes")
    m = ap.add_argument_group("model and optimiser")
    m.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp (default) or cnn: 3x3 convolutions, ReLU, global average pooling, a linear classifier")
    m.add_argument("--hidden", help="hidden widths, comma-separated: the MLP's (default 128) or the CNN's "
                                    "convolution channels (default 16,32,32,64)")
    m.add_argument("--act", default="relu", help="hidden activation: relu, tanh, sigmoid, identity")
    m.add_argument("--epochs", type=cli.positive_int, help="default 20 (mlp), 8 (cnn)")
    m.add_argument("--batch", type=cli.positive_int,
                   help="global batch, split over the data-parallel ranks (default 64 for mlp, 16 for cnn)")
    m.add_argument("--lr", type=cli.positive_float, help="default 0.05 (mlp), 0.02 (cnn)")
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
    c.add_argument("--pipeline-stages", type=cli.positive_int, default=1, metavar="S",
                   help="cut the layers into S consecutive stages (pipeline parallelism); data degree P/(S*T)")
    c.add_argument("--micro-batches", type=cli.positive_int, default=1, metavar="M",
                   help="micro-batches per step on each data rank (the pipeline's; at S=1, gradient accumulation)")
    c.add_argument("--schedule", choices=["gpipe", "1f1b"], default="1f1b",
                   help="the pipeline's order of forwards and backwards (default 1f1b)")
    c.add_argument("--stage-layers", metavar="N,N,...",
                   help="layers per pipeline stage (default: balanced by FLOPs, see docs/training.md)")
    c.add_argument("--spatial", default="1x1", metavar="RxC",
                   help="cut every image into R x C tiles over R*C ranks (spatial parallelism, --model cnn)")
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
    o.add_argument("--trace", metavar="PATH.json",
                   help="write the last step's pipeline timeline (Chrome trace events; and PATH.png with matplotlib)")
    o.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap


def _check_tiles(image, convolutions: int, rows: int, cols: int) -> None:
    """ValueError unless every convolution of the CNN can cut its input over ``rows x cols`` tiles."""
    height, width = image
    for i, stride in enumerate(cnn_strides(convolutions)):
        try:
            axis_geometry(height, rows, 3, stride, 1), axis_geometry(width, cols, 3, stride, 1)
        except ValueError as e:
            raise ValueError(f"--spatial {rows}x{cols}: convolution {i + 1} of {convolutions} has a "
                             f"{height}x{width} input: {e}") from None
        height, width = output_size(height, 3, stride, 1), output_size(width, 3, stride, 1)


def validate(args, comm) -> tuple[Source, list[int]]:
    """Open the data (this rank scans its share for NaN and inf) and check what spans options; return the
    source and the model's widths.  Raises ValueError with the reason (the caller agrees across ranks)."""
    from .kernels import ACTIVATIONS

    p = comm.Get_size()
    for name, value in MODEL_DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.allreduce not in collectives.ALGORITHMS["allreduce"]:
        raise ValueError(f"--allreduce {args.allreduce!r} is not an algorithm; use one of "
                         f"{', '.join(collectives.ALGORITHMS['allreduce'])}")
    if args.act not in ACTIVATIONS:
        raise ValueError(f"--act {args.act!r}: use one of {', '.join(ACTIVATIONS)}")
    t, s, m = args.tensor_parallel, args.pipeline_stages, args.micro_batches
    args.spatial = grid_shape(args.spatial, "--spatial")
    rows, cols = args.spatial
    if args.model == "cnn" and (t > 1 or s > 1 or m > 1):
        raise ValueError("--model cnn composes with data and spatial parallelism only, not yet with "
                         "--tensor-parallel, --pipeline-stages or --micro-batches")
    if args.model == "mlp" and rows * cols > 1:
        raise ValueError(f"--spatial {rows}x{cols} cuts images: it needs --model cnn")
    if args.overlap and rows * cols > 1:
        raise ValueError("--overlap is not built for spatial parallelism yet")
    if p % (t * s * rows * cols):
        cut = {"--tensor-parallel": t, "--pipeline-stages": s, "--spatial": rows * cols}
        named = " x ".join(f"{k} {v}" for k, v in cut.items() if v > 1)
        prod = t * s * rows * cols
        raise ValueError(f"{named}{f' = {prod}' if sum(v > 1 for v in cut.values()) > 1 else ''} does not divide "
                         f"the {p} ranks")
    d = p // (t * s * rows * cols)
    if args.batch < d * m:
        raise ValueError(f"--batch {args.batch} is smaller than the {d} data-parallel ranks"
                         + (f" x {m} micro-batches: every micro-batch" if m > 1 else ": every one")
                         + " needs a sample per step")
    if args.trace and s == 1 and m == 1:
        raise ValueError("--trace draws a pipeline's step: it needs --pipeline-stages or --micro-batches above 1")
    if args.stage_layers is not None:
        try:
            args.stage_layers = [int(n) for n in args.stage_layers.split(",")]
        except ValueError:
            raise ValueError(f"--stage-layers {args.stage_layers!r}: comma-separated integers, please") from None
    if args.nesterov and args.momentum == 0:
        raise ValueError("--nesterov needs --momentum > 0")
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise ValueError("--resume and --checkpoint-every need --checkpoint PATH.h5")
    if args.samples is None:
        args.samples = 3000 if args.data == "shapes" else 60000
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        raise ValueError(f"--hidden {args.hidden!r}: comma-separated integers, please") from None
    if hidden and min(hidden) < 1:
        raise ValueError(f"--hidden {args.hidden!r}: every width must be at least 1")
    source = open_source(args.data, samples=args.samples, features=args.features, classes=args.classes,
                         seed=args.seed, share=(comm.Get_rank(), p), image_size=args.image_size)
    if args.batch > source.n_train:
        raise ValueError(f"--batch {args.batch} is larger than the {source.n_train} training samples")
    sizes = [source.features, *hidden, source.classes]
    if args.model == "cnn" and not isinstance(source, ImageSource):
        raise ValueError(f"--model cnn trains on images: --data shapes, or an HDF5 file whose X is (n, channels, "
                         f"height, width); {args.data} holds feature vectors")
    if args.model != "cnn" and isinstance(source, ImageSource):
        raise ValueError(f"--data {args.data} holds images: it needs --model cnn")
    if args.model == "cnn":
        if not hidden:
            raise ValueError("--model cnn needs at least one convolution (--hidden)")
        _check_tiles(source.image, len(hidden), rows, cols)
        return source, sizes
    cut = split_widths(sizes, args.tensor_scheme)
    if t > 1 and not cut:
        raise ValueError(f"--tensor-parallel {t}: the {args.tensor_scheme} scheme cuts no layer of a model "
                         "without hidden layers")
    if t > 1 and min(cut) < t:
        raise ValueError(f"--tensor-parallel {t} is more than the narrowest layer it cuts ({min(cut)} features, "
                         f"{args.tensor_scheme} scheme): every rank needs at least one")
    stage_bounds(sizes, s, args.tensor_scheme, args.stage_layers)
    return source, sizes

