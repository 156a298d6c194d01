"""API tokens: created once and shown once, stored as a SHA-256 hash, checked on every request.

`issue_token` and `revoke_tokens` are the one door for changing tokens: the admin, "My tokens" and
`create_token` all call them, so every creation and revocation writes its admin log entry.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from cloudseam_site import prepared_sql
from cloudseam_site.accounts.models import (
    ROLE_ADMIN,
    ROLE_OPERATOR,
    ROLE_VIEWER,
    ROLES,
    ApiToken,
    MachineAccess,
    hash_token,
)
from cloudseam_site.accounts.roles import RANK, user_role
from cloudseam_site.prepared_sql import TEXT

log = logging.getLogger("cloudseam.audit")

TOKEN_PREFIX = "cs_"


class RoleRefused(Exception):
    """`ensure_user_with_role` would raise an existing user's role without being told to promote."""


def _new_token(user, name: str, role: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Returns the row and the raw token; the raw token is not kept anywhere."""
    if role not in dict(ROLES):
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(dict(ROLES))}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, role=role, key_hash=hash_token(raw), prefix=raw[:10], expires_at=expires_at
    )
    return token, raw


def token_status(token: ApiToken, now: datetime | None = None) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or timezone.now()):
        return "expired"
    return "active"


@transaction.atomic
def issue_token(by, user, name: str, role: str, expires_at: datetime | None = None,
                machines=(), via: str = "") -> tuple[ApiToken, str]:
    """Create a token for `user` on behalf of `by`; the raw token is returned once and never stored.

    `by` is None from the command line: the log entry is then written under the token's user, and
    `via` says where it came from.
    """
    token, raw = _new_token(user, name, role, expires_at)
    token.machines.set(machines)
    expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires"
    if machines:
        expiry += f"; limited to machines {', '.join(m.name for m in machines)}"
    where = f" ({via})" if via else ""
    LogEntry.objects.log_actions(
        user_id=(by or user).pk,
        queryset=[token],
        action_flag=ADDITION,
        change_message=f"Created API token {name!r} for {user.get_username()} with role {role}; {expiry}{where}.",
    )
    creator = by.get_username() if by is not None else via or "unknown"
    log.info("token %s (%s…) for %s created by %s", name, token.prefix, user.get_username(), creator)
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


def find_token(raw: str) -> ApiToken | None:
    """The live token for a raw value, or None if unknown, revoked or expired.

    Every API request asks this, then its user's role and machine scope: one statement, built once
    per connection (cloudseam_site.prepared_sql), answers all three for the usual token; only a
    user or token limited to some machines costs the queries that name them (roles.machine_scope).
    """
    if not raw or len(raw) > 200:
        return None
    token = _token_with_user(hash_token(raw))
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


_TOKEN_FIELDS = [f.attname for f in ApiToken._meta.concrete_fields]
_ROLE_ORDER = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER)


def _token_query() -> QuerySet:
    user_fields = [f.attname for f in get_user_model()._meta.concrete_fields]
    in_group = {role: Exists(Group.objects.filter(user=OuterRef("user_id"), name=role)) for role in _ROLE_ORDER}
    return (
        ApiToken.objects.filter(key_hash=TEXT[0])
        .annotate(**{f"_in_{role}": exists for role, exists in in_group.items()},
                  _user_limited=Exists(MachineAccess.objects.filter(user=OuterRef("user_id"))),
                  _token_limited=Exists(ApiToken.machines.through.objects.filter(apitoken_id=OuterRef("pk"))))
        .values_list(*_TOKEN_FIELDS, *(f"user__{f}" for f in user_fields),
                     *(f"_in_{role}" for role in _ROLE_ORDER), "_user_limited", "_token_limited")[:1]
    )


def _token_with_user(key_hash: str) -> ApiToken | None:
    rows = prepared_sql.select("api-token", _token_query, TEXT[:1], key_hash)
    if not rows:
        return None
    row = rows[0]
    user_model = get_user_model()
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    split = len(_TOKEN_FIELDS) + len(user_fields)
    token = ApiToken.from_db(prepared_sql.DB, _TOKEN_FIELDS, row[:len(_TOKEN_FIELDS)])
    user = user_model.from_db(prepared_sql.DB, user_fields, row[len(_TOKEN_FIELDS):split])
    *groups, user_limited, token_limited = row[split:]
    user._cloudseam_role = next((role for role, member in zip(_ROLE_ORDER, groups, strict=True) if member), None)
    ApiToken.user.field.set_cached_value(token, user)
    token.limited = (bool(user_limited), bool(token_limited))  # read by roles.machine_scope
    return token


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, raw = value.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return raw.strip()


@transaction.atomic
def ensure_user_with_role(username: str, role: str, promote: bool = False):
    """The user for `create_token`: created without a usable password if it does not exist.

    A new user, or one without a role yet, is given `role`. A user who has a role keeps it: asking for
    no more than it (a viewer token for an admin) changes nothing, asking for more (an admin token for
    a viewer) raises RoleRefused naming the current role, unless `promote` is given.
    """
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    current = user_role(user)
    if current is not None and RANK[role] <= RANK[current]:
        return user
    if current is not None and not promote:
        raise RoleRefused(
            f"user {username} has the {current} role, lower than {role}; pass --promote to give them the "
            f"{role} role, or ask for a token with --role {current}"
        )
    user.groups.add(Group.objects.get(name=role))
    if current is not None:
        log.info("create_token promoted %s from %s to %s", username, current, role)
    return user
