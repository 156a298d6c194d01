"""Stack lifetimes: when a stack expires, and the periodic check that sends it its expiry event.

Where an expiry comes from, strongest first:

- the stack's metadata `expiresAt` (an ISO 8601 time, e.g. `2025-07-01T12:00:00Z`; "Extend" sets it):
  when set, it alone decides;
- else the stack's metadata `ttl` (a duration such as `30m`, `12h`, `7d`, counted from its
  creation), or else its machine's `lifetime.ttl` (counted from creation), and its machine's
  `lifetime.idle` (counted from the stack's last change): the earlier of the two wins.

The event sent is the machine's `lifetime.event` (default DESTROY); a stack whose machine has no
lifetime but which has `ttl`/`expiresAt` metadata gets DESTROY if its machine declares it.

`expire_stacks` runs in every worker's liveness loop. Each expiry is sent once however many workers
run it: a conditional UPDATE of `Stack.expiry_fired` claims it (the row count says who won), and the
message id `expire-<record>-<expiry timestamp>` makes a repeat harmless through `handle_event`'s
idempotency anyway. A stack whose state does not accept the event yet (its teardown is running,
say) is left for a later round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cloudseam_site.api import iso
from machines_app.models import MachineVersion
from machines_app.spec.lifetimes import DEFAULT_EVENT, format_duration, parse_duration
from stacks import services  # the module: services imports snapshots, which imports this
from stacks.models import Stack

log = logging.getLogger(__name__)

ACTOR, SOURCE = "lifetime", "system"
EXPIRES_AT, TTL = "expiresAt", "ttl"
DEFAULT_EXTENSION = 86400  # a day, when neither the stack nor its machine names a ttl
CHECK_LIMIT = 500  # stacks sent their expiry event per round; the next round takes the rest


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


def extend(stack: Stack, *, actor, source: str) -> services.EventResult:
    """Set the stack's `expiresAt` one extension later, through `update_metadata` (recorded)."""
    until = extended_until(stack)
    if until is None:
        return services.EventResult(409, {"error": f"stack {stack.key} has no lifetime to extend; set ttl or "
                                                   "expiresAt in its metadata, or lifetime in its machine"},
                                    "rejected")
    return services.update_metadata(stack.key, {EXPIRES_AT: iso(until)}, actor=actor, source=source)


# --- the periodic check -------------------------------------------------------------------------


def _candidates(now: datetime):
    """Active stacks that may have expired: a cheap SQL pre-filter, refined by `expiry_of`."""
    maybe = Q(metadata__has_key=TTL) | Q(metadata__has_key=EXPIRES_AT)
    in_use = MachineVersion.objects.filter(pk__in=Stack.objects.active().values("machine_version"))
    for version in in_use:
        lifetime = version.spec.lifetime
        if lifetime is None:
            continue
        due = Q(pk__in=[])
        if lifetime.ttl:
            due |= Q(created_at__lte=now - timedelta(seconds=lifetime.ttl))
        if lifetime.idle:
            due |= Q(updated_at__lte=now - timedelta(seconds=lifetime.idle))
        maybe |= Q(machine_version=version) & due
    return Stack.objects.active().filter(maybe).select_related("machine", "machine_version").order_by("pk")


def expire_stack(stack: Stack, now: datetime | None = None) -> services.EventResult | None:
    """One step: send `stack` its expiry event if it is due, accepted now and not claimed; else None."""
    expiry = expiry_of(stack)
    if expiry is None or not expiry.expired(now):
        return None
    machine = stack.machine_version.spec
    if stack.state not in machine.states or expiry.event not in machine.accepted_events(stack.state):
        return None  # e.g. its teardown is running: a later round sends it once the state accepts it
    message_id = expiry.message_id(stack)
    claimed = (Stack.objects.filter(pk=stack.pk, removed_at__isnull=True).exclude(expiry_fired=message_id)
               .update(expiry_fired=message_id))
    if not claimed:
        return None  # another worker sent it (or is sending it)
    result = services.handle_event({"stackId": stack.key, "event": expiry.event, "id": message_id},
                                   actor=ACTOR, source=SOURCE)
    if result.ok:
        log.info("stack %s expired (%s): %s sent", stack.key, expiry.why, expiry.event)
    else:
        log.warning("stack %s expired (%s) but %s was refused: %s", stack.key, expiry.why, expiry.event,
                    result.body.get("error"))
    return result


def expire_stacks(now: datetime | None = None) -> int:
    """Send every expired stack its expiry event (once); returns how many this call sent."""
    now = now or timezone.now()
    sent = 0
    for stack in _candidates(now).iterator(chunk_size=500):
        if expire_stack(stack, now) is not None:
            sent += 1
            if sent >= CHECK_LIMIT:
                break
    return sent
