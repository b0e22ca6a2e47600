"""Tables of a profile, its pairs, its predictions and simulations; raw timings to HDF5."""

from __future__ import annotations

import json

import numpy as np

from ..bench import format_size
from ..model import cost_model
from ..model.profile import Profile
from .local_costs import KERNELS


def _us(s: float) -> str:
    return f"{s * 1e6:.3f}"


def _gbps(beta: float) -> str:
    return f"{1 / beta / 1e9:.2f}" if beta > 0 else "inf"


def describe(prof: Profile) -> str:
    """The profile as a table."""
    lines = []
    for name, pw in (("intra-node link, ping-pong", prof.intra),
                     ("intra-node link, exchange", prof.intra_exchange),
                     ("inter-node link, ping-pong", prof.inter),
                     ("inter-node link, exchange", prof.inter_exchange),
                     ("reduce kernel (gamma)", prof.reduce),
                     ("reduce kernel, into the buffer just sent", prof.reduce_sent),
                     ("reduce kernel, one rank of the node alone", prof.reduce_alone),
                     ("memory copy", prof.copy)):
        if pw is None:
            continue
        lines.append(f"# {name}: R^2 {pw.r2:.4f}, largest relative residual {pw.max_rel_residual:.1%}")
        lines.append(f"{'from_bytes':>12} {'to_bytes':>12} {'alpha_us':>10} {'beta_ns/B':>10} {'GB/s':>8}")
        for s in pw.segments:
            hi = "inf" if s.hi == float("inf") else f"{s.hi:.0f}"
            lines.append(f"{s.lo:>12.0f} {hi:>12} {_us(s.alpha):>10} {s.beta * 1e9:>10.5f} {_gbps(s.beta):>8}")
    each = " (all-reduce median); per call of each algorithm:" if prof.call_overheads else ""
    lines.append(f"# software overhead: {_us(prof.round_overhead)} us per round, "
                 f"{_us(prof.call_overhead)} us per call{each}")
    for key, t in prof.call_overheads.items():
        lines.append(f"#   {key:<40} {_us(t):>10} us")
    lines.append(
        f"# headline: alpha {_us(prof.intra.alpha)} us, beta {prof.intra.beta * 1e9:.5f} ns/B "
        f"({_gbps(prof.intra.beta)} GB/s), gamma {prof.reduce.beta * 1e9:.5f} ns/B "
        f"({_gbps(prof.reduce.beta)} GB/s)"
    )
    return "\n".join(lines)


def describe_pairs(alpha: np.ndarray, beta: np.ndarray, nodes: list[int]) -> str:
    """Alpha matrix (us) with ranks ordered by node, and per-class medians."""
    p = len(nodes)
    order = sorted(range(p), key=lambda r: (nodes[r], r))
    lines = ["# pairwise alpha (us), ranks grouped by node (node:rank)"]
    lines.append(" " * 9 + "".join(f"{nodes[c]}:{c:<6}" for c in order))
    for r in order:
        cells = "".join(f"{'-' if np.isnan(alpha[r, c]) else f'{alpha[r, c] * 1e6:.2f}':<8}" for c in order)
        lines.append(f"{nodes[r]}:{r:<6} {cells}")
    same = np.array([[nodes[i] == nodes[j] and i != j for j in range(p)] for i in range(p)])
    for label, mask in (("intra-node", same), ("inter-node", ~same & ~np.eye(p, dtype=bool))):
        a, b = alpha[mask], beta[mask]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a):
            lines.append(f"# {label} pairs: {len(a) // 2}, median alpha {np.median(a) * 1e6:.3f} us, "
                         f"median bandwidth {_gbps(float(np.median(b)))} GB/s")
    return "\n".join(lines)


def write_hdf5(path: str, prof: Profile, raw: dict) -> None:
    """Raw samples per size (NaN-padded), fits as JSON attributes, environment as attributes."""
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in prof.meta.items():
            f.attrs[k] = v if not isinstance(v, list) else ",".join(map(str, v))
        f.attrs["profile"] = json.dumps(prof.to_dict())
        for key in ("pingpong_intra", "exchange_intra", "pingpong_inter", "exchange_inter",
                    *(name for name, _, _ in KERNELS)):
            if key not in raw:
                continue
            data = raw[key]
            g = f.create_group(key)
            g["bytes"] = np.array(list(data), np.int64)
            width = max(len(v) for v in data.values())
            pad = np.full((len(data), width), np.nan)
            for i, v in enumerate(data.values()):
                pad[i, : len(v)] = v
            g["seconds"] = pad
            g["median"] = np.array([np.median(v) for v in data.values()])
        if "pair_alpha" in raw:
            f["pairs/alpha"] = raw["pair_alpha"]
            f["pairs/beta"] = raw["pair_beta"]
        f["nodes"] = np.array(raw["nodes"])
        if raw.get("calls"):
            f["calls/name"] = np.array(list(raw["calls"]), dtype=h5py.string_dtype())
            f["calls/seconds"] = np.array(list(raw["calls"].values()))
        f["rounds/count"] = np.array(list(raw["rounds"]))
        f["rounds/seconds"] = np.array(list(raw["rounds"].values()))


def describe_predictions(recs: list[dict]) -> str:
    lines = [f"{'bytes':>10} {'algorithm':>20} {'measured_us':>12} {'predicted_us':>12} {'rel_err':>8}  note"]
    for r in recs:
        pred = f"{r['predicted_us']:>12.2f} {r['rel_error']:>+8.1%}" if "predicted_us" in r else f"{'-':>12} {'-':>8}"
        note = ""
        if r["algorithm"] == "auto":
            note = f"chose {r['auto_choice']}; best fixed {r['best_fixed']}; auto/best {r['auto_vs_best']:.2f}"
        lines.append(f"{r['bytes']:>10} {r['algorithm']:>20} {r['measured_us']:>12.2f} {pred}  {note}")
    big = [r for r in recs if "rel_error" in r and r["bytes"] >= 64 * 1024 and r["algorithm"] != "auto"]
    if big:
        worst = max(big, key=lambda r: abs(r["rel_error"]))
        lines.append(f"# largest |error| from 64 KiB: {worst['rel_error']:+.1%} "
                     f"({worst['algorithm']}, {worst['bytes']} B)")
    autos = [r for r in recs if r["algorithm"] == "auto"]
    if autos:
        lines.append(f"# auto / best fixed: worst {max(r['auto_vs_best'] for r in autos):.2f}")
    return "\n".join(lines)


def describe_simulation(recs: list[dict], family: str) -> str:
    algs = cost_model.predictable(family)
    short = {a: a[:1].upper() + str(i) for i, a in enumerate(algs)}
    lines = ["# winner per (P, bytes): " + ", ".join(f"{v}={k}" for k, v in short.items())]
    for rpn in sorted({r["ranks_per_node"] for r in recs}):
        sub = [r for r in recs if r["ranks_per_node"] == rpn]
        ns = sorted({r["bytes"] for r in sub})
        lines.append(f"# ranks per node {rpn}")
        lines.append(f"{'P':>6} " + " ".join(f"{format_size(n):>5}" for n in ns))
        for p in sorted({r["p"] for r in sub}):
            row = {r["bytes"]: r["winner"] for r in sub if r["p"] == p}
            lines.append(f"{p:>6} " + " ".join(f"{short[row[n]]:>5}" for n in ns))
    return "\n".join(lines)
