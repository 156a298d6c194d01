"""Who may do what: API tokens, failed logins and per-user machine limits.

The tables keep the names they had when these models lived in `stacks` (`db_table`), so moving the
app changed no row. Machines are named by string: accounts imports nothing from the other apps.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN = "viewer", "operator", "admin"
ROLES = [(ROLE_VIEWER, "viewer"), (ROLE_OPERATOR, "operator"), (ROLE_ADMIN, "admin")]


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=ROLES, default=ROLE_VIEWER)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    machines = models.ManyToManyField(
        "machines_app.Machine", blank=True, related_name="+",
        help_text="Limit this token to changing stacks of these machines; empty: whatever its user may change.",
    )
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "stacks_apitoken"
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class LoginFailure(models.Model):
    """A failed login attempt, kept so admins can see who was refused and whether it was locked out."""

    username = models.CharField(max_length=150, db_index=True)
    ip = models.CharField(max_length=64, blank=True)
    locked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "stacks_loginfailure"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip or 'unknown address'}"


class MachineAccess(models.Model):
    """Limits the machines whose stacks a user may change (e.g. operators of qa-env only).

    A user without one may change stacks of every machine their role allows; reading is never limited.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="machine_access")
    machines = models.ManyToManyField("machines_app.Machine", blank=True, related_name="+")

    class Meta:
        db_table = "stacks_machineaccess"
        verbose_name = "machine access"
        verbose_name_plural = "machine access"

    def __str__(self) -> str:
        return f"{self.user} may change: {', '.join(m.name for m in self.machines.all()) or 'no machine'}"
