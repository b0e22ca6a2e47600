"""PNG charts for ``collectives.alphabeta`` and ``training.roofline``.

matplotlib is an optional extra: ``pip install .[plots]``.
"""

from __future__ import annotations

import numpy as np

from .bench import format_size
from .model import cost_model
from .model.profile import Profile


def missing() -> str | None:
    """Why ``--plot`` cannot draw here (matplotlib is not installed), or None: checked before the work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install 'mpi-train-kit[plots]'"
    return None


def pyplot():
    """``matplotlib.pyplot`` drawing to files (the Agg backend); see :func:`missing`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fits(prof: Profile, raw: dict | None, path: str) -> None:
    """Measured medians (points) and fitted piecewise lines, log-log, one panel per cost."""
    plt = pyplot()
    panels = [("intra-node ping-pong", "pingpong_intra", prof.intra),
              ("intra-node exchange", "exchange_intra", prof.intra_exchange),
              ("inter-node ping-pong", "pingpong_inter", prof.inter),
              ("inter-node exchange", "exchange_inter", prof.inter_exchange),
              ("reduce kernel (gamma)", "reduce", prof.reduce),
              ("memory copy", "copy", prof.copy)]
    panels = [x for x in panels if x[2] is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, key, pw) in zip(axes[0], panels):
        data = (raw or {}).get(key)
        if data:
            n = np.array([max(k, 1) for k in data])
            ax.plot(n, [np.median(v) * 1e6 for v in data.values()], "o", ms=3, label="measured")
            grid = np.geomspace(1, n.max(), 400)
        else:
            grid = np.geomspace(1, 64 << 20, 400)
        ax.plot(grid, [pw(x) * 1e6 for x in grid], "-", label="fit")
        for s in pw.segments[1:]:
            ax.axvline(s.lo, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log", base=2)
        if pw(grid[-1]) > 0:  # a zero-cost link (one rank) cannot be log-scaled
            ax.set_yscale("log")
        ax.set_xlabel("bytes")
        ax.set_ylabel("µs")
        ax.set_title(f"{title}\nR²={pw.r2:.3f}, max rel. resid. {pw.max_rel_residual:.0%}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def winners(recs: list[dict], family: str, path: str) -> None:
    """Which algorithm the model predicts fastest at each (bytes, P), one panel per ranks-per-node."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    algs = cost_model.predictable(family)
    rpns = sorted({r["ranks_per_node"] for r in recs})
    cmap = ListedColormap(plt.get_cmap("tab10").colors[: len(algs)])
    fig, axes = plt.subplots(1, len(rpns), figsize=(6 * len(rpns), 4.2), squeeze=False)
    for ax, rpn in zip(axes[0], rpns):
        sub = [r for r in recs if r["ranks_per_node"] == rpn]
        ps = sorted({r["p"] for r in sub})
        ns = sorted({r["bytes"] for r in sub})
        grid = np.zeros((len(ps), len(ns)))
        for r in sub:
            grid[ps.index(r["p"]), ns.index(r["bytes"])] = algs.index(r["winner"])
        ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(algs) - 0.5,
                  interpolation="nearest")
        ax.set_xticks(range(0, len(ns), 3))
        ax.set_xticklabels([format_size(n) for n in ns[::3]], rotation=45, fontsize=8)
        ax.set_yticks(range(len(ps)))
        ax.set_yticklabels(ps, fontsize=8)
        ax.set_xlabel("bytes per rank (full vector)")
        ax.set_ylabel("ranks P")
        ax.set_title(f"{family}: predicted fastest, {rpn} rank(s) per node", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(algs))]
    fig.legend(handles, algs, loc="lower center", ncol=len(algs), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
