"""Stack lifetimes: when a stack expires (the check that ends it is `stacks.runtime.expiry`).

Where an expiry comes from, strongest first:

- the stack's metadata `expiresAt` (an ISO 8601 time, e.g. `2025-07-01T12:00:00Z`; "Extend" sets it):
  when set, it alone decides;
- else the stack's metadata `ttl` (a duration such as `30m`, `12h`, `7d`, counted from its
  creation), or else its machine's `lifetime.ttl` (counted from creation), and its machine's
  `lifetime.idle` (counted from the stack's last change): the earlier of the two wins.

The event sent is the machine's `lifetime.event` (default DESTROY); a stack whose machine has no
lifetime but which has `ttl`/`expiresAt` metadata gets DESTROY if its machine declares it.

`stacks.runtime.expiry.expire_stacks` runs in every worker's liveness loop and sends each expiry
once; "Extend" on the stack page sets `expiresAt` to `extended_until` through `update_metadata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from machines_app.spec.lifetimes import DEFAULT_EVENT, format_duration, parse_duration
from stacks.models import Stack

EXPIRES_AT, TTL = "expiresAt", "ttl"
DEFAULT_EXTENSION = 86400  # a day, when neither the stack nor its machine names a ttl


@dataclass(frozen=True)
class Expiry:
    at: datetime
    event: str
    why: str  # "ttl 7d from creation", "expiresAt in metadata", "idle 2d"
    extend_by: int  # seconds the "Extend" button adds

    @property
    def extend_label(self) -> str:
        return format_duration(self.extend_by)

    def expired(self, now: datetime | None = None) -> bool:
        return self.at <= (now or timezone.now())

    def message_id(self, stack: Stack) -> str:
        return f"expire-{stack.pk}-{int(self.at.timestamp())}"


def _metadata_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def expiry_of(stack: Stack) -> Expiry | None:
    """When `stack` expires, or None when nothing gives it a lifetime (or no event could end it)."""
    machine = stack.machine_version.spec
    lifetime = machine.lifetime
    event = lifetime.event if lifetime else (DEFAULT_EVENT if DEFAULT_EVENT in machine.events else None)
    if event is None:
        return None
    meta_ttl = parse_duration(stack.metadata.get(TTL))
    ttl = meta_ttl or (lifetime.ttl if lifetime else None)
    extend_by = ttl or (lifetime.idle if lifetime else None) or DEFAULT_EXTENSION
    explicit = _metadata_time(stack.metadata.get(EXPIRES_AT))
    if explicit is not None:  # a person (or a pipeline) said when: that wins over ttl and idle
        return Expiry(at=explicit, event=event, why="expiresAt in metadata", extend_by=extend_by)
    candidates = []
    if ttl:
        where = "metadata" if meta_ttl else "machine"
        candidates.append((stack.created_at + timedelta(seconds=ttl), f"ttl {format_duration(ttl)} ({where})"))
    if lifetime and lifetime.idle:
        candidates.append((stack.updated_at + timedelta(seconds=lifetime.idle),
                           f"idle {format_duration(lifetime.idle)} (machine)"))
    if not candidates:
        return None
    at, why = min(candidates, key=lambda c: c[0])
    return Expiry(at=at, event=event, why=why, extend_by=extend_by)


def extended_until(stack: Stack, now: datetime | None = None) -> datetime | None:
    """Where "Extend" moves the expiry: its extension added to the later of now and the expiry."""
    expiry = expiry_of(stack)
    if expiry is None:
        return None
    now = now or timezone.now()
    return max(now, expiry.at) + timedelta(seconds=expiry.extend_by)
