"""Failed logins, kept durably for admins, and where every other change is recorded.

Every change in CloudSeam is attributable and visible to admins, each where it already lives:

- events, retries, metadata edits, version moves: `StackEvent` rows (actor, source), written by
  `stacks.services`; admin "History".
- machine saves: `MachineVersion.created_by` and `source`; admin "Machine versions".
- token creation and revocation: the `ApiToken` row plus a `LogEntry` naming who did it, written by
  `cloudseam_site.accounts.tokens` for every door (admin, "My tokens", `create_token`).
- other admin edits (users, groups, metadata): Django's `LogEntry`; admin "Admin log".
- failed logins: `LoginFailure` rows and the `cloudseam.audit` log; the admin's "Failed logins"
  page.
"""

from __future__ import annotations

import logging

from cloudseam_site.accounts.models import LoginFailure

log = logging.getLogger("cloudseam.audit")

RECENT_FAILURES_SHOWN = 200


def login_failed(username: str, ip: str, *, locked: bool) -> None:
    """Record a failed login (durably, for admins) and log it."""
    username = username[:150]
    log.warning("failed login for %r from %s%s", username, ip or "unknown address", " (locked)" if locked else "")
    LoginFailure.objects.create(username=username, ip=(ip or "")[:64], locked=locked)


def recent_login_failures() -> list[dict]:
    """Newest first, as dicts with `at` (datetime), `username`, `ip` and `locked`."""
    rows = LoginFailure.objects.all()[:RECENT_FAILURES_SHOWN]
    return [{"at": r.created_at, "username": r.username, "ip": r.ip, "locked": r.locked} for r in rows]
