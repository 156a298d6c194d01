"""A task's process tree dies with its worker: a tiny guard between the worker and each program.

    worker ──lifeline pipe──> guard (own session, child subreaper) ──> the task's program ──> …

The worker starts `python guard.py …` instead of the program. The guard starts the program in its
own session and process group, and is a child subreaper (PR_SET_CHILD_SUBREAPER), so every
descendant — even one that double-forks or calls setsid — stays in its tree. It watches two things:

- the lifeline, a pipe whose other end only the worker holds: end of file means the worker died
  (kill -9, out of memory); "kill" means the worker wants the run stopped;
- the lease: the worker's heartbeat renews it ("renew <monotonic time>") after each successful
  write of the task's heartbeat. A worker that is alive but cannot reach the database (or is
  frozen) stops renewing, and the guard stops the run before the liveness check may declare the
  task lost and a retry may start it again: never two live runs of one task.

Either way every process of the tree gets SIGKILL. The guard reports back on a status pipe:
"started <pid>", "error <kind> <message>" when the program cannot start, "exit <code>" when it ends.
This file imports only the standard library: it runs as `python -I -S guard.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 50


# --- the worker's side ---------------------------------------------------------------------------


class Lease:
    """The run's right to go on, renewed by the task's heartbeat and held by every guard of the run."""

    def __init__(self, seconds: float | None, since: float | None = None):
        self.seconds = seconds  # None: no lease, the guards only watch for the worker's death
        self.since = time.monotonic() if since is None else since
        self.revoked = False
        self._lines: set[int] = set()
        self._lock = threading.Lock()

    def deadline(self) -> float:
        return self.since + self.seconds if self.seconds else 0.0

    def attach(self, fd: int) -> None:
        with self._lock:
            self._lines.add(fd)
            if self.revoked:
                _tell(fd, "kill")

    def detach(self, fd: int) -> None:
        with self._lock:
            self._lines.discard(fd)

    def renew(self, since: float) -> None:
        """The heartbeat was written; `since` is when the write began (time.monotonic())."""
        with self._lock:
            self.since = max(self.since, since)
            for fd in self._lines:
                _tell(fd, f"renew {self.since!r}")

    def revoke(self) -> None:
        """The task is no longer ours (failed as lost, completed elsewhere): stop its run now."""
        with self._lock:
            self.revoked = True
            for fd in self._lines:
                _tell(fd, "kill")


def _tell(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):  # the guard is gone already
        os.write(fd, (line + "\n").encode())


def guard_argv(argv: list[str], lifeline: int, status: int, lease: Lease | None) -> list[str]:
    seconds = lease.seconds if lease and lease.seconds else 0
    deadline = lease.deadline() if lease and lease.seconds else 0
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(lifeline), str(status),
            repr(float(seconds)), repr(float(deadline)), "--", *argv]


# --- the guard's side ----------------------------------------------------------------------------


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _children_of(pid: int) -> list[int]:
    """Every living descendant of pid (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree() -> None:
    """SIGKILL every descendant until none is left (a fork in between is caught by the next round)."""
    me = os.getpid()
    for _ in range(KILL_ROUNDS):
        pids = _children_of(me)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        time.sleep(0.01)


def _reap() -> dict[int, int]:
    ended = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = os.waitstatus_to_exitcode(status)


def _start(argv: list[str], status: int) -> int:
    """Fork and exec the program (it dies with the guard); `subprocess` is not imported for this:
    importing it was a quarter of the guard's start-up, paid by every task that runs a program."""
    failed_r, failed_w = os.pipe()  # close-on-exec: end of file without a word means exec succeeded
    guard = os.getpid()
    pid = os.fork()
    if pid == 0:
        _exec(argv, failed_w, guard)
    os.close(failed_w)
    with os.fdopen(failed_r, "rb") as failed:
        error = failed.read()
    if not error:
        os.write(status, f"started {pid}\n".encode())
        return pid
    os.waitpid(pid, 0)
    number = int(error)
    if number == errno.ENOENT:
        os.write(status, b"error notfound\n")
    elif number in (errno.EACCES, errno.EPERM):
        os.write(status, b"error notexecutable\n")
    else:
        os.write(status, f"error oserror {os.strerror(number)}\n".encode())
    os._exit(127)


def _exec(argv: list[str], failed: int, guard: int) -> None:
    """In the child: die with the guard, default SIGPIPE and SIGXFSZ (as subprocess does), exec."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guard:  # the guard died before the line above: follow it
            os._exit(127)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(failed, str(exc.errno or errno.ENOEXEC).encode())
    finally:
        os._exit(127)


def _die_killed() -> None:
    """End like the tree did, so that the worker reads "killed by signal SIGKILL"."""
    os.kill(os.getpid(), signal.SIGKILL)


def main(args: list[str]) -> None:
    lifeline, status = int(args[0]), int(args[1])
    lease, deadline = float(args[2]), float(args[3])
    argv = args[args.index("--") + 1:]
    os.set_inheritable(lifeline, False)
    os.set_inheritable(status, False)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # The worker signals the whole group on a timeout; the program decides what SIGTERM means, the
    # guard stays to the end (handlers, unlike SIG_IGN, do not pass on to the program through exec).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    program = _start(argv, status)
    _watch(program, lifeline, status, wake_r, lease, deadline)


def _watch(program: int, lifeline: int, status: int, wake: int, lease: float, deadline: float) -> None:
    buffer = b""
    running = True
    while True:
        wait = max(0.0, deadline - time.monotonic()) if lease else None
        if wait == 0.0:
            os.write(1, b"[cloudseam] the worker stopped renewing this task's lease; stopping the task\n")
            _stop()
        readable, _, _ = select.select([lifeline, wake], [], [], wait)
        if wake in readable:
            with contextlib.suppress(OSError):
                os.read(wake, 4096)
        ended = _reap()
        if running and program in ended:
            running = False
            os.write(status, f"exit {ended[program]}\n".encode())
        if not running and not _children_of(os.getpid()):
            os._exit(0)
        if lifeline in readable:
            buffer += os.read(lifeline, 4096) or b"kill\n"  # end of file: the worker died
            *lines, buffer = buffer.split(b"\n")
            deadline = _obey(lines, deadline, lease)


def _obey(lines: list[bytes], deadline: float, lease: float) -> float:
    """Apply the worker's words: "kill" stops everything, "renew <since>" moves the deadline."""
    for line in lines:
        if line == b"kill":
            _stop()
        if line.startswith(b"renew "):
            deadline = max(deadline, float(line.split()[1]) + lease)
    return deadline


def _stop() -> None:
    _kill_tree()
    _die_killed()


if __name__ == "__main__":
    main(sys.argv[1:])
