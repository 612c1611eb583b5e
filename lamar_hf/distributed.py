"""Ending ``accelerate launch`` / ``torchrun`` runs cleanly."""

from __future__ import annotations

import logging
import os
import sys


def exit_distributed_run() -> None:
    """Leave a finished multi-process run with exit status 0; does nothing in a single process.

    Every process waits for the others, flushes its output and leaves with ``os._exit(0)``, skipping the C++
    destructors of interpreter exit: with gloo (CPU) process groups these sometimes abort a process after all its
    work is saved ("terminate called without an active exception", exit status -6), and destroying the group
    first can hang instead. Call it last, from a script's ``__main__`` block only.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
