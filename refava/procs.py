"""Child processes die with their parent: a ``kill -9`` of the CLI leaves no worker, helper or server behind.

On Linux a child asks the kernel for SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``); the parent's PID
is checked right after, in case it died before the request.  The signal comes when the *thread* that started the
child ends, so children are started from the main thread (or from threads that live as long as the process).
Elsewhere these helpers do nothing, and the children rely on their pipes closing.
"""
from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask for SIGKILL when this process's parent ends; exit at once if it has ended already.  Returns whether
    the platform supports it."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)                      # the parent died before the request: nobody is waiting for us
    return True


def preexec_die_with_parent(parent_pid: int | None = None):
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child die with this process."""
    parent = parent_pid if parent_pid is not None else os.getpid()

    def hook() -> None:
        die_with_parent(parent)
    return hook


def pool_initializer(parent_pid: int) -> None:
    """``ProcessPoolExecutor(initializer=pool_initializer, initargs=(os.getpid(),))``: workers die with the pool's
    owner (and so does the resource tracker, whose pipe closes when they are gone)."""
    die_with_parent(parent_pid)


def fault_point(name: str) -> None:
    """A testing hook for killing a worker mid-task, deterministically: with ``REFAVA_FAULT=NAME:MARKER`` in the
    environment, the first process to reach ``fault_point(NAME)`` creates the file MARKER and SIGKILLs itself (later
    ones, and retries, pass).  Unset, it costs one environment lookup."""
    spec = os.environ.get("REFAVA_FAULT")
    if not spec:
        return
    wanted, _, marker = spec.rpartition(":")
    if wanted != name or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
