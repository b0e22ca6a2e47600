"""One pipeline step's timeline: Chrome trace events (chrome://tracing, Perfetto), a PNG, and the measured bubble.

Each rank records ``(kind, micro-batch, start, end)`` spans
(:attr:`training.parallel.pipeline.Pipeline.trace`) in its own
``perf_counter`` seconds, from a reference taken as every rank leaves one
barrier; :func:`gather` brings them to rank 0 on that common time base.
"""

from __future__ import annotations

import json

__all__ = ["gather", "chrome", "write", "plot", "bubble", "KINDS"]

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
    any rank.  Returns ``{"step_s", "per_rank", "mean"}``.
    """
    step = max((end for spans in spans_by_rank for _, _, _, end in spans), default=0.0)
    per_rank = [1.0 - sum(e - s for k, _, s, e in spans if k in COMPUTE) / step if step > 0 else 0.0
                for spans in spans_by_rank]
    return {"step_s": step, "per_rank": per_rank, "mean": sum(per_rank) / max(len(per_rank), 1)}


def write(path: str, spans_by_rank, names=None, meta=None) -> str | None:
    """Write the trace to ``path`` (JSON) and, when matplotlib is installed, its picture beside it (``.png``).

    Returns the PNG's path, or None without matplotlib.
    """
    with open(path, "w") as f:
        json.dump(chrome(spans_by_rank, names, meta), f)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
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
