"""Child processes that die with their parent, and stop cleanly when asked.

`serve` is a supervisor: Redis, Daphne and the workers are its children. On Linux each child asks
the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so even a `kill -9` of `serve`
leaves no orphan redis-server or worker behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def spawn(argv: Sequence[str], *, env: dict | None = None, log_file=None, pass_fds: Sequence[int] = (),
          move_fds: dict[int, int] | None = None) -> subprocess.Popen:
    """Start a child in its own process group (a terminal's Ctrl-C reaches only `serve`).

    `move_fds` {parent's descriptor: child's number} places inherited sockets where the child
    expects them; those numbers must be in `pass_fds` too.
    """
    moves = dict(move_fds or {})

    def prepare() -> None:
        die_with_parent()
        for source, target in moves.items():
            if source != target:
                os.dup2(source, target)  # inheritable: dup2 clears close-on-exec

    return subprocess.Popen(
        list(argv),
        env=env,
        pass_fds=tuple(pass_fds),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT if log_file is not None else None,
        start_new_session=True,
        preexec_fn=prepare,  # noqa: PLW1509 - only prctl and dup2, safe before exec
    )


def stop(children: Sequence[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM every child's group, wait up to `grace` seconds, then SIGKILL what is left."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait(timeout=5)
    for child in children:
        _signal_group(child, signal.SIGKILL)  # grandchildren that ignored SIGTERM


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
