"""Publishing live updates (DESIGN §6.4) to the channel layer from synchronous code.

One event loop per process, kept in a daemon thread: `async_to_sync(group_send)` per message
opened a Redis connection each time (DESIGN §8), which cost twice as much end to end. A process
that forks (an RQ work-horse) gets a fresh loop because threads do not survive a fork.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

ALL_STACKS_GROUP = "stacks"
PUBLISH_TIMEOUT = 5.0


def stack_group(stack_key: str) -> str:
    """Group name for one stack's watchers; stack ids are already group-name safe."""
    return f"stack.{stack_key}"


class _Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="cloudseam-publisher", daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def send(self, messages: list[tuple[str, dict]]) -> None:
        """Send (group, message) pairs in order; a Redis outage is logged, never raised."""
        if not messages:
            return
        layer = get_channel_layer()
        if layer is None:
            return

        async def _send_all() -> None:
            for group, message in messages:
                await layer.group_send(group, message)

        future = asyncio.run_coroutine_threadsafe(_send_all(), self._ensure_loop())
        try:
            future.result(timeout=PUBLISH_TIMEOUT)
        except Exception:  # noqa: BLE001 - live updates are best effort; the database is the truth
            future.cancel()
            log.warning("could not publish a live update", exc_info=True)


_publisher = _Publisher()


def publish(messages: list[tuple[str, dict]]) -> None:
    _publisher.send(messages)


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
