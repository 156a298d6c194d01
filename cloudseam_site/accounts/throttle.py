"""Login throttling: after a few failed logins for one account from one address, refuse for a while.

Counted per (username, client address) in Django's cache, in a fixed window that starts at the
first failure. With the default local-memory cache the count is per web process (CloudSeam's
`serve` runs one); with several web processes, point Django's cache at the shared Redis so they
count together. A locked account refuses even the right password until the window ends, otherwise
guessing would simply continue; other addresses are not affected, so an attacker cannot lock a
person out of their own machine.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

CACHE_PREFIX = "cloudseam:login-failures:"


def max_failures() -> int:
    return int(getattr(settings, "CLOUDSEAM_LOGIN_MAX_FAILURES", 5))


def window_seconds() -> int:
    return int(getattr(settings, "CLOUDSEAM_LOGIN_LOCKOUT_SECONDS", 15 * 60))


def client_ip(request: HttpRequest | None) -> str:
    """The peer address. X-Forwarded-For is not trusted: any client can write it."""
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "")


def _key(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}\0{ip}".encode()).hexdigest()
    return CACHE_PREFIX + digest


def failures(username: str, ip: str) -> int:
    return int(cache.get(_key(username, ip), 0))


def is_locked(username: str, ip: str) -> bool:
    return failures(username, ip) >= max_failures()


def record_failure(username: str, ip: str) -> int:
    """Count one failure; returns the count in the current window."""
    key = _key(username, ip)
    cache.add(key, 0, timeout=window_seconds())  # starts the window; no-op when it is running
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.set(key, 1, timeout=window_seconds())
        return 1


def clear(username: str, ip: str) -> None:
    """A successful login forgets earlier mistakes."""
    cache.delete(_key(username, ip))


def locked_message() -> str:
    minutes = max(1, round(window_seconds() / 60))
    return (
        f"Too many failed logins for this account from your address. Wait {minutes} minutes and try again, "
        "or ask an admin to reset your password."
    )
