"""API tokens: created once and shown once, stored as a SHA-256 hash, checked on every request."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from stacks.models import ROLES, ApiToken, hash_token
from stacks.permissions import RANK, user_role

TOKEN_PREFIX = "cs_"
log = logging.getLogger("cloudseam.audit")


class RoleRefused(Exception):
    """`ensure_user_with_role` would raise an existing user's role without being told to promote."""


def create_token(user, name: str, role: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Returns the row and the raw token; the raw token is not kept anywhere."""
    if role not in dict(ROLES):
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(dict(ROLES))}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, role=role, key_hash=hash_token(raw), prefix=raw[:10], expires_at=expires_at
    )
    return token, raw


def find_token(raw: str) -> ApiToken | None:
    """The live token for a raw value, or None if unknown, revoked or expired."""
    if not raw or len(raw) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
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
