"""The periodic expiry check every worker runs (from its liveness loop): see `stacks.lifetimes`.

Safe with any number of workers: a conditional UPDATE of `Stack.expiry_fired` claims an expiry (the
row count says who won), and the message id `expire-<record>-<expiry timestamp>` makes a repeat
harmless through `handle_event`'s idempotency anyway. Built from single steps (`expire_stack`)
that each handle one stack.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from machines_app.models import MachineVersion
from stacks import services
from stacks.lifetimes import EXPIRES_AT, TTL, expiry_of
from stacks.models import Stack

log = logging.getLogger(__name__)

ACTOR, SOURCE = "lifetime", "system"
CHECK_LIMIT = 500  # stacks sent their expiry event per round; the next round takes the rest


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
