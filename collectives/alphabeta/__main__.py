"""``python -m collectives.alphabeta``: see :mod:`collectives.alphabeta.command`."""

from .. import cli
from .command import main

if __name__ == "__main__":
    cli.run_main(main)
