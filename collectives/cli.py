"""What every command line shares: option types, outputs checked before the work, an agreed exit.

Every tool (``collectives.bench``, ``collectives.alphabeta``,
``training.sync_sgd``, ``training.roofline``, ``numa``) follows one rule for
bad input: each rank learns every rank's problem, rank 0 prints one line
``prog: reason``, and every rank exits with the same code.  Because all ranks
agree to stop, MPI is finalized, not aborted: under ``python -m mpi4py`` an
exception that escapes calls ``MPI_Abort``, which leaves MPICH's shared-memory
segment (1-3 MB per run) in ``/dev/shm``.

- :class:`ArgumentParser` reports a bad option (and prints ``--help``) on
  rank 0 only and raises :class:`AgreedExit` (every rank parses the same command line, so every rank
  gets there alike, before any message is sent).
- :func:`agree_or_exit` gathers each rank's error and raises
  :class:`AgreedExit` on every rank if any has one.
- :func:`check_outputs` opens (or creates, then removes) each output file on
  the rank that will write it, before the work starts, so an unwritable path
  costs nothing.
- :func:`run_main` is the ``__main__`` entry: it runs ``main`` and, on an
  :class:`AgreedExit`, finalizes MPI before exiting with its code.

:class:`AgreedExit` is a :class:`SystemExit`, so code that calls a tool's
``main`` in process (the tests) sees an ordinary ``SystemExit`` and MPI stays
initialized.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable, NoReturn

__all__ = [
    "AgreedExit",
    "ArgumentParser",
    "agree_or_exit",
    "check_outputs",
    "writable",
    "run_main",
    "parse_size",
    "size_arg",
    "size_list",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "positive_seconds",
    "int_list",
]


class AgreedExit(SystemExit):
    """Every rank exits with this code, having agreed to (so MPI may be finalized)."""


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank() if MPI.Is_initialized() and not MPI.Is_finalized() else 0


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose messages (usage errors, ``--help``) come from rank 0 only,
    and whose exits are :class:`AgreedExit`."""

    def _print_message(self, message, file=None):
        if _rank() == 0:
            super()._print_message(message, file)

    def exit(self, status=0, message=None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise AgreedExit(status)


def agree_or_exit(comm, error: str | None, prog: str, code: int = 2) -> None:
    """Raise :class:`AgreedExit` ``(code)`` on every rank if any rank has an ``error``.

    Collective over ``comm``.  Rank 0 prints ``prog: error`` for the first
    rank (in rank order) that has one, so one line says why.
    """
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        if comm.Get_rank() == 0:
            print(f"{prog}: {errors[0]}", file=sys.stderr, flush=True)
        raise AgreedExit(code)


def writable(path: str, *, parents: bool = False) -> str | None:
    """Why ``path`` cannot be written as an output file, or None if it can.

    An existing file is opened for appending (its contents stay); a new one
    is created and removed again.  ``parents``: create missing parent
    directories (as a checkpoint does) instead of reporting them.
    """
    if os.path.isdir(path):
        return f"{path} is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    try:
        if parents:
            os.makedirs(parent, exist_ok=True)
        if os.path.exists(path):
            with open(path, "ab"):
                pass
        else:
            with open(path, "xb"):
                pass
            os.unlink(path)
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return None


def check_outputs(comm, outputs: dict[str, str | None], prog: str, *, writer: int = 0,
                  parents: bool = False) -> None:
    """Check every output before the work starts; :class:`AgreedExit` (2) on every rank if one fails.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Collective over it.
    outputs : dict
        Option name (``"--json"``) -> path, or None where the option is unset.
    prog : str
        The tool's name, for the message.
    writer : int
        The rank that will write the files (only it opens them).
    parents : bool
        Create missing parent directories (see :func:`writable`).
    """
    error = None
    if comm.Get_rank() == writer:
        for option, path in outputs.items():
            if path is not None:
                why = writable(path, parents=parents)
                if why:
                    error = f"{option} {why}"
                    break
    agree_or_exit(comm, error, prog)


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a tool's ``main()`` as a program: on :class:`AgreedExit`, finalize MPI, then exit.

    Any other exception propagates, and ``python -m mpi4py`` aborts the job
    (a rank that fails alone must not leave the others waiting).
    """
    try:
        code = main()
    except AgreedExit as e:
        from mpi4py import MPI

        if MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.Finalize()
        code = e.code
    sys.exit(code)


# -- option types: each says what it wants, with the unit -------------------------


def parse_size(text: str) -> int:
    """``"64M"`` -> 67108864; accepts K, M, G suffixes (powers of 1024) and a trailing B."""
    text = text.strip().upper().rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    value = float(text[:-1] if scale > 1 else text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite size: {text!r}")
    return int(value * scale)


def size_arg(text: str) -> int:
    """An argparse type: a size in bytes of at least 1 (``4``, ``1K``, ``64M``)."""
    try:
        value = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in bytes such as 4, 1K or 64M, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def size_list(text: str) -> list[int]:
    """An argparse type: comma-separated sizes in bytes, each at least 1 (``"64K,1M"``)."""
    values = [size_arg(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes in bytes such as 64K,1M, got {text!r}")
    return values


def _number(kind, text: str, low, inclusive: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    if value < low or (value == low and not inclusive):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _number(int, text, 1, True, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _number(int, text, 0, True, "an integer >= 0")


def positive_float(text: str) -> float:
    """An argparse type: a finite number greater than 0."""
    return _number(float, text, 0.0, False, "a finite number > 0")


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    return _number(float, text, 0.0, True, "a finite number >= 0")


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds greater than 0."""
    return _number(float, text, 0.0, False, "a finite number of seconds > 0")


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers of at least 1 (``"2,4,8"``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values
