"""Layer 3: the cost model.

:mod:`.hockney` fits piecewise ``alpha + beta*n`` lines, :mod:`.profile` holds
what ``python -m collectives.alphabeta`` measured on a machine, and
:mod:`.cost_model` predicts every algorithm's time from a profile, round by
round, for ``auto`` and for ``--predict`` and ``--simulate``.
"""
