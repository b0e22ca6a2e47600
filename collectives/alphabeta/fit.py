"""The profile fitted from a measurement's samples: piecewise Hockney lines and overheads."""

from __future__ import annotations

import dataclasses

import numpy as np
from mpi4py import MPI

from ..bench import environment
from ..model import cost_model
from ..model.hockney import Piecewise, fit
from ..model.profile import Profile
from ..runtime.communicator import library_comm, ranks_per_node
from .local_costs import KERNELS, slope
from .sampling import POOL, TIMING


def fit_profile(comm: MPI.Comm, got: dict, nodes: list[int], max_segments: int) -> tuple[Profile, dict]:
    """The profile (identical on every rank) and the raw data (complete on rank 0) of ``got``.

    ``got``: the results of :func:`.measure.measure`'s pass generators, by
    name.  Links are fitted on rank 0 from its ping-pong and exchange
    samples (at most ``max_segments`` regimes each), the kernels on every
    rank; the per-round overhead is the slope of the one-element rounds less
    what the model charges for such a round, and each algorithm's per-call
    overhead its one-element call less the model's prediction for it.
    """
    rank, p = comm.Get_rank(), comm.Get_size()
    raw: dict = {"nodes": nodes}

    def medians_fit(samples: dict, footprint: int) -> Piecewise:
        return fit(list(samples), [np.median(v) for v in samples.values()],
                   max_segments=max_segments, footprint=footprint)

    links = {}
    for key in ("pingpong_intra", "exchange_intra", "pingpong_inter", "exchange_inter"):
        if key in got and rank == 0:
            raw[key] = got[key]
            kind, name = key.split("_")
            # working set on the busiest node: POOL buffers per rank, two ranks or one
            links[name + ("_exchange" if kind == "exchange" else "")] = medians_fit(
                got[key], POOL * (2 if name == "intra" else 1))
    local = int(np.bincount(nodes).max())  # ranks running the kernels at once on the fullest node
    kernels = {}
    for name, _, _ in KERNELS:
        raw[name] = got[name]
        kernels[name] = medians_fit(got[name], POOL * local)
    raw["rounds"] = got["rounds"]
    links = comm.bcast(links, root=0)
    if "intra" not in links:  # one rank: no link to measure, keep a zero-cost one
        links["intra"] = Piecewise.line(0.0, 0.0)
    meta = environment(comm)
    meta["nodes"] = max(nodes) + 1
    meta["timing"] = TIMING
    prof = Profile(
        intra=links["intra"],
        inter=links.get("inter"),
        intra_exchange=links.get("intra_exchange"),
        inter_exchange=links.get("inter_exchange"),
        **kernels,
        meta=meta,
    )
    # per round: the slope of the one-element rounds less what the model charges for
    # one such round's messages (an exchange, reduced into the element sent)
    one_round = prof.link(False, exchange=True)(4) + prof.reduce_sent(4)
    prof = dataclasses.replace(prof, round_overhead=max(slope(got["rounds"]) - one_round, 0.0))
    # per call and algorithm: a call with one element per rank minus what the model
    # charges for its rounds and copies (no call overhead in ``prof`` yet)
    rpn = ranks_per_node(library_comm(comm))
    raw["calls"] = {f"{f}/{a}": float(np.median(v)) for (f, a), v in got["call"].items()}
    overheads = {
        key: max(t - cost_model.predict(*key.split("/"), 4 * p, p, prof, ranks_per_node=rpn), 0.0)
        for key, t in raw["calls"].items()
    }
    allreduce = [t for k, t in overheads.items() if k.startswith("allreduce/")]
    prof = dataclasses.replace(prof, call_overheads=overheads,
                               call_overhead=float(np.median(allreduce)) if allreduce else 0.0)
    # every rank decides with the bits rank 0 has
    return Profile.from_dict(comm.bcast(prof.to_dict(), root=0)), raw
