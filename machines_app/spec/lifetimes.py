"""The optional top-level `lifetime` of a machine: when its stacks expire, and what they are sent then.

    lifetime: {ttl: 7d, idle: 2d, event: DESTROY}

`ttl` counts from the stack's creation, `idle` from its last change; durations are a whole number
and a unit: `30m`, `12h`, `7d`. `event` is a declared user event (default DESTROY). Pure Python.
"""

from __future__ import annotations

import re

from machines_app.spec.fields import Fields, describe, unknown_name
from machines_app.spec.model import LIFETIME_KEYS, Lifetime
from machines_app.spec.reader import quote

DEFAULT_EVENT = "DESTROY"
UNITS = {"m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
DURATION_HELP = "a whole number and a unit: m (minutes), h (hours) or d (days), e.g. 30m, 12h, 7d"


def parse_duration(text: object) -> int | None:
    """Seconds for a duration like `30m`, `12h` or `7d`; None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _DURATION.fullmatch(text.strip())
    return int(match.group(1)) * UNITS[match.group(2)] if match else None


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 604800 -> '7d', 5400 -> '90m'."""
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{max(1, seconds // 60)}m"


def _duration(fields: Fields, key: str) -> int | None:
    raw = fields.get(key, False)
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is None:
        fields.error(key, f"{quote(key)} must be {DURATION_HELP}; found {describe(raw)}")
    return seconds


def read_lifetime(top: Fields, events: tuple[str, ...]) -> Lifetime | None:
    """The `lifetime` mapping, checked: known keys, durations, at least one of them, a declared event."""
    raw = top.mapping_of("lifetime")
    if raw is None:
        return None
    fields = top.sub("lifetime", raw, "the lifetime")
    fields.unknown(LIFETIME_KEYS)
    ttl, idle = _duration(fields, "ttl"), _duration(fields, "idle")
    if raw.get("ttl") is None and raw.get("idle") is None:
        top.error("lifetime", f"'lifetime' needs 'ttl', 'idle' or both ({DURATION_HELP})")
    event = fields.text("event", default=DEFAULT_EVENT)
    if event is not None and event not in events:
        fields.error("event", unknown_name("event", event, events, "is not a declared event")
                     + "; the lifetime's event must be one of the machine's own events")
        return None
    if event is None or (ttl is None and idle is None):
        return None
    return Lifetime(ttl=ttl, idle=idle, event=event)
