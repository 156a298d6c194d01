"""Sending one delivery to its target: a signed JSON webhook through the outbound guard, or a chat or
e-mail service through apprise. Returns an `Answer`; never raises for the target's own failures.

Webhook bodies are signed with HMAC-SHA256 over the exact bytes sent, keyed by the target's secret:
`X-CloudSeam-Signature-256: sha256=<hex>`. The body carries `sentAt`, equal to the
`X-CloudSeam-Timestamp` header, so a receiver can refuse old (replayed) bodies; `deliveryId` (also
`X-CloudSeam-Delivery`) is the same on every attempt of one delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from cloudseam_site import outbound
from stacks.notifications.models import KIND_WEBHOOK, NotificationDelivery, NotificationTarget

log = logging.getLogger(__name__)

ANSWER_BYTES = 4096
RETRY_STATUSES = {408, 425, 429}  # and every 5xx


@dataclass(frozen=True)
class Answer:
    ok: bool
    status_code: int | None = None
    error: str = ""
    duration_ms: int = 0
    retry: bool = False  # worth another attempt (network trouble, 5xx), not a configuration error


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send(delivery: NotificationDelivery, attempt: int) -> Answer:
    target = NotificationTarget.objects.filter(name=delivery.target_name, enabled=True).first()
    if target is None:
        return Answer(False, error=f"there is no enabled notification target named {delivery.target_name}; "
                                   "add it in the admin (Notification targets)")
    start = time.monotonic()
    answer = _webhook(target, delivery, attempt) if target.kind == KIND_WEBHOOK else _apprise(target, delivery)
    return Answer(answer.ok, answer.status_code, answer.error, int((time.monotonic() - start) * 1000), answer.retry)


def webhook_body(delivery: NotificationDelivery, attempt: int, sent_at: int) -> bytes:
    body = {**delivery.payload, "deliveryId": delivery.pk, "attempt": attempt, "sentAt": sent_at}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _webhook(target: NotificationTarget, delivery: NotificationDelivery, attempt: int) -> Answer:
    sent_at = int(time.time())
    body = webhook_body(delivery, attempt, sent_at)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "CloudSeam-Notify",
        "X-CloudSeam-Event": delivery.trigger,
        "X-CloudSeam-Delivery": str(delivery.pk),
        "X-CloudSeam-Timestamp": str(sent_at),
        "X-CloudSeam-Signature-256": sign(target.secret, body),
    }
    try:
        response = outbound.request("POST", target.url, body=body, headers=headers,
                                    timeout=settings.CLOUDSEAM_NOTIFY_TIMEOUT, max_bytes=ANSWER_BYTES)
    except outbound.Refused as exc:
        return Answer(False, error=f"refused: {exc.message}")
    except TimeoutError:
        return Answer(False, error=f"no answer within {settings.CLOUDSEAM_NOTIFY_TIMEOUT} s", retry=True)
    except OSError as exc:
        return Answer(False, error=f"could not connect: {exc.strerror or exc}", retry=True)
    if 200 <= response.status < 300:
        return Answer(True, response.status)
    preview = response.body.decode("utf-8", "replace").strip()[:200]
    retry = response.status >= 500 or response.status in RETRY_STATUSES
    return Answer(False, response.status, f"answered {response.status}: {preview}".rstrip(": "), retry=retry)


def _apprise(target: NotificationTarget, delivery: NotificationDelivery) -> Answer:
    """Chat and e-mail through apprise (its own HTTP stack; the admin chose the service URL)."""
    import apprise  # imported here: only workers that send chat notifications pay for it

    sender = apprise.Apprise()
    if not sender.add(target.url):
        return Answer(False, error="apprise does not understand this target's URL; check it in the admin")
    text = delivery.payload.get("text", "")
    body = f"{text}\n{delivery.payload.get('url', '')}"
    kind = apprise.NotifyType.FAILURE if delivery.trigger == "task_failed" else apprise.NotifyType.INFO
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = sender.notify(title=f"CloudSeam: {text[:100]}", body=body, notify_type=kind)
        details = captured.getvalue().strip()
    if ok:
        return Answer(True)
    return Answer(False, error=f"apprise could not deliver: {details[-300:] or 'no reason given'}", retry=True)
