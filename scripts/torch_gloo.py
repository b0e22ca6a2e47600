"""What the PyTorch comparisons share: torch or one clear exit, gloo meeting on 127.0.0.1, our threads per rank."""

from __future__ import annotations

import os
import socket

from collectives import cli
from numa import threads

__all__ = ["need_torch", "init_gloo", "same_threads"]


def need_torch(comm, prog: str):
    """The torch module; without it, exit 2 on every rank with one message saying how to install it."""
    try:
        import torch
    except ImportError:
        torch = None
    cli.agree_or_exit(comm, None if torch else "needs torch: pip install -e '.[compare]' (torch==2.13.0, CPU)", prog)
    return torch


def init_gloo(comm) -> None:
    """``torch.distributed`` on gloo, its rank and size from ``comm``, meeting on a free port of 127.0.0.1 (once)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    port = None
    if comm.Get_rank() == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(comm.bcast(port))
    dist.init_process_group("gloo", rank=comm.Get_rank(), world_size=comm.Get_size())


def same_threads(comm, torch) -> int:
    """Give torch the threads per rank ours use (cores / ranks per node, or ``--threads``); return how many."""
    from collectives.runtime.communicator import library_comm

    library_comm(comm)  # sets our threads per rank
    n = threads.current()["numba"]
    torch.set_num_threads(n)
    return n
