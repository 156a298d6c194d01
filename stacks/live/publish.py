"""Publishing live updates (DESIGN §6.4) to the channel layer from synchronous code, without waiting.

A request (or a worker) hands its messages to one publisher thread per process and goes on: the
thread owns a persistent event loop (`async_to_sync(group_send)` per message opened a Redis
connection each time, DESIGN §8) and sends the messages in the order they were handed over. So the
cost of an event in the request does not grow with the number of watchers or with Redis latency.
The hand-over queue is bounded: when Redis is away and it fills up, the newest updates are dropped
(and counted, and logged) rather than memory growing — live updates are best effort, the database
is the truth, and every page re-reads it on (re)connect. The queue is drained at exit, so a command
like `send_event` still publishes before its process ends. A forked process (an RQ work-horse)
starts its own thread because threads do not survive a fork.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import queue
import threading
import time

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

ALL_STACKS_GROUP = "stacks"
PUBLISH_TIMEOUT = 5.0  # seconds one batch may take before it is given up
QUEUE_LIMIT = 10_000  # batches waiting for the publisher thread
FLUSH_AT_EXIT = 3.0  # seconds an exiting process waits for its last updates to go out


def stack_group(stack_key: str) -> str:
    """Group name for one stack's watchers; stack ids are already group-name safe."""
    return f"stack.{stack_key}"


class _Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue | None = None
        self.dropped = 0

    def _ensure_thread(self) -> queue.Queue:
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue = queue.Queue(maxsize=QUEUE_LIMIT)
                thread = threading.Thread(target=self._run, args=(self._queue,), name="cloudseam-publisher",
                                          daemon=True)
                thread.start()
                self._pid = os.getpid()
            return self._queue

    def send(self, messages: list[tuple[str, dict]]) -> None:
        """Hand (group, message) pairs to the publisher thread; never blocks, never raises."""
        if not messages or get_channel_layer() is None:
            return
        try:
            self._ensure_thread().put_nowait(messages)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("live updates are not getting out (Redis?); %d dropped so far", self.dropped)

    def flush(self, timeout: float = FLUSH_AT_EXIT) -> bool:
        """Wait until everything handed over so far was sent (or given up); False on timeout."""
        pending = self._queue if self._pid == os.getpid() else None
        deadline = time.monotonic() + timeout
        while pending is not None and pending.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self, pending: queue.Queue) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        layer = get_channel_layer()
        while True:
            batch = [pending.get()]
            while len(batch) < 100:  # whatever else is already waiting goes out in the same loop turn
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            try:
                loop.run_until_complete(asyncio.wait_for(_send_all(layer, batch), PUBLISH_TIMEOUT))
            except Exception:  # noqa: BLE001 - live updates are best effort; the database is the truth
                log.warning("could not publish a live update", exc_info=True)
            finally:
                for _ in batch:
                    pending.task_done()


async def _send_all(layer, batch: list[list[tuple[str, dict]]]) -> None:
    for messages in batch:
        for group, message in messages:
            await layer.group_send(group, framed(message))


def framed(message: dict) -> dict:
    """The layer message for `message`: its type and its WebSocket frame, JSON-encoded once here.

    Every watcher of a group gets the same frame; encoding it once per message instead of once per
    watcher (and carrying one string instead of nested dicts through the layer) keeps the cost of
    an update in the web process nearly flat in the number of watchers.
    """
    return {"type": message["type"], "frame": json.dumps(message, separators=(",", ":"))}


_publisher = _Publisher()


atexit.register(_publisher.flush)


def publish(messages: list[tuple[str, dict]]) -> None:
    _publisher.send(messages)


def flush(timeout: float = FLUSH_AT_EXIT) -> bool:
    """Wait for this process's live updates handed over so far; for tests, benchmarks and exits."""
    return _publisher.flush(timeout)


def stack_messages(snapshot: dict, event: dict | None = None) -> list[tuple[str, dict]]:
    """The messages that tell watchers of all stacks and of this stack about a change.

    The stack's own watchers also get the history entry that caused it; the dashboard does not
    need it, so its message stays small.
    """
    kind = "stack.removed" if snapshot.get("removed") else "stack.updated"
    message = {"type": kind, "stack": snapshot}
    detailed = {**message, "event": event} if event else message
    return [(ALL_STACKS_GROUP, message), (stack_group(snapshot["id"]), detailed)]


def publish_stack(snapshot: dict, event: dict | None = None) -> None:
    publish(stack_messages(snapshot, event))


def publish_output(stack_key: str, task_id: str, lines: list[str]) -> None:
    message = {"type": "task.output", "stack": stack_key, "task": task_id, "lines": lines}
    publish([(stack_group(stack_key), message)])


def publish_history(stack_key: str, event: dict) -> None:
    """A history entry that changed nothing (a rejected event), for the stack's own watchers."""
    publish([(stack_group(stack_key), {"type": "history.added", "stack": stack_key, "event": event})])
