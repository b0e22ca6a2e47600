"""Every measurement of a profile, run interleaved pass by pass."""

from __future__ import annotations

from mpi4py import MPI

from ..model.profile import Profile
from ..passes import interleave
from ..runtime.communicator import library_comm
from .fit import fit_profile
from .links import _node_ids, pairwise, pingpong
from .local_costs import KERNELS, call_times, local_kernel, round_times
from .sampling import make_pools, sweep_sizes


def measure(comm: MPI.Comm, args, alongside=(), progress=None) -> tuple[Profile, dict, list]:
    """Run every measurement and fit the profile (:func:`.fit.fit_profile`).

    Returns the profile (identical on all ranks), the raw data (rank 0) and
    the results of ``alongside``.

    The measurements run interleaved pass by pass (:mod:`collectives.passes`),
    each pass followed by a pass of every generator in ``alongside`` (the
    ``--predict`` bench), so the profile and what it is checked against
    sample the same spells of a drifting machine.  ``progress``, if given,
    is called after each pass (see :class:`collectives.progress.Progress`).
    The pairwise matrix (P > 2) is measured after them.
    """
    library_comm(comm)  # threads per rank as in a real collective, before any kernel runs
    p = comm.Get_size()
    nodes = _node_ids(comm)
    ns = sweep_sizes(args.max_bytes)
    pools = make_pools(ns)
    tasks = {}
    if p >= 2:
        same = [r for r in range(1, p) if nodes[r] == nodes[0]]
        other = [r for r in range(1, p) if nodes[r] != nodes[0]]
        for name, peers in (("intra", same), ("inter", other)):
            for exchange in (False, True):
                if peers:
                    tasks[f"{'exchange' if exchange else 'pingpong'}_{name}"] = pingpong(
                        comm, 0, peers[0], ns, args.budget, exchange=exchange, passes=args.passes, pools=pools)
    ks = [s for s in ns if s >= 64]
    for name, kind, alone in KERNELS:
        tasks[name] = local_kernel(comm, kind, ks, args.budget, args.passes, pools, alone)
    tasks["rounds"] = round_times(comm, args.budget, args.passes)
    tasks["call"] = call_times(comm, args.budget, args.passes)
    done = interleave([*tasks.values(), *alongside], after_pass=progress)
    del pools
    prof, raw = fit_profile(comm, dict(zip(tasks, done)), nodes, args.max_segments)
    if args.pairs and p > 2:
        raw["pair_alpha"], raw["pair_beta"] = pairwise(comm, args.max_pairs, args.budget / 4)
    return prof, raw, done[len(tasks):]
