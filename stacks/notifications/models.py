"""Where notifications go (targets, configured in the admin) and what came of each (deliveries).

Targets are referenced from machine files by name only (`notify: [{on: task_failed, target: ops-hook}]`);
URLs and secrets stay here. Models hold data; the sending is in `stacks.notifications.targets`.
"""

from __future__ import annotations

import secrets
import urllib.parse

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

KIND_WEBHOOK, KIND_APPRISE = "webhook", "apprise"
KINDS = [(KIND_WEBHOOK, "Signed JSON webhook"), (KIND_APPRISE, "Chat or e-mail (apprise URL)")]
# apprise services whose address is fixed by the service or chosen by the admin for mail; generic
# json:// or form:// targets would bypass the outbound guard, so they are webhooks instead.
APPRISE_SCHEMES = ("slack", "msteams", "workflows", "discord", "mailto", "mailtos", "tgram", "gchat", "pagerduty",
                   "opsgenie", "ntfy", "ntfys", "pover", "zulip", "mmost", "mmosts", "matrix", "matrixs")
PENDING, SENT, RETRYING, FAILED = "pending", "sent", "retrying", "failed"
STATUSES = [(PENDING, "pending"), (SENT, "sent"), (RETRYING, "retrying"), (FAILED, "failed")]
name_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                                "Use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.")


def new_secret() -> str:
    return secrets.token_hex(32)


class NotificationTarget(models.Model):
    """A named place to send notifications to; machines name it in their `notify:` rules."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator],
                            help_text="What machine files write as target: (e.g. ops-hook).")
    kind = models.CharField(max_length=10, choices=KINDS, default=KIND_WEBHOOK)
    url = models.CharField("URL", max_length=2000, help_text=(
        "Webhook: an http(s) URL; internal addresses are refused unless CLOUDSEAM_OUTBOUND_ALLOW lists them. "
        "Chat or e-mail: an apprise URL such as slack://…, msteams://…, discord://… or mailtos://…"))
    secret = models.CharField(max_length=200, default=new_secret, blank=True, help_text=(
        "Webhook: the key of the X-CloudSeam-Signature-256 HMAC-SHA256 signature. Keep it secret."))
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if self.kind == KIND_WEBHOOK and scheme not in ("http", "https"):
            raise ValidationError({"url": "A webhook URL starts with http:// or https://."})
        if self.kind == KIND_WEBHOOK and not self.secret:
            raise ValidationError({"secret": "A webhook needs a secret to sign its bodies."})
        if self.kind == KIND_APPRISE and scheme not in APPRISE_SCHEMES:
            raise ValidationError({"url": f"Use one of these apprise services: {', '.join(APPRISE_SCHEMES)}; "
                                          "for any other URL choose the signed JSON webhook."})


class NotificationDelivery(models.Model):
    """One notification to one target: its body (fixed when the event happened) and every attempt's answer."""

    stack = models.ForeignKey("stacks.Stack", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="notifications")
    stack_key = models.CharField("stack id", max_length=63, db_index=True)
    target_name = models.CharField("target", max_length=63)
    trigger = models.CharField(max_length=20)  # task_failed, entered, removed
    state = models.CharField(max_length=63, blank=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    answers = models.JSONField(default=list, blank=True)  # [{attempt, at, statusCode, error, durationMs}]
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"

    def __str__(self) -> str:
        return f"{self.trigger} of {self.stack_key} to {self.target_name}"
