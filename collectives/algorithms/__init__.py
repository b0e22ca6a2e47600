"""Layer 1: the algorithms, as pure schedules.

One module per algorithm.  Each is a function of ``(rank, P, n)`` (and the
root, for broadcasts) that returns the rounds it runs: who sends which
element range to whom, and who receives and reduces what
(:mod:`.schedule` defines the types).  Nothing here sends a message, so every
schedule is checked without MPI against hand-worked tables
(``tests/test_schedule_tables.py``) and by :func:`.schedule.simulate`.
:mod:`collectives.runtime` executes them.
"""
