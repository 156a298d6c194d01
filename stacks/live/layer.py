"""The channel layer CloudSeam runs: channels_redis with a bounded, waiting connection pool and one
reader task per process for its consumers' messages.

redis-py's asyncio pool refuses a connection past its limit at once (MaxConnectionsError): when 200
watchers disconnect together, half of their `group_discard` calls failed and left stale members in
the group. A BlockingConnectionPool holds at most `max_connections` and makes the others wait up
to `pool_timeout` seconds for a free one instead.

channels_redis already sends a group message once per process (one Redis entry naming all of the
process's member channels), but every consumer's `receive` then races for a lock with two fresh
tasks and an `asyncio.wait` per message: with 200 watchers each update cost 200 such rounds, and the
web process spent more time there than sending frames. Here one reader task per event loop reads
the process's messages off Redis and puts each into the queue of every local channel it names; the
consumers wait on a plain `queue.get()`. Same Redis keys, group membership, expiry and capacity (per
channel, oldest dropped first) as channels_redis.

On Python 3.11, `asyncio.wait_for` (which redis-py wraps around every send when a socket timeout is
set) drops a cancellation that lands just as the send completes; the task then went on to read, so
a consumer whose socket had closed kept reading Redis until the next message came, possibly never,
and its disconnect waited with it (issue #10's CI run hung there). So every connection here raises
such a dropped cancellation as soon as its send returns, and the reader is a task of its own: a
consumer waits only on its queue and leaves at once; the reader stops when no local channel is left.
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis.core import BoundedQueue, RedisChannelLayer
from redis import asyncio as aioredis

MAX_CONNECTIONS = 50
POOL_TIMEOUT = 20
READ_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0)  # seconds between tries of a failed read; then listeners fail

log = logging.getLogger(__name__)


class _Failure:
    """Put in every local queue when reading Redis fails: each listener raises it, as with channels_redis."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Local:
    """One event loop's side of one process-local Redis key: its channels' queues and their reader."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue] = {}
        self.reader: asyncio.Task | None = None


def _asked_to_stop() -> bool:
    """True in a task whose cancellation was requested and neither delivered-and-raised nor withdrawn."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _CancellationKeepingSend:
    """Mixed into the pool's connection class (module docstring: Python 3.11's `wait_for`)."""

    async def send_packed_command(self, command, check_health: bool = True) -> None:
        await super().send_packed_command(command, check_health)
        if _asked_to_stop():
            await self.disconnect(nowait=True)  # the reply will never be read: the connection is unusable
            raise asyncio.CancelledError


def _keeping_cancellation(connection_class: type) -> type:
    return type(f"CancellationKeeping{connection_class.__name__}", (_CancellationKeepingSend, connection_class), {})


class BoundedRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, pool_timeout: float = POOL_TIMEOUT, **kwargs):
        self.max_connections, self.pool_timeout = max_connections, pool_timeout
        super().__init__(*args, **kwargs)
        self._locals: dict[tuple[asyncio.AbstractEventLoop, str], _Local] = {}

    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        pool = aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )
        pool.connection_class = _keeping_cancellation(pool.connection_class)  # plain, TLS or unix socket
        return pool

    async def new_channel(self, prefix: str = "specific") -> str:
        """A process-local channel whose messages are kept from now on, as channels_redis keeps them."""
        channel = await super().new_channel(prefix)
        self._queue(self._local(self.non_local_name(channel)), channel)
        return channel

    def _queue(self, local: _Local, channel: str) -> asyncio.Queue:
        queue = local.queues.get(channel)
        if queue is None:
            queue = local.queues[channel] = BoundedQueue(self.get_capacity(channel))
        return queue

    async def receive(self, channel: str) -> dict:
        """A process-local channel's next message; other channels as channels_redis receives them.

        A consumer that goes (channels cancels its receive) leaves at once; what still comes for its
        channel is read and dropped, and its group memberships go with its disconnect (or expire).
        """
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        key = self.non_local_name(channel)
        local = self._local(key)
        queue = self._queue(local, channel)
        reader = local.reader
        if queue.empty() and (reader is None or reader.done() or reader.cancelling()):
            # None yet, or the last one ended (all consumers had gone, or Redis failed), or is ending.
            local.reader = asyncio.ensure_future(self._read_for_all(local, key))
        try:
            item = await queue.get()
        except asyncio.CancelledError:  # the consumer is going
            local.queues.pop(channel, None)
            if not local.queues and local.reader is not None:
                local.reader.cancel()
            raise
        if isinstance(item, _Failure):
            raise item.error
        return item

    async def _read_for_all(self, local: _Local, key: str) -> None:
        """Read for every local channel until none is left.

        A failed read is tried again (READ_RETRY_DELAYS): the messages wait in Redis meanwhile, so a
        blip costs a moment, not every watcher's connection. Only when Redis stays away does each
        listener get the error (as channels_redis would raise it), which closes the sockets; the
        browsers then reconnect and show that live updates are down.
        """
        failures = 0
        while local.queues and not _asked_to_stop():
            try:
                channels, message = await self.receive_single(key)
            except Exception as error:  # noqa: BLE001 - retried, then handed to every listener
                if failures == len(READ_RETRY_DELAYS):
                    log.error("live updates stopped: reading Redis failed %d times", failures + 1, exc_info=True)
                    for queue in local.queues.values():
                        queue.put_nowait(_Failure(error))
                    return
                if failures == 0:
                    log.warning("reading live updates from Redis failed; trying again", exc_info=True)
                await asyncio.sleep(READ_RETRY_DELAYS[failures])
                failures += 1
                continue
            if failures:
                log.warning("reading live updates from Redis works again after %d failures", failures)
                failures = 0
            for name in channels if isinstance(channels, list) else [channels]:
                queue = local.queues.get(name)
                if queue is not None:
                    queue.put_nowait(message)

    def _local(self, key: str) -> _Local:
        loop = asyncio.get_running_loop()
        local = self._locals.get((loop, key))
        if local is None:
            self._locals = {k: v for k, v in self._locals.items() if not k[0].is_closed()}
            if any(name == key and other.is_running() and v.reader is not None and not v.reader.done()
                   for (other, name), v in self._locals.items()):
                # Each would take the other's messages off Redis and drop them; channels_redis refuses too.
                raise RuntimeError("Two event loops are trying to receive() on one channel layer at once!")
            local = self._locals[(loop, key)] = _Local()
        return local
