"""Who sent a delivery: each host's signature, compared in constant time. Pure Python.

- GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body keyed by the hook's secret.
- GitLab: `X-Gitlab-Token`, the hook's secret itself.
- Generic: `X-CloudSeam-Signature-256: sha256=<hex>`, as GitHub (the same scheme CloudSeam signs with).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADERS = {"github": "X-Hub-Signature-256", "gitlab": "X-Gitlab-Token",
                     "generic": "X-CloudSeam-Signature-256"}


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_problem(source: str, secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """None when the delivery is authentic; else a sentence saying what was wrong (never the secret)."""
    header = SIGNATURE_HEADERS[source]
    given = headers.get(header, "")
    if not given:
        return f"the {header} header is missing; set the hook's secret at the sender"
    if not secret:
        return "this hook has no secret configured; set one in the admin"
    if source == "gitlab":
        same = hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))
    else:
        same = hmac.compare_digest(given.encode("utf-8"), expected_signature(secret, body).encode("utf-8"))
    return None if same else f"the {header} header does not match this hook's secret"


def delivery_id(source: str, headers: Mapping[str, str], payload: Mapping) -> str:
    """The sender's id of this delivery ("" when it sent none): the same on the sender's retries."""
    if source == "github":
        return headers.get("X-GitHub-Delivery", "")
    if source == "gitlab":  # Idempotency-Key stays the same across GitLab's retries of one event
        return headers.get("Idempotency-Key", "") or headers.get("X-Gitlab-Event-UUID", "")
    found = headers.get("Idempotency-Key", "") or payload.get("id", "")
    return found if isinstance(found, str) else ""
