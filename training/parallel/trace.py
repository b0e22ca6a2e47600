"""One pipeline step's timeline: Chrome trace events (chrome://tracing, Perfetto), a PNG, and the measured bubble.

Each rank records ``(kind, micro-batch, start, end)`` spans
(:attr:`training.parallel.pipeline.Pipeline.trace`) in its own
``perf_counter`` seconds, from a reference taken as every rank leaves one
barrier; :func:`gather` brings them to rank 0 on that common time base.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np

__all__ = ["gather", "chrome", "write", "plot", "bubble", "save_step", "KINDS"]

#: Span kinds, and the colour each has in the PNG.
KINDS = {"forward": "tab:blue", "backward": "tab:green", "recv": "tab:orange", "send": "tab:red",
         "wait": "tab:gray"}
COMPUTE = ("forward", "backward")


def gather(comm, spans, reference: float) -> list[list[tuple]] | None:
    """Every rank's spans on rank 0 of ``comm``, in seconds since each rank's ``reference``; None elsewhere."""
    mine = [(kind, micro, start - reference, end - reference) for kind, micro, start, end in spans]
    return comm.gather(mine, root=0)


def chrome(spans_by_rank, names=None, meta=None) -> dict:
    """The Chrome trace event format: one complete event (``ph: X``) per span, one thread per rank, microseconds.

    Parameters
    ----------
    spans_by_rank : list of list of (kind, micro, start, end)
    names : list of str, optional
        A name per rank's row (default ``rank r``).
    meta : dict, optional
        Kept under ``otherData``.
    """
    events = []
    for r, spans in enumerate(spans_by_rank):
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": r,
                       "args": {"name": names[r] if names else f"rank {r}"}})
        for kind, micro, start, end in spans:
            label = kind[0].upper() + (str(micro) if micro >= 0 else "") if kind in COMPUTE else kind
            events.append({"name": label, "cat": kind, "ph": "X", "pid": 0, "tid": r,
                           "ts": start * 1e6, "dur": (end - start) * 1e6, "args": {"micro_batch": micro}})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta or {}}


def bubble(spans_by_rank) -> dict:
    """Idle time over step time, measured: per rank ``1 - (its forward + backward time) / step``.

    The step runs from the common reference (0) to the last span's end on
    any rank.  Returns ``{"step_s", "per_rank", "mean", "busiest"}``:
    ``busiest`` is the idle share of the rank with the most forward and
    backward time.  With stages of equal work every rank idles
    ``(S-1)/(M+S-1)`` of the step (the bubble: filling and draining the
    pipeline); with unequal ones the others also wait for the busiest, so
    ``mean`` adds that imbalance to the bubble and ``busiest`` does not.
    """
    step = max((end for spans in spans_by_rank for _, _, _, end in spans), default=0.0)
    busy = [sum(e - s for k, _, s, e in spans if k in COMPUTE) for spans in spans_by_rank]
    per_rank = [1.0 - b / step if step > 0 else 0.0 for b in busy]
    return {"step_s": step, "per_rank": per_rank, "mean": sum(per_rank) / max(len(per_rank), 1),
            "busiest": per_rank[int(np.argmax(busy))] if busy else 0.0}


def write(path: str, spans_by_rank, names=None, meta=None) -> str | None:
    """Write the trace to ``path`` (JSON) and, when matplotlib is installed, its picture beside it (``.png``).

    Returns the PNG's path, or None without matplotlib.
    """
    with open(path, "w") as f:
        json.dump(chrome(spans_by_rank, names, meta), f)
    if importlib.util.find_spec("matplotlib") is None:
        return None
    png = (path[:-5] if path.endswith(".json") else path) + ".png"
    plot(png, spans_by_rank, names, (meta or {}).get("title"))
    return png


def plot(path: str, spans_by_rank, names=None, title: str | None = None) -> None:
    """A Gantt chart of the spans: a row per rank, forward and backward labelled by micro-batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(spans_by_rank)
    fig, ax = plt.subplots(figsize=(10, 0.7 * n + 1.4))
    for r, spans in enumerate(spans_by_rank):
        row = n - 1 - r
        for kind, micro, start, end in spans:
            width = (end - start) * 1e3
            ax.broken_barh([(start * 1e3, width)], (row - 0.4, 0.8), color=KINDS.get(kind, "black"),
                           alpha=1.0 if kind in COMPUTE else 0.6)
            if kind in COMPUTE and micro >= 0:
                ax.text(start * 1e3 + width / 2, row, f"{kind[0].upper()}{micro}", ha="center", va="center",
                        fontsize=7, color="white")
    ax.set_yticks(range(n))
    ax.set_yticklabels([(names[r] if names else f"rank {r}") for r in reversed(range(n))])
    ax.set_xlabel("ms since the step began")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KINDS.values()]
    ax.legend(handles, list(KINDS), loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(KINDS),
              fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_step(world, grid, spans, reference: float, path: str, schedule: str, micro_batches: int) -> dict:
    """Collective over ``world``: rank 0 writes one step's spans of every rank to ``path`` (and its PNG).

    Rows are named by each rank's grid coordinates.  Returns, on rank 0,
    ``{"path", "png", "step_s", "bubble", "bubble_busiest", "bubble_per_rank",
    "bubble_formula", "title"}`` (see :func:`bubble`); ``{}`` elsewhere.
    """
    spans_by_rank = gather(world, spans, reference)
    coords = world.gather(grid.coords, root=0)
    if world.Get_rank() != 0:
        return {}
    names = [f"rank {r}: stage {c[0]}" + (f", data {c[1]}" if grid.layout.data > 1 else "")
             + (f", tensor {c[3]}" if grid.layout.tensor > 1 else "") for r, c in enumerate(coords)]
    s, m = grid.layout.pipeline, micro_batches
    measured = bubble(spans_by_rank)
    out = {"path": path, "step_s": measured["step_s"], "bubble": measured["mean"],
           "bubble_busiest": measured["busiest"], "bubble_per_rank": measured["per_rank"],
           "bubble_formula": (s - 1) / (m + s - 1)}
    out["title"] = (f"{schedule}, S={s}, M={m}: measured bubble {out['bubble']:.1%} (busiest stage "
                    f"{out['bubble_busiest']:.1%}), (S-1)/(M+S-1) = {out['bubble_formula']:.1%}")
    out["png"] = write(path, spans_by_rank, names, out)
    return out
