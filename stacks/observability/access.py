"""Who may read /metrics: a viewer (or stronger) by bearer token or session, or an allow-listed address.

The address is the peer's, as for the login throttle (X-Forwarded-For only when Daphne runs with
--proxy-headers behind a trusted proxy). A token that does not work is refused even from an
allowed address: a scraper with a stale token should hear about it.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from cloudseam_site.accounts.auth import authenticate_bearer
from cloudseam_site.accounts.models import ROLE_VIEWER
from cloudseam_site.accounts.roles import RANK, request_role
from cloudseam_site.accounts.throttle import client_ip

BAD_TOKEN = "This bearer token is unknown, revoked or expired."
NO_ACCESS = (
    "Metrics need a bearer token with at least the viewer role, or a request from an address listed in "
    "CLOUDSEAM_METRICS_ALLOW."
)
NO_ROLE = "Metrics need at least the viewer role; this token or account has no role."


def address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in settings.CLOUDSEAM_METRICS_ALLOW)


def refusal(request: HttpRequest) -> tuple[int, str] | None:
    """None when the request may read metrics, else (status, sentence)."""
    authenticate_bearer(request)
    if request.bad_token:
        return 401, BAD_TOKEN
    if RANK[request_role(request)] >= RANK[ROLE_VIEWER]:
        return None
    if request.api_token is None and address_allowed(client_ip(request)):
        return None
    if request.user.is_authenticated:
        return 403, NO_ROLE
    return 401, NO_ACCESS
