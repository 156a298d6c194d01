"""The audit trail for changes that are not stack events: tokens and failed logins.

Every change in CloudSeam is attributable and visible to admins, each where it already lives:

- events, retries, metadata edits, version moves: `StackEvent` rows (actor, source), written by
  `stacks.services`; admin "History".
- machine saves: `MachineVersion.created_by` and `source`; admin "Machine versions".
- token creation and revocation: the `ApiToken` row plus a `LogEntry` naming who did it; admin
  "API tokens" and "Admin log".
- other admin edits (users, groups, metadata): Django's `LogEntry`; admin "Admin log".
- failed logins: `LoginFailure` rows and the `cloudseam.audit` log; the admin's "Failed logins"
  page.

Token changes go through the two functions below (from the admin and the "My tokens" page alike),
so neither door can forget the log entry.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from stacks.models import ApiToken, LoginFailure
from stacks.tokens import create_token

log = logging.getLogger("cloudseam.audit")

RECENT_FAILURES_SHOWN = 200


def token_status(token: ApiToken, now: datetime | None = None) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or timezone.now()):
        return "expired"
    return "active"


@transaction.atomic
def issue_token(by, user, name: str, role: str, expires_at: datetime | None,
                machines=()) -> tuple[ApiToken, str]:
    """Create a token for `user` on behalf of `by`; the raw token is returned once and never stored."""
    token, raw = create_token(user, name, role, expires_at)
    token.machines.set(machines)
    expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires"
    if machines:
        expiry += f"; limited to machines {', '.join(m.name for m in machines)}"
    LogEntry.objects.log_actions(
        user_id=by.pk,
        queryset=[token],
        action_flag=ADDITION,
        change_message=f"Created API token {name!r} for {user.get_username()} with role {role}; {expiry}.",
    )
    log.info("token %s (%s…) for %s created by %s", name, token.prefix, user.get_username(), by.get_username())
    return token, raw


@transaction.atomic
def revoke_tokens(by, tokens: QuerySet[ApiToken]) -> list[ApiToken]:
    """Revoke the live tokens among `tokens`; returns those this call revoked.

    A conditional update, so two admins revoking at once record one revocation, not two.
    """
    now = timezone.now()
    revoked = []
    for token in tokens.select_related("user"):
        if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now) == 1:
            token.revoked_at = now
            revoked.append(token)
    if revoked:
        LogEntry.objects.log_actions(
            user_id=by.pk, queryset=revoked, action_flag=CHANGE, change_message="Revoked the API token."
        )
        for token in revoked:
            log.info("token %s (%s…) of %s revoked by %s", token.name, token.prefix, token.user.get_username(),
                     by.get_username())
    return revoked


def login_failed(username: str, ip: str, *, locked: bool) -> None:
    """Record a failed login (durably, for admins) and log it."""
    username = username[:150]
    log.warning("failed login for %r from %s%s", username, ip or "unknown address", " (locked)" if locked else "")
    LoginFailure.objects.create(username=username, ip=(ip or "")[:64], locked=locked)


def recent_login_failures() -> list[dict]:
    """Newest first, as dicts with `at` (datetime), `username`, `ip` and `locked`."""
    rows = LoginFailure.objects.all()[:RECENT_FAILURES_SHOWN]
    return [{"at": r.created_at, "username": r.username, "ip": r.ip, "locked": r.locked} for r in rows]
