"""Data-loader workers that die with the process that started them, even after ``kill -9``.

``paddle.io.DataLoader(..., worker_init_fn=worker_init())``: built in the trainer (or an evaluation), the
workers watch that process. No paddle import.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time
from typing import Any

_PR_SET_PDEATHSIG = 1


def watch_parent(worker_id: int, parent: int) -> None:
    """Data-loader ``worker_init_fn`` (bind ``parent=os.getpid()`` in the trainer with functools.partial):
    the worker dies with the trainer, even after ``kill -9``.

    On Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a
    thread polls the parent's pid. SIGINT is ignored: a Ctrl-C reaches the whole process group, and Paddle's
    worker loop returns on KeyboardInterrupt; ignoring it keeps the workers serving until the trainer stops
    at its step boundary.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the trainer died before prctl took effect
                os._exit(1)
            return
    threading.Thread(target=_poll_parent, args=(parent,), daemon=True).start()


def worker_init() -> Any:
    """``worker_init_fn`` for a DataLoader built in this process (see :func:`watch_parent`)."""
    return functools.partial(watch_parent, parent=os.getpid())


def _poll_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
