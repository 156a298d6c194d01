"""Roles: viewer (read), operator (send events, retry, complete external tasks, edit metadata),
admin (also machines, users and tokens).

Roles are Django groups created by a migration; a superuser is an admin. A token carries its own
role and never grants more than its user has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from cloudseam_site.accounts.models import ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER

RANK = {None: 0, ROLE_VIEWER: 1, ROLE_OPERATOR: 2, ROLE_ADMIN: 3}


def user_role(user) -> str | None:
    """The highest role of a user, or None for anonymous or role-less users."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ROLE_ADMIN
    cached = getattr(user, "_cloudseam_role", "unset")
    if cached != "unset":
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r for r in (ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER) if r in names), None)
    user._cloudseam_role = role
    return role


def weaker(a: str | None, b: str | None) -> str | None:
    return a if RANK[a] <= RANK[b] else b


def request_role(request: HttpRequest) -> str | None:
    """The role behind a request: its token's (capped by the user's) or its session user's."""
    token = getattr(request, "api_token", None)
    role = user_role(request.user)
    if token is not None:
        return weaker(role, token.role)
    return role


def has_role(request: HttpRequest, needed: str) -> bool:
    return RANK[request_role(request)] >= RANK[needed]


def role_context(request: HttpRequest) -> dict:
    """Template context: who is looking and what they may do."""
    role = request_role(request) if hasattr(request, "user") else None
    return {
        "role": role,
        "can_operate": RANK[role] >= RANK[ROLE_OPERATOR],
        "can_admin": RANK[role] >= RANK[ROLE_ADMIN],
    }


def role_required(role: str) -> Callable:
    """Login first (anonymous users go to the login page), then the role: 403 page otherwise."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not has_role(request, role):
                raise PermissionDenied(f"this needs the {role} role")
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


@dataclass(frozen=True)
class Actor:
    """Who sends an event, and which machines' stacks they may change (None: any machine).

    `stacks.services.handle_event` checks the machine scope itself, so no door can forget it.
    """

    name: str
    machines: frozenset[str] | None = None

    def __str__(self) -> str:
        return self.name


def machine_scope(user, token=None) -> frozenset[str] | None:
    """The machines a user (through a token, if any) may change; None when not limited."""
    from cloudseam_site.accounts.models import MachineAccess

    if token is not None and getattr(token, "limited", None) == (False, False):
        return None  # found by tokens.find_token, which already asked whether anything limits it
    scope = None
    access = MachineAccess.objects.filter(user=user).first() if user is not None and user.is_authenticated else None
    if access is not None:
        scope = frozenset(access.machines.values_list("name", flat=True))
    if token is not None:
        token_machines = frozenset(token.machines.values_list("name", flat=True))
        if token_machines:
            scope = token_machines if scope is None else scope & token_machines
    return scope


def request_actor(request: HttpRequest) -> Actor:
    """The actor behind a request: its user (and token, named in the history) and machine scope."""
    token = getattr(request, "api_token", None)
    user = request.user
    if token is not None:
        name = f"{token.user.get_username()} (token {token.name})"
    else:
        name = user.get_username() if user.is_authenticated else "anonymous"
    return Actor(name=name, machines=machine_scope(user, token))
