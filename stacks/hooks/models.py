"""Inbound webhooks: who may call `/hooks/<name>` (and with which secret), and the deliveries received.

A delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `Idempotency-Key`) is stored with a unique
constraint per hook, so a replayed delivery is refused and never applied twice.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import models

from machines_app.models import Machine

GITHUB, GITLAB, GENERIC = "github", "gitlab", "generic"
SOURCES = [(GITHUB, "GitHub (pull_request)"), (GITLAB, "GitLab (Merge Request Hook)"),
           (GENERIC, "Generic signed JSON")]


def new_secret() -> str:
    return secrets.token_hex(32)


class InboundHook(models.Model):
    """`POST /hooks/<name>`: a host's pull/merge request events mapped to one machine's stack events."""

    name = models.SlugField(max_length=63, unique=True, help_text="The URL is /hooks/<name>.")
    source = models.CharField(max_length=10, choices=SOURCES, default=GITHUB)
    secret = models.CharField(max_length=200, default=new_secret, help_text=(
        "GitHub: the webhook secret (X-Hub-Signature-256). GitLab: the secret token (X-Gitlab-Token). "
        "Generic: the key of X-CloudSeam-Signature-256."))
    machine = models.ForeignKey(Machine, null=True, blank=True, on_delete=models.PROTECT, related_name="hooks",
                                help_text="The machine of the stacks a new pull/merge request launches.")
    stack_id_template = models.CharField(max_length=63, default="pr-{number}", help_text=(
        "The stack id: {number} is the pull/merge request number, {branch} its branch (made URL-safe)."))
    on_open = models.CharField(max_length=63, blank=True, default="LAUNCH",
                               help_text="Event for opened/reopened; empty: ignore.")
    on_update = models.CharField(max_length=63, blank=True, default="UPDATE_METADATA",
                                 help_text="Event for new commits (synchronize/update); empty: ignore.")
    on_close = models.CharField(max_length=63, blank=True, default="DESTROY",
                                help_text="Event for closed or merged; empty: ignore.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.source != GENERIC and self.machine_id is None:
            raise ValidationError({"machine": "GitHub and GitLab hooks launch stacks of a machine: choose one."})
        if "{" in self.stack_id_template.replace("{number}", "").replace("{branch}", ""):
            raise ValidationError({"stack_id_template": "Only {number} and {branch} can be filled in."})


class HookDelivery(models.Model):
    """One delivery received: its id (unique per hook) and the answer it got."""

    hook = models.ForeignKey(InboundHook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=100, blank=True)  # e.g. pull_request.opened
    stack_key = models.CharField("stack id", max_length=63, blank=True)
    status_code = models.PositiveSmallIntegerField(default=202)
    response = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "hook deliveries"
        constraints = [models.UniqueConstraint(fields=["hook", "delivery_id"], name="hook_delivery_unique")]

    def __str__(self) -> str:
        return f"{self.hook.name} {self.delivery_id}"
