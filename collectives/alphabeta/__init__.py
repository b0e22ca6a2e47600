"""``python -m collectives.alphabeta``: measure alpha, beta and gamma, fit them, predict every collective.

The modules: :mod:`.sampling` (how every measurement samples), :mod:`.links`
(ping-pong, exchange, pairs), :mod:`.local_costs` (gamma and software
overheads), :mod:`.measure` (all of them interleaved), :mod:`.fit` (the
profile), :mod:`.predict` and :mod:`.report` (predictions, simulations,
tables) and :mod:`.command` (the command line).

Launch::

    mpiexec -n 2 python -m mpi4py -m collectives.alphabeta --save
    mpiexec -n 2 python -m mpi4py -m collectives.alphabeta --predict --json ab.json
    python -m collectives.alphabeta --simulate --profile ab.json --plot winners.png

What it measures (OSU method: warm-up, a barrier before each size, the
iteration count scaled down with size, the median; each size's samples are
split over ``--passes`` passes through the sizes, and the measurements
below run interleaved pass by pass, so that a slow spell of a shared
machine hits one pass of each, not all of one):

- **ping-pong** between a pair of ranks, 0 B to ``--max-bytes``, for one pair
  on the same node and, with several nodes, one pair on different nodes;
  half the round trip is the one-way time ``T(n)``; and an **exchange**, both
  ranks sending ``n`` bytes at once, posted and waited for as the engine
  runs a round.  Each is fitted with a piecewise Hockney model
  ``T(n) = alpha + beta*n`` (:mod:`collectives.model.hockney`), with a breakpoint
  wherever the protocol changes.
- **gamma**: our reduce kernel (sum, float32) and a memory copy, fitted the
  same way, each timed where the library runs it (right after an exchange,
  see :func:`.local_costs.local_kernel`) with every rank of the node working at once, so
  memory bandwidth is shared as it is in a collective: the reduce into a
  buffer of the rank's own and into the buffer just sent (recursive
  doubling's), the copy over the buffer just sent; and the reduce again with
  rank 0 alone while the others wait, as the naive parameter server's root
  reduces.
- **software overheads** of our engine: the time per round beyond the
  messages and reductions the model charges for it (from schedules of 1 to
  16 one-element rounds) and per call, for every algorithm of every
  collective (calls with one element per rank, interleaved as the bench
  interleaves them, minus their predicted rounds; see :func:`.local_costs.call_times`).
- **pairs** (P > 2): alpha and beta of every pair (a sample of
  ``--max-pairs`` when there are more), ranks grouped by node, so intra- and
  inter-node links show apart.

Outputs: a table on stdout; the profile as JSON (``--json PATH``, or
``--save`` to the default path ``auto`` reads, see :mod:`collectives.model.profile`);
raw timings in HDF5 (``--output PATH.h5``); a PNG of points and fitted
lines (``--plot PATH.png``, needs matplotlib: ``pip install .[plots]``).

``--predict`` benches every algorithm of ``--collective`` *alongside* the
measurements, one bench pass after each pass of them
(:mod:`collectives.passes`), so that the profile and the times it is
checked against sample the same spells of a drifting machine; then, with
the profile fitted, it benches again with ``auto`` deciding from it.  It
prints, per algorithm and size, predicted and measured time and the
relative error, and ``auto`` against the best fixed algorithm of its own
bench.  ``--simulate`` predicts from
a profile at P up to 4096 and several ranks per node, and charts which
algorithm wins where.
"""
