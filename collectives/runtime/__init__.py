"""Layer 2: the runtime that executes the schedules.

:mod:`.api` checks and prepares a call (:mod:`.buffers`, :mod:`.communicator`
and its check mode), :mod:`.registry` maps an algorithm's name to its
schedule, :mod:`.engine` runs the rounds as ``Isend``/``Irecv`` pairs and
reduces with :mod:`.reduce_ops`, :mod:`.auto` picks an algorithm from the
measured profile, :mod:`.pending` runs an all-reduce in the background,
:mod:`.traffic` counts every message and :mod:`.mpi_native` calls the MPI
library's own collectives.
"""
