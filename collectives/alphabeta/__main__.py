"""``python -m collectives.alphabeta``: see :mod:`collectives.alphabeta.command`."""

from .. import cli
from .command import main

cli.run_main(main)
