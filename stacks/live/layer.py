"""The channel layer CloudSeam runs: channels_redis with a bounded, waiting connection pool and one
reader per process for its consumers' messages.

redis-py's asyncio pool refuses a connection past its limit at once (MaxConnectionsError): when 200
watchers disconnect together, half of their `group_discard` calls failed and left stale members in
the group. A BlockingConnectionPool holds at most `max_connections` and makes the others wait up
to `pool_timeout` seconds for a free one instead.

channels_redis already sends a group message once per process (one Redis entry naming all of the
process's member channels), but every consumer's `receive` then races for a lock with two fresh
tasks and an `asyncio.wait` per message: with 200 watchers each update cost 200 such rounds, and the
web process spent more time there than sending frames. Here one waiting consumer at a time reads
the process's messages off Redis and puts each into the queue of every local channel it names; the
others wait on a plain `queue.get()`. Same Redis keys, group membership, expiry and capacity (per
channel, oldest dropped first) as channels_redis, and as there the reading happens inside a
consumer's own `receive`, so nothing is left running when the consumers are gone.
"""

from __future__ import annotations

import asyncio

from channels_redis.core import BoundedQueue, RedisChannelLayer
from redis import asyncio as aioredis

MAX_CONNECTIONS = 50
POOL_TIMEOUT = 20


_READ = object()  # put in a waiting channel's queue: "nobody reads Redis now; you do"


class _Local:
    """One event loop's side of one process-local Redis key: its channels' queues and who reads."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue] = {}
        self.waiting: set[str] = set()  # channels inside receive(), waiting on their queue
        self.reading = False


class BoundedRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, pool_timeout: float = POOL_TIMEOUT, **kwargs):
        self.max_connections, self.pool_timeout = max_connections, pool_timeout
        super().__init__(*args, **kwargs)
        self._locals: dict[tuple[asyncio.AbstractEventLoop, str], _Local] = {}

    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )

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

        Whoever finds its queue empty and nobody reading reads Redis for everyone until a message
        for itself comes, then hands reading over to a channel still waiting. A consumer that goes
        (channels cancels its receive) leaves its messages in Redis, as with channels_redis.
        """
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        key = self.non_local_name(channel)
        local = self._local(key)
        queue = self._queue(local, channel)
        try:
            while True:
                if queue.empty() and not local.reading:
                    await self._read_for_all(local, key, queue)
                if queue.empty():
                    local.waiting.add(channel)
                    try:
                        item = await queue.get()
                    finally:
                        local.waiting.discard(channel)
                else:
                    item = queue.get_nowait()
                if item is not _READ:
                    return item
        except asyncio.CancelledError:  # the consumer is going
            local.queues.pop(channel, None)
            raise

    async def _read_for_all(self, local: _Local, key: str, mine: asyncio.Queue) -> None:
        local.reading = True
        try:
            while mine.empty():
                channels, message = await self.receive_single(key)
                for name in channels if isinstance(channels, list) else [channels]:
                    queue = local.queues.get(name)
                    if queue is not None:
                        queue.put_nowait(message)
        finally:
            local.reading = False
            self._hand_over(local)

    def _hand_over(self, local: _Local) -> None:
        """Wake one waiting channel to read Redis, if any waits; else the next receive() will."""
        for name in local.waiting:
            queue = local.queues.get(name)
            if queue is not None and queue.empty():
                queue.put_nowait(_READ)
                return

    def _local(self, key: str) -> _Local:
        loop = asyncio.get_running_loop()
        local = self._locals.get((loop, key))
        if local is None:
            self._locals = {k: v for k, v in self._locals.items() if not k[0].is_closed()}
            if any(name == key and other.is_running() and v.reading for (other, name), v in self._locals.items()):
                # Each would take the other's messages off Redis and drop them; channels_redis refuses too.
                raise RuntimeError("Two event loops are trying to receive() on one channel layer at once!")
            local = self._locals[(loop, key)] = _Local()
        return local
