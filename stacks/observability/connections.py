"""A Redis client for probes and scrapes, and how to name Redis or a database without its secrets.

The client has short timeouts of its own and no retries (the RQ and channel-layer clients wait much
longer), so a dead or frozen Redis makes a probe fail in about two seconds instead of hanging it.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_TIMEOUT = 2.0  # seconds, for connecting and for every answer

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def probe_redis() -> redis.Redis:
    """One short-timeout client per Redis URL per process (its connection pool is reused)."""
    url = settings.REDIS_URL
    with _lock:
        client = _clients.get(url)
        if client is None:
            # No retries: redis-py 8 retries three times by default, which would triple the wait.
            client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                          retry=Retry(NoBackoff(), 0))
            _clients[url] = client
        return client


def redis_label(url: str | None = None) -> str:
    """`127.0.0.1:6379/0` or the socket path: where Redis is, never its password."""
    parts = urlsplit(url or settings.REDIS_URL)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _secrets() -> list[str]:
    found = [urlsplit(settings.REDIS_URL).password]
    found += [db.get("PASSWORD") for db in settings.DATABASES.values()]
    return [s for s in found if s]


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, shortened, with any configured password blanked out."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text[:limit] or type(exc).__name__
