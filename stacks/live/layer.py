"""The channel layer CloudSeam runs: channels_redis with a bounded, waiting connection pool.

redis-py's asyncio pool refuses a connection past its limit at once (MaxConnectionsError): when 200
watchers disconnect together, half of their `group_discard` calls failed and left stale members in
the group. A BlockingConnectionPool holds at most `max_connections` and makes the others wait up
to `pool_timeout` seconds for a free one instead.
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis

MAX_CONNECTIONS = 50
POOL_TIMEOUT = 20


class BoundedRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, pool_timeout: float = POOL_TIMEOUT, **kwargs):
        self.max_connections, self.pool_timeout = max_connections, pool_timeout
        super().__init__(*args, **kwargs)

    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        return aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )
