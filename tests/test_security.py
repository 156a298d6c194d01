"""Hardening: CSRF on forms, JSON-only API writes, security headers, safe settings, login throttling."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from cloudseam_site.accounts.models import ApiToken
from cloudseam_site.accounts.tokens import issue_token
from stacks.models import Stack, StackEvent
from tests.support import MACHINE, PASSWORD, form_data, launch, make_user

ROOT = Path(__file__).resolve().parent.parent
LOCKED = "Too many failed logins for this account from your address"


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Login counters live in the cache; a private one, so clearing it can never flush a shared Redis."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "cloudseam-security-tests"}}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def csrf_client() -> Client:
    """A browser on another site: it has the session cookie but cannot read the CSRF token."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def lena(db):
    return make_user("lena", "operator", password=PASSWORD)


# --- CSRF on every form ---------------------------------------------------------------------------


def test_it_requires_csrf_on_the_admins_metadata_form(csrf_client, otto, machine):
    launch("alpha", branch="main")
    csrf_client.force_login(otto)
    url = f"/admin/stacks/stack/{Stack.objects.get(key='alpha').pk}/metadata/"
    fields = form_data(csrf_client.get(url).content.decode(), "metadata-form")
    fields.pop("csrfmiddlewaretoken")
    fields["meta_value"] = ["forged", "", ""]

    assert csrf_client.post(url, fields).status_code == 403
    assert Stack.objects.get(key="alpha").metadata == {"branch": "main"}


def test_it_requires_csrf_on_admin_actions(csrf_client, otto, machine):
    launch("alpha")
    csrf_client.force_login(otto)
    data = {"action": "retry_pending", "_selected_action": [Stack.objects.get(key="alpha").pk], "index": "0"}
    assert csrf_client.post("/admin/stacks/stack/", data).status_code == 403
    assert not StackEvent.objects.filter(source="admin").exists()


def test_it_requires_csrf_on_my_tokens(csrf_client, otto):
    token, _ = issue_token(None, otto, "laptop", "viewer")
    csrf_client.force_login(otto)
    assert csrf_client.post("/tokens/new/", {"name": "x", "role": "viewer", "expires": "7"}).status_code == 403
    assert csrf_client.post(f"/tokens/{token.pk}/revoke/").status_code == 403
    assert ApiToken.objects.get().revoked_at is None


def test_it_requires_csrf_on_the_login_forms(csrf_client, lena):
    for url in ("/accounts/login/", "/admin/login/"):
        response = csrf_client.post(url, {"username": "lena", "password": PASSWORD})
        assert response.status_code == 403
    assert "_auth_user_id" not in csrf_client.session


def test_it_accepts_a_form_that_carries_its_csrf_token(csrf_client, otto, machine):
    launch("alpha", branch="main")
    csrf_client.force_login(otto)
    url = f"/admin/stacks/stack/{Stack.objects.get(key='alpha').pk}/metadata/"
    fields = form_data(csrf_client.get(url).content.decode(), "metadata-form")
    fields["meta_value"] = ["next", "", ""]
    assert csrf_client.post(url, fields).status_code == 302
    assert Stack.objects.get(key="alpha").metadata == {"branch": "next"}


# --- the JSON API only takes JSON -----------------------------------------------------------------

EVENT = json.dumps({"stackId": "alpha", "event": "LAUNCH", "machine": MACHINE})


def test_it_cannot_be_made_to_send_an_event_by_a_cross_site_text_plain_form(csrf_client, otto, machine):
    """A page elsewhere can post `text/plain` with the session cookie; it must not reach handle_event."""
    csrf_client.force_login(otto)
    response = csrf_client.post("/api/events", data=EVENT, content_type="text/plain",
                                HTTP_ORIGIN="http://evil.example", HTTP_REFERER="http://evil.example/")
    assert response.status_code == 403
    assert not Stack.objects.exists() and not StackEvent.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_it_refuses_non_json_bodies_even_when_csrf_passes(client, otto, machine, content_type):
    """The content type is a second, independent wall: forms cannot send application/json."""
    client.force_login(otto)  # this test client skips CSRF checks
    body = EVENT if content_type != "multipart/form-data" else {"stackId": "alpha", "event": "LAUNCH"}
    kwargs = {"content_type": content_type} if content_type != "multipart/form-data" else {}
    response = client.post("/api/events", data=body, **kwargs)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert not Stack.objects.exists() and not StackEvent.objects.exists()


def test_it_refuses_a_session_write_to_the_api_without_the_csrf_header(csrf_client, otto, machine):
    csrf_client.force_login(otto)
    response = csrf_client.post("/api/events", data=EVENT, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    csrf_client.get("/admin/")  # any page that renders a form sets the CSRF cookie
    token = csrf_client.cookies["csrftoken"].value
    ok = csrf_client.post("/api/events", data=EVENT, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200


def test_it_refuses_text_plain_with_a_bearer_token_too(client, otto, machine):
    _, raw = issue_token(None, otto, "ci", "operator")
    response = client.post("/api/events", data=EVENT, content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 415
    assert not Stack.objects.exists()


# --- headers and settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/", "/api/openapi.json"])
def test_it_sends_security_headers(client, db, url):
    response = client.get(url)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_it_marks_the_session_cookie_http_only(client, lena):
    response = client.post("/accounts/login/", {"username": "lena", "password": PASSWORD})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["httponly"]
    assert response.cookies["sessionid"]["samesite"] == "Lax"


def settings_in_a_fresh_process(tmp_path: Path, **env: str) -> dict:
    """What cloudseam_site.settings decides from a given environment, read in a new interpreter."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CLOUDSEAM_"))}
    clean.update({"CLOUDSEAM_DATA_DIR": str(tmp_path / "data"), **env})
    code = (
        "import json; from cloudseam_site import settings as s; print(json.dumps({"
        "'DEBUG': s.DEBUG, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS, 'SECRET_KEY': s.SECRET_KEY, "
        "'SESSION_COOKIE_SECURE': s.SESSION_COOKIE_SECURE, 'CSRF_COOKIE_SECURE': s.CSRF_COOKIE_SECURE, "
        "'SECURE_HSTS_SECONDS': s.SECURE_HSTS_SECONDS}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_keeps_debug_off_and_hosts_local_unless_asked(tmp_path):
    defaults = settings_in_a_fresh_process(tmp_path)
    assert defaults["DEBUG"] is False
    assert set(defaults["ALLOWED_HOSTS"]) == {"localhost", "127.0.0.1", "[::1]"}
    assert defaults["SESSION_COOKIE_SECURE"] is False and defaults["SECURE_HSTS_SECONDS"] == 0
    asked = settings_in_a_fresh_process(tmp_path, DJANGO_DEBUG="1", DJANGO_ALLOWED_HOSTS="seam.example.com")
    assert asked["DEBUG"] is True and asked["ALLOWED_HOSTS"] == ["seam.example.com"]


def test_it_uses_secure_cookies_and_hsts_behind_https(tmp_path):
    https = settings_in_a_fresh_process(tmp_path, CLOUDSEAM_HTTPS="1")
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    assert https["SECURE_HSTS_SECONDS"] >= 31536000


def test_it_generates_a_secret_key_once_and_keeps_it_private(tmp_path):
    first = settings_in_a_fresh_process(tmp_path)["SECRET_KEY"]
    second = settings_in_a_fresh_process(tmp_path)["SECRET_KEY"]
    key_file = tmp_path / "data" / "secret_key"
    assert first == second == key_file.read_text().strip() and len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_it_does_not_show_debug_pages(client, db):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Traceback" not in response.content and b"URLconf" not in response.content


# --- login throttling -------------------------------------------------------------------------------


def log_in(client: Client, password: str, url: str = "/accounts/login/", ip: str = "127.0.0.1",
           username: str = "lena"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_it_locks_an_account_for_an_address_after_five_failures(client, lena):
    for _ in range(5):
        response = log_in(client, "wrong")
        assert response.status_code == 200 and LOCKED not in response.content.decode()

    refused = log_in(client, PASSWORD)  # even the right password

    assert refused.status_code == 200
    assert LOCKED in refused.content.decode() and "Wait 15 minutes" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    elsewhere = log_in(Client(), PASSWORD, ip="10.1.2.3")
    assert elsewhere.status_code == 302  # the person can still get in from their own machine


def test_it_throttles_the_admin_login_with_the_same_count(client, lena):
    lena.is_staff = True
    lena.save()
    for _ in range(3):
        log_in(client, "wrong")
    for _ in range(2):
        log_in(client, "wrong", url="/admin/login/")

    refused = log_in(client, PASSWORD, url="/admin/login/")

    assert LOCKED in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_forgets_failures_after_a_successful_login(client, lena):
    for _ in range(4):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302


def test_it_unlocks_when_the_window_ends(client, lena, settings, monkeypatch):
    settings.CLOUDSEAM_LOGIN_LOCKOUT_SECONDS = 4  # long enough for three password checks on a loaded machine
    settings.CLOUDSEAM_LOGIN_MAX_FAILURES = 2
    log_in(client, "wrong")
    log_in(client, "wrong")
    assert LOCKED in log_in(client, PASSWORD).content.decode()
    wall_clock = time.time
    monkeypatch.setattr(time, "time", lambda: wall_clock() + 4.2)  # the cache's entries expire by this clock
    assert log_in(client, PASSWORD).status_code == 302


def test_it_throttles_unknown_usernames_the_same_way(client, db):
    for _ in range(5):
        response = log_in(client, "guess", username="nobody")
        assert "Please enter a correct username and password" in response.content.decode()
    assert LOCKED in log_in(client, "guess", username="nobody").content.decode()


def test_it_shows_failed_logins_to_admins_and_logs_them(client, lena, ada, caplog):
    with caplog.at_level(logging.WARNING, logger="cloudseam.audit"):
        log_in(client, "wrong", ip="203.0.113.7")
    assert any("failed login for 'lena' from 203.0.113.7" in r.getMessage() for r in caplog.records)
    assert "wrong" not in caplog.text  # the password typed is never logged

    client.force_login(ada)
    page = client.get("/admin/security/failed-logins/").content.decode()

    assert "lena" in page and "203.0.113.7" in page


def test_it_keeps_failed_logins_in_the_database_so_they_survive_a_restart(client, lena):
    from django.core.cache import cache

    from cloudseam_site.accounts.models import LoginFailure

    log_in(client, "wrong", ip="198.51.100.9")
    cache.clear()  # a restart empties the in-memory cache; the record must not depend on it
    failure = LoginFailure.objects.get()
    assert (failure.username, failure.ip, failure.locked) == ("lena", "198.51.100.9", False)


def test_it_never_logs_a_new_token(client, otto, caplog):
    client.force_login(otto)
    with caplog.at_level(logging.DEBUG):
        page = client.post("/tokens/new/", {"name": "ci", "role": "viewer", "expires": "7"}).content.decode()
    raw = page.split('id="raw-token">')[1].split("<")[0].strip()
    assert raw and raw not in caplog.text


def test_it_sends_a_content_security_policy_on_pages(client, otto):
    client.force_login(otto)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
