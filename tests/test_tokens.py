"""API tokens: create (on "My tokens" and in the admin), shown once, stored hashed, used, expired, revoked."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from cloudseam_site.accounts.models import ApiToken
from cloudseam_site.accounts.tokens import issue_token
from tests.support import MACHINE, form_data

MY_TOKENS = "/tokens/"
NEW_TOKEN = "/tokens/new/"


def auth_header(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def raw_token_in(page: str) -> str:
    start = page.index('id="raw-token">') + len('id="raw-token">')
    return page[start:page.index("<", start)].strip()


def test_it_creates_a_token_shows_it_once_and_stores_only_its_hash(client, otto):
    client.force_login(otto)
    response = client.post(NEW_TOKEN, {"name": "CI deploys", "role": "operator", "expires": "30"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = raw_token_in(response.content.decode())
    token = ApiToken.objects.get()
    assert (token.name, token.role, token.user) == ("CI deploys", "operator", otto)
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(token.prefix) and len(token.prefix) < len(raw) // 2
    stored = [str(value) for value in ApiToken.objects.values().get().values()]
    assert not any(raw in value for value in stored)
    assert not LogEntry.objects.filter(change_message__contains=raw).exists()
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert raw not in client.get(MY_TOKENS).content.decode()  # never shown again


def test_it_lists_my_tokens_with_name_role_expiry_and_last_use(client, vera, otto, machine):
    issue_token(None, otto, "someone else's", "operator")
    _, raw = issue_token(None, vera, "laptop", "viewer", expires_at=timezone.now() + timedelta(days=3))
    issue_token(None, vera, "forever", "viewer")
    client.get("/api/stacks", **auth_header(raw))
    client.force_login(vera)

    page = client.get(MY_TOKENS).content.decode().split('id="tokens"')[1].split("</table>")[0]

    assert "laptop" in page and "forever" in page and "someone else" not in page
    laptop = ApiToken.objects.get(name="laptop")
    assert laptop.last_used_at is not None
    assert laptop.last_used_at.strftime("%Y-%m-%d %H:%M") in page
    assert laptop.expires_at.strftime("%Y-%m-%d %H:%M") in page
    assert page.count(">never<") == 2  # "forever" never expires and was never used


def test_it_lets_a_token_act_with_its_role(client, otto, machine):
    _, raw = issue_token(None, otto, "ci", "operator")
    message = {"stackId": "alpha", "event": "LAUNCH", "machine": MACHINE}
    response = client.post("/api/events", data=message, content_type="application/json", **auth_header(raw))
    assert response.status_code == 200
    assert response.json()["state"] == "DEPLOY"


def test_it_answers_401_to_an_expired_token(client, vera, machine):
    token, raw = issue_token(None, vera, "old", "viewer", expires_at=timezone.now() + timedelta(days=1))
    assert client.get("/api/stacks", **auth_header(raw)).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get("/api/stacks", **auth_header(raw))

    assert response.status_code == 401
    assert "unknown, revoked or expired" in response.json()["error"]
    client.force_login(vera)
    assert ">expired<" in client.get(MY_TOKENS).content.decode()


def test_it_revokes_my_token_and_then_answers_401(client, vera, machine):
    token, raw = issue_token(None, vera, "laptop", "viewer")
    client.force_login(vera)

    response = client.post(f"/tokens/{token.pk}/revoke/", follow=True)

    assert "Token laptop is revoked; requests using it now get 401." in response.content.decode()
    assert client.get("/api/stacks", **auth_header(raw)).status_code == 401
    entry = LogEntry.objects.get(action_flag=CHANGE)
    assert (entry.user, entry.object_id, entry.change_message) == (vera, str(token.pk), "Revoked the API token.")
    again = client.post(f"/tokens/{token.pk}/revoke/", follow=True)
    assert "Token laptop was already revoked." in again.content.decode()
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 1


def test_it_cannot_revoke_someone_elses_token(client, vera, otto):
    token, _ = issue_token(None, otto, "ci", "operator")
    client.force_login(vera)
    assert client.post(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert client.get(f"/tokens/{token.pk}/revoke/").status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


def test_it_offers_only_roles_up_to_my_own(client, vera):
    client.force_login(vera)
    fields = client.get(MY_TOKENS).content.decode()
    assert 'value="viewer"' in fields and 'value="operator"' not in fields

    response = client.post(NEW_TOKEN, {"name": "sneaky", "role": "admin", "expires": "7"})

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_explains_that_an_account_without_a_role_gets_no_token(client, db):
    from tests.support import make_user

    client.force_login(make_user("sam", None))
    assert "Your account has no CloudSeam role" in client.get(MY_TOKENS).content.decode()
    assert client.post(NEW_TOKEN, {"name": "x", "role": "viewer", "expires": "7"}).status_code == 400
    assert not ApiToken.objects.exists()


def test_it_needs_a_login_for_my_tokens(client, db):
    response = client.get(MY_TOKENS)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post(NEW_TOKEN, {"name": "x", "role": "viewer", "expires": "7"}).status_code == 302
    assert not ApiToken.objects.exists()


# --- in the admin -------------------------------------------------------------------------------


def test_it_creates_a_token_in_the_admin_and_shows_it_once(client, ada, otto, machine):
    client.force_login(ada)
    add = "/admin/accounts/apitoken/add/"
    fields = form_data(client.get(add).content.decode(), "apitoken_form")
    fields.update({"user": str(otto.pk), "name": "deploy bot", "role": "operator"})

    response = client.post(add, fields)

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "shown only this once" in page
    raw = raw_token_in(page)
    token = ApiToken.objects.get()
    assert (token.user, token.role, token.key_hash) == (otto, "operator", hashlib.sha256(raw.encode()).hexdigest())
    entry = LogEntry.objects.get(action_flag=ADDITION)
    assert entry.user == ada and "for otto with role operator" in entry.change_message
    assert raw not in client.get("/admin/accounts/apitoken/").content.decode()
    assert raw not in client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    message = {"stackId": "alpha", "event": "LAUNCH", "machine": MACHINE}
    assert client.post("/api/events", data=message, content_type="application/json",
                       **auth_header(raw)).status_code == 200


def test_it_refuses_an_admin_made_token_above_its_users_role(client, ada, vera):
    client.force_login(ada)
    add = "/admin/accounts/apitoken/add/"
    fields = form_data(client.get(add).content.decode(), "apitoken_form")
    fields.update({"user": str(vera.pk), "name": "too strong", "role": "operator"})

    response = client.post(add, fields)

    assert response.status_code == 200
    assert "vera has the viewer role; a token cannot have more (operator)" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_several_tokens_in_the_admin(client, ada, vera, otto, machine):
    first, raw_first = issue_token(None, vera, "laptop", "viewer")
    second, raw_second = issue_token(None, otto, "ci", "operator")
    client.force_login(ada)
    data = {"action": "revoke", "_selected_action": [first.pk, second.pk], "index": "0"}

    response = client.post("/admin/accounts/apitoken/", data, follow=True)

    assert "Revoked: " in response.content.decode()
    for raw in (raw_first, raw_second):
        assert client.get("/api/stacks", **auth_header(raw)).status_code == 401
    assert list(LogEntry.objects.filter(action_flag=CHANGE).values_list("user__username", flat=True)) == ["ada"] * 2
    again = client.post("/admin/accounts/apitoken/", data, follow=True)
    assert "The selected tokens were already revoked." in again.content.decode()


def test_it_filters_tokens_by_status_and_never_deletes_them(client, ada, vera):
    live, _ = issue_token(None, vera, "live", "viewer")
    expired, _ = issue_token(None, vera, "expired", "viewer", expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = issue_token(None, vera, "revoked", "viewer")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    client.force_login(ada)

    def names(status: str) -> list[str]:
        return [t.name for t in client.get(f"/admin/accounts/apitoken/?status={status}").context["cl"].result_list]

    assert names("active") == ["live"]
    assert names("expired") == ["expired"]
    assert names("revoked") == ["revoked"]
    assert client.get(f"/admin/accounts/apitoken/{live.pk}/delete/").status_code == 403
    assert client.post(f"/admin/accounts/apitoken/{live.pk}/change/", {"name": "renamed"}).status_code == 403


@pytest.mark.parametrize("expires", ["7", "30", "90", "365", "never"])
def test_it_sets_the_expiry_chosen_on_my_tokens(client, otto, expires):
    client.force_login(otto)
    client.post(NEW_TOKEN, {"name": "t", "role": "viewer", "expires": expires})
    token = ApiToken.objects.get()
    if expires == "never":
        assert token.expires_at is None
    else:
        assert abs((token.expires_at - timezone.now()) - timedelta(days=int(expires))) < timedelta(minutes=1)


def test_it_lays_out_the_tokens_page_like_the_other_pages(as_operator):
    page = as_operator.get(reverse("tokens-list")).content.decode()
    assert '<div class="table-wrap">\n  <table class="data-table tokens-table" id="tokens">' in page  # scrolls alone
    form = page[page.index('id="new-token"'):page.index("</form>", page.index('id="new-token"'))]
    assert 'class="stacked-form"' in form and "<p><label" not in form  # fields, not as_p
    assert form.count('<div class="field">') == 3
    assert 'aria-describedby="id_name_helptext"' in form and '<p class="help" id="id_name_helptext">' in form
    refused = as_operator.post(reverse("tokens-create"), {"name": "", "role": "operator", "expires": "7"})
    assert refused.status_code == 400
    assert '<p class="field-error">This field is required.</p>' in refused.content.decode()
