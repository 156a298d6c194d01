"""Run one program for an executor: argv list, its own process group, output streamed, hard timeout.

Why a runner of our own rather than `subprocess.run(timeout=...)`: that kills only the direct child,
so a deploy script's `terraform` or `sleep` would live on holding the output pipe (and the worker's
read) open. Here the program starts a new session, so its whole process tree shares one process group
that we can signal at once; output is read by a thread line by line and handed to the caller in
batches, which keeps the live stream lively without a call per line.

The program runs under a guard (`guard.py`): should the worker die (kill -9) or stop renewing the
task's lease, the guard kills the whole tree, including what escaped the group; a program that traps
SIGTERM, or work done in a grandchild, cannot outlive its worker and run beside a retry.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import IO

from cloudseam_site.processes import die_with_parent
from stacks.runtime.executors.base import TAIL_LINES, send_output, timeout_error
from stacks.runtime.executors.guard import Lease, guard_argv

POLL_SECONDS = 0.1
FLUSH_SECONDS = 0.25  # at most ~4 live-output calls per second
MAX_BATCH_LINES = 1000  # a flood is thinned for the live stream; the tail is always exact
LINE_LIMIT = 8192  # longer lines arrive as several lines instead of growing memory without bound
GRACE_SECONDS = 3.0  # SIGTERM first, SIGKILL after this
DRAIN_SECONDS = 2.0  # after the program exits, how long background children may keep the pipe open
START_SECONDS = 30.0  # how long the guard may take to start the program


class ProcessStartError(Exception):
    """The program could not be started; str(exc) is a sentence meant for the task error."""


@dataclass
class ProcessOutcome:
    returncode: int | None
    timed_out: bool
    tail: list[str] = field(default_factory=list)

    def error(self, what: str, timeout: float | None) -> str | None:
        """None on success, else a sentence: the exit code (or signal) and the last lines."""
        if self.timed_out:
            return timeout_error(timeout)
        if self.returncode == 0:
            return None
        if self.returncode is not None and self.returncode < 0:
            message = f"{what} was killed by signal {_signal_name(-self.returncode)}"
        else:
            message = f"{what} exited with code {self.returncode}"
        last = [line for line in self.tail if line.strip()][-5:]
        return f"{message}: " + "\n".join(last) if last else message


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _discard(lines: list[str]) -> None:
    """Default sink when nobody watches the output live."""


class _Output:
    """Keeps the tail and batches lines for the live sink (at most one call per FLUSH_SECONDS)."""

    def __init__(self, sink: Callable[[list[str]], None], tail_size: int):
        self.sink = sink
        self.tail: deque[str] = deque(maxlen=tail_size)
        self.pending: deque[str] = deque(maxlen=MAX_BATCH_LINES)
        self.skipped = 0
        self.last_flush = time.monotonic()

    def add(self, line: str) -> None:
        self.tail.append(line)
        if len(self.pending) == MAX_BATCH_LINES:
            self.skipped += 1
        self.pending.append(line)

    def flush(self, force: bool = False) -> None:
        if not self.pending or (not force and time.monotonic() - self.last_flush < FLUSH_SECONDS):
            return
        lines = list(self.pending)
        if self.skipped:
            lines.insert(0, f"[{self.skipped} lines not shown live; see the output tail]")
        self.pending.clear()
        self.skipped = 0
        self.last_flush = time.monotonic()
        send_output(self.sink, lines)


def _pump(stream: IO[bytes], sink: queue.Queue) -> None:
    """Reader thread: one decoded line per queue item, then None at end of file."""
    try:
        for raw in iter(lambda: stream.readline(LINE_LIMIT), b""):
            sink.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    except (OSError, ValueError):
        pass  # the pipe was closed under us; end of output either way
    finally:
        sink.put(None)


class _Run:
    """One started program (behind its guard): its reader thread and where its lines go."""

    def __init__(self, started: _Started, output: _Output):
        self.proc = started.guard
        self.started = started
        self.output = output
        self.returncode: int | None = None
        self.lines: queue.Queue = queue.Queue()
        self.eof = False
        self.reader = threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True)
        self.reader.start()

    def exited(self) -> bool:
        """The program ended: the guard said so, or the guard itself is gone (killed with the group)."""
        if self.returncode is None:
            self.returncode = self.started.exit_code()
        if self.returncode is None and self.proc.poll() is not None:
            self.returncode = self.started.exit_code()
            if self.returncode is None:
                self.returncode = self.proc.returncode
        return self.returncode is not None

    def drained(self) -> bool:
        return self.eof

    def take(self, wait: float) -> None:
        """Move the lines that arrived into the output, waiting at most `wait` seconds."""
        if self.eof:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
            return
        with suppress(queue.Empty):
            item = self.lines.get(timeout=wait)
            while item is not None:
                self.output.add(item)
                item = self.lines.get_nowait()
            self.eof = True
        self.output.flush()

    def pump_until(self, done: Callable[[], bool], seconds: float | None) -> bool:
        """Keep reading until done() holds (True) or `seconds` pass (False); None = no limit."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not done():
            remaining = POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.take(min(remaining, POLL_SECONDS))
        return True

    def stop_group(self, done: Callable[[], bool], grace: float) -> None:
        """SIGTERM the whole group, give it `grace` seconds to reach done(), then SIGKILL the tree."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        self.pump_until(done, grace)
        self.started.kill_tree()
        self.exited()


class _Started:
    """The guard of one program, the pipes to it, and the lease it watches."""

    def __init__(self, guard: subprocess.Popen, lifeline: int, status: int, lease: Lease | None):
        self.guard, self.lifeline, self.status, self.lease = guard, lifeline, status, lease
        self.buffer = b""
        if lease is not None:
            lease.attach(lifeline)

    def first_line(self, argv0: str) -> None:
        """Wait for "started" (or the reason the program could not start)."""
        readable, _, _ = select.select([self.status], [], [], START_SECONDS)
        line = os.read(self.status, 4096) if readable else b""
        self.buffer = line.split(b"\n", 1)[1] if b"\n" in line else b""
        word, _, rest = line.split(b"\n", 1)[0].decode(errors="replace").partition(" ")
        if word == "started":
            os.set_blocking(self.status, False)
            return
        self.close(kill=True)
        if rest == "notfound":
            raise ProcessStartError(f"command not found: {argv0}")
        if rest == "notexecutable":
            raise ProcessStartError(f"command is not executable: {argv0}")
        reason = rest.partition(" ")[2] or "its process guard did not start"
        raise ProcessStartError(f"could not start {argv0}: {reason}")

    def exit_code(self) -> int | None:
        with suppress(BlockingIOError, OSError):
            self.buffer += os.read(self.status, 4096)
        for line in self.buffer.split(b"\n"):
            if line.startswith(b"exit "):
                return int(line.split()[1])
        return None

    def kill_tree(self) -> None:
        """Ask the guard to SIGKILL everything the program started, then make sure of the group."""
        with suppress(OSError):
            os.write(self.lifeline, b"kill\n")
        with suppress(subprocess.TimeoutExpired):
            self.guard.wait(timeout=2)
        _signal_group(self.guard.pid, signal.SIGKILL)
        self.guard.wait()

    def close(self, kill: bool = False) -> None:
        """The run is over: stop leftovers (processes that let go of the output) and close the pipes."""
        if kill or self.guard.poll() is None:
            self.kill_tree()
        if self.lease is not None:
            self.lease.detach(self.lifeline)
        for fd in (self.lifeline, self.status):
            with suppress(OSError):
                os.close(fd)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group id stays reserved while any member lives, so this cannot hit a stranger's group.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _start(argv: Sequence[str], env: dict[str, str] | None, cwd: str | None, lease: Lease | None) -> _Started:
    if not argv:
        raise ProcessStartError("the command is empty")
    if cwd is not None and not os.path.isdir(cwd):
        raise ProcessStartError(f"working directory does not exist: {cwd}")
    lifeline_r, lifeline_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        guard = subprocess.Popen(
            guard_argv(list(argv), lifeline_r, status_w, lease),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=(lifeline_r, status_w),
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, safe before exec
        )
    except OSError as exc:
        for fd in (lifeline_r, lifeline_w, status_r, status_w):
            os.close(fd)
        raise ProcessStartError(f"could not start {argv[0]}: {exc.strerror or exc}") from None
    os.close(lifeline_r)
    os.close(status_w)
    started = _Started(guard, lifeline_w, status_r, lease)
    started.first_line(str(argv[0]))
    return started


def run_process(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    on_output: Callable[[list[str]], None] = _discard,
    tail_size: int = TAIL_LINES,
    grace: float = GRACE_SECONDS,
    lease: Lease | None = None,
) -> ProcessOutcome:
    """Run argv (never through a shell) to completion or until `timeout` seconds.

    On timeout the whole process group gets SIGTERM, then SIGKILL after `grace`. When the program
    exits but background children still hold its output open, they are stopped the same way after
    DRAIN_SECONDS: the task is over, and a worker must not collect leftovers. Children that
    detached from the output (redirected, own session) are left alone.
    Processes that detached from the output are stopped when the run ends, and the whole tree is
    killed should the worker die or the `lease` lapse (see guard.py).
    Raises ProcessStartError when the program cannot be started at all.
    """
    started = _start(argv, env, cwd, lease)
    run = _Run(started, _Output(on_output, tail_size))
    try:
        finished = run.pump_until(run.exited, timeout)
        if not finished:
            run.stop_group(run.exited, grace)
        if not run.pump_until(run.drained, DRAIN_SECONDS):
            run.output.add("[cloudseam] stopping background processes that still hold the output open")
            run.stop_group(run.drained, grace)
            run.pump_until(run.drained, 1.0)
    except BaseException:
        # An RQ job timeout (or Ctrl-C) lands here: never leave the program running behind us.
        started.close(kill=True)
        raise
    finally:
        run.output.flush(force=True)
    started.close()
    if run.eof and started.guard.stdout is not None:
        started.guard.stdout.close()
    return ProcessOutcome(returncode=run.returncode, timed_out=not finished, tail=list(run.output.tail))
