"""Run one program for an executor: argv list, its own process group, output streamed, hard timeout.

Why a runner of our own rather than `subprocess.run(timeout=...)`: that kills only the direct child,
so a deploy script's `terraform` or `sleep` would live on holding the output pipe (and the worker's
read) open. Here the program starts a new session, so its whole process tree shares one process group
that we can signal at once; output is read by a thread line by line and handed to the caller in
batches, which keeps the live stream lively without a call per line.
"""

from __future__ import annotations

import os
import queue
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

POLL_SECONDS = 0.1
FLUSH_SECONDS = 0.25  # at most ~4 live-output calls per second
MAX_BATCH_LINES = 1000  # a flood is thinned for the live stream; the tail is always exact
LINE_LIMIT = 8192  # longer lines arrive as several lines instead of growing memory without bound
GRACE_SECONDS = 3.0  # SIGTERM first, SIGKILL after this
DRAIN_SECONDS = 2.0  # after the program exits, how long background children may keep the pipe open


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
    """One started program: its reader thread and where its lines go."""

    def __init__(self, proc: subprocess.Popen, output: _Output):
        self.proc = proc
        self.output = output
        self.lines: queue.Queue = queue.Queue()
        self.eof = False
        self.reader = threading.Thread(target=_pump, args=(proc.stdout, self.lines), daemon=True)
        self.reader.start()

    def exited(self) -> bool:
        return self.proc.poll() is not None

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
        """SIGTERM the whole group, give it `grace` seconds to reach done(), then SIGKILL it."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        self.pump_until(done, grace)
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group id stays reserved while any member lives, so this cannot hit a stranger's group.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _start(argv: Sequence[str], env: dict[str, str] | None, cwd: str | None) -> subprocess.Popen:
    if not argv:
        raise ProcessStartError("the command is empty")
    if cwd is not None and not os.path.isdir(cwd):
        raise ProcessStartError(f"working directory does not exist: {cwd}")
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # If the worker is killed (kill -9, OOM), the task's command is told to stop too,
            # instead of running on unseen while the task is failed and retried elsewhere.
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, safe before exec
        )
    except FileNotFoundError:
        raise ProcessStartError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise ProcessStartError(f"command is not executable: {argv[0]}") from None
    except OSError as exc:
        raise ProcessStartError(f"could not start {argv[0]}: {exc.strerror or exc}") from None


def run_process(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    on_output: Callable[[list[str]], None] = _discard,
    tail_size: int = TAIL_LINES,
    grace: float = GRACE_SECONDS,
) -> ProcessOutcome:
    """Run argv (never through a shell) to completion or until `timeout` seconds.

    On timeout the whole process group gets SIGTERM, then SIGKILL after `grace`. When the program
    exits but background children still hold its output open, they are stopped the same way after
    DRAIN_SECONDS: the task is over, and a worker must not collect leftovers. Children that
    detached from the output (redirected, own session) are left alone.
    Raises ProcessStartError when the program cannot be started at all.
    """
    proc = _start(argv, env, cwd)
    run = _Run(proc, _Output(on_output, tail_size))
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
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        run.output.flush(force=True)
    if run.eof and proc.stdout is not None:
        proc.stdout.close()
    return ProcessOutcome(returncode=proc.returncode, timed_out=not finished, tail=list(run.output.tail))
