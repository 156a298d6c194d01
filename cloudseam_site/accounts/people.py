"""People and roles: what the People page (/people/) does, each change written to Django's LogEntry.

One role per person: the groups `viewer`, `operator` and `admin`; setting a role replaces the
others. A person's machine limits are their `MachineAccess` row (none: every machine their role
allows). Tokens are revoked through `tokens.revoke_tokens`, the one door for tokens. An admin never
deactivates or demotes themself here (another admin must), so nobody locks the last admin out by a
slip of the mouse; superusers are admins whatever their groups say, so their role is not changed here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from cloudseam_site.accounts import tokens
from cloudseam_site.accounts.models import ROLES, ApiToken, MachineAccess
from cloudseam_site.accounts.roles import user_role

log = logging.getLogger("cloudseam.audit")

ROLE_NAMES = tuple(name for name, _label in ROLES)


class Refused(Exception):
    """A change the People page will not make; the message says why, as a sentence."""


@dataclass(frozen=True)
class Person:
    user: object
    role: str | None
    machines: list[str] | None  # None: not limited
    tokens: int  # active (not revoked) tokens


def machine_model():
    """The Machine model, reached through MachineAccess (accounts imports no other app of ours)."""
    return MachineAccess._meta.get_field("machines").related_model


def people() -> list[Person]:
    """Everybody, with role, machine limits and active-token count, in a constant number of queries."""
    users = (
        get_user_model().objects.order_by("username")
        .annotate(live_tokens=Count("api_tokens", filter=Q(api_tokens__revoked_at__isnull=True)))
        .prefetch_related("groups", "machine_access__machines")
    )
    rows = []
    for user in users:
        names = {g.name for g in user.groups.all()}
        user._cloudseam_role = next((r for r in reversed(ROLE_NAMES) if r in names), None)
        rows.append(Person(user, user_role(user) if user.is_active else user._cloudseam_role,
                           _limits(user), user.live_tokens))
    return rows


def person(user) -> Person:
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
    return Person(user, user_role(user), _limits(user), live)


def _limits(user) -> list[str] | None:
    try:
        access = user.machine_access
    except MachineAccess.DoesNotExist:
        return None
    return sorted(m.name for m in access.machines.all())


def _log(by, user, flag: int, message: str) -> None:
    LogEntry.objects.log_actions(user_id=by.pk, queryset=[user], action_flag=flag, change_message=message)
    log.info("%s: %s (by %s)", user.get_username(), message, by.get_username())


def _check_role(role: str) -> None:
    if role not in ROLE_NAMES:
        raise Refused(f"{role!r} is not a role; roles: {', '.join(ROLE_NAMES)}")


def _set_groups(user, role: str) -> None:
    user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES).exclude(name=role))
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    user.__dict__.pop("_cloudseam_role", None)


@transaction.atomic
def invite(by, username: str, email: str, role: str):
    """A new person with `role` and no usable password; returns the user (see `set_password_path`)."""
    _check_role(role)
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise Refused(f"there is already a person called {username}; open their page to change them")
    user = user_model(username=username, email=email)
    user.set_unusable_password()
    user.save()
    _set_groups(user, role)
    _log(by, user, ADDITION, f"Added {username} with role {role} (no password yet: a set-password link was shown).")
    return user


def set_password_path(user) -> str:
    """A one-time link (Django's password reset token) for `user` to choose a password.

    It stops working once the password is set (or after PASSWORD_RESET_TIMEOUT, three days by default).
    """
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)})


@transaction.atomic
def set_role(by, user, role: str) -> bool:
    """Give `user` exactly `role`; False when they already had it."""
    _check_role(role)
    if user.pk == by.pk:
        raise Refused("you cannot change your own role; ask another admin")
    if user.is_superuser:
        raise Refused(f"{user.get_username()} is a superuser and always has the admin role; take that away in "
                      "the Django admin (Users) first")
    before = user_role(user)
    if before == role:
        return False
    _set_groups(user, role)
    _log(by, user, CHANGE, f"Changed role from {before or 'none'} to {role}.")
    return True


@transaction.atomic
def set_machines(by, user, machine_names: list[str] | None) -> None:
    """Limit `user` to changing stacks of these machines; None lifts the limit (every machine)."""
    before = _limits(user)
    if machine_names is None:
        MachineAccess.objects.filter(user=user).delete()
        message = "Lifted the machine limit: may change stacks of every machine their role allows."
    else:
        machines = list(machine_model().objects.filter(name__in=machine_names))
        access, _ = MachineAccess.objects.get_or_create(user=user)
        access.machines.set(machines)
        shown = ", ".join(sorted(m.name for m in machines)) or "no machine"
        message = f"Limited to changing stacks of: {shown}."
    user.__dict__.pop("_prefetched_objects_cache", None)
    if before != _limits(user):
        _log(by, user, CHANGE, message)


@transaction.atomic
def set_active(by, user, active: bool) -> bool:
    """Deactivate (they can no longer log in, and their tokens stop working) or reactivate `user`."""
    if user.pk == by.pk:
        raise Refused("you cannot deactivate yourself; ask another admin")
    if user.is_active == active:
        return False
    user.is_active = active
    user.save(update_fields=["is_active"])
    _log(by, user, CHANGE, "Reactivated." if active else "Deactivated: cannot log in; their tokens stop working.")
    return True


def revoke(by, user, token_ids: list[int]) -> list[ApiToken]:
    """Revoke some of `user`'s tokens through the one door for tokens (which logs each)."""
    return tokens.revoke_tokens(by, ApiToken.objects.filter(user=user, pk__in=token_ids))


def token_rows(user) -> list[tuple[ApiToken, str]]:
    now = timezone.now()
    return [(t, tokens.token_status(t, now)) for t in ApiToken.objects.filter(user=user)]
