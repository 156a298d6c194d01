"""The People page: admins only; add, role, machine limits, active, tokens; every change in LogEntry."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model

from cloudseam_site.accounts import tokens
from cloudseam_site.accounts.models import ApiToken, MachineAccess
from cloudseam_site.accounts.roles import user_role
from machines_app.services import save_machine
from tests.conftest import SIMPLE_MACHINE
from tests.support import make_user

pytestmark = pytest.mark.postgres


@pytest.fixture
def ada(db):
    return make_user("ada", "admin")


@pytest.fixture
def admin_client(client, ada):
    client.force_login(ada)
    return client


def fresh(user):
    return get_user_model().objects.get(pk=user.pk)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_it_refuses_the_people_pages_to_non_admins(client, db, role):
    other = make_user("someone", "viewer")
    client.force_login(make_user("x", role))
    assert client.get("/people/").status_code == 403
    assert client.get(f"/people/{other.pk}/").status_code == 403
    assert client.post(f"/people/{other.pk}/role/", {"role": "admin"}).status_code == 403
    assert client.post("/people/add/", {"username": "eve", "role": "admin"}).status_code == 403
    assert user_role(fresh(other)) == "viewer"
    assert not get_user_model().objects.filter(username="eve").exists()


def test_it_sends_anonymous_people_to_log_in(client, db):
    response = client.get("/people/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_lists_people_with_role_limits_and_tokens(admin_client, ada):
    otto = make_user("otto", "operator")
    tokens.issue_token(ada, otto, "ci", "operator")
    MachineAccess.objects.create(user=otto)
    page = admin_client.get("/people/").content.decode()
    row = re.search(r'<tr data-person="otto">.*?</tr>', page, re.S).group(0)
    assert 'value="operator" selected' in row and "no machine" in row and "<td>1</td>" in row
    assert "never" in row  # last login


def test_it_adds_a_person_with_a_one_time_set_password_link(admin_client, client):
    response = admin_client.post("/people/add/", {"username": "nina", "email": "nina@example.com",
                                                  "role": "operator"})
    assert response.status_code == 200
    nina = get_user_model().objects.get(username="nina")
    assert not nina.has_usable_password() and user_role(nina) == "operator"
    link = re.search(r'value="(http://testserver/accounts/reset/[^"]+)"', response.content.decode()).group(1)
    path = link.removeprefix("http://testserver")
    form = client.get(path, follow=True)
    assert form.status_code == 200 and b"new_password1" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "seam-Nina-Password-42",
                                                    "new_password2": "seam-Nina-Password-42"})
    assert done.status_code == 302
    assert fresh(nina).check_password("seam-Nina-Password-42")
    assert LogEntry.objects.filter(object_id=str(nina.pk), change_message__contains="Added nina").exists()


def test_it_refuses_a_person_who_exists(admin_client):
    make_user("otto", "operator")
    response = admin_client.post("/people/add/", {"username": "OTTO", "role": "viewer"})
    assert response.status_code == 409 and "already a person called OTTO" in response.content.decode()


def test_it_changes_the_role_keeping_one_role(admin_client):
    vera = make_user("vera", "viewer")
    response = admin_client.post(f"/people/{vera.pk}/role/", {"role": "operator"})
    assert response.status_code == 302
    assert sorted(fresh(vera).groups.values_list("name", flat=True)) == ["operator"]
    assert LogEntry.objects.filter(object_id=str(vera.pk), change_message="Changed role from viewer to operator.") \
        .exists()


def test_it_refuses_an_unknown_role_and_changing_yourself(admin_client, ada):
    vera = make_user("vera", "viewer")
    bad = admin_client.post(f"/people/{vera.pk}/role/", {"role": "god"})
    assert bad.status_code == 400 and "choose a role" in bad.content.decode()
    mine = admin_client.post(f"/people/{ada.pk}/role/", {"role": "viewer"})
    assert mine.status_code == 409 and "cannot change your own role" in mine.content.decode()
    assert user_role(fresh(ada)) == "admin"


def test_it_sets_and_lifts_machine_limits(admin_client):
    save_machine("simple", SIMPLE_MACHINE, actor="tests", source="tests")
    otto = make_user("otto", "operator")
    admin_client.post(f"/people/{otto.pk}/machines/", {"limited": "on", "machines": ["simple"]})
    assert list(MachineAccess.objects.get(user=otto).machines.values_list("name", flat=True)) == ["simple"]
    admin_client.post(f"/people/{otto.pk}/machines/", {})
    assert not MachineAccess.objects.filter(user=otto).exists()
    messages = list(LogEntry.objects.filter(object_id=str(otto.pk)).values_list("change_message", flat=True))
    assert any("Limited to changing stacks of: simple" in m for m in messages)
    assert any("Lifted the machine limit" in m for m in messages)


def test_it_deactivates_and_reactivates_but_never_yourself(admin_client, ada):
    otto = make_user("otto", "operator")
    assert admin_client.post(f"/people/{otto.pk}/active/", {"active": "0"}).status_code == 302
    assert not fresh(otto).is_active
    assert admin_client.post(f"/people/{otto.pk}/active/", {"active": "1"}).status_code == 302
    assert fresh(otto).is_active
    mine = admin_client.post(f"/people/{ada.pk}/active/", {"active": "0"})
    assert mine.status_code == 409 and "cannot deactivate yourself" in mine.content.decode()
    assert fresh(ada).is_active


def test_it_lists_and_revokes_a_persons_tokens(admin_client, ada):
    otto = make_user("otto", "operator")
    token, _raw = tokens.issue_token(otto, otto, "laptop", "operator")
    page = admin_client.get(f"/people/{otto.pk}/").content.decode()
    assert "laptop" in page and f'value="{token.pk}"' in page
    assert admin_client.post(f"/people/{otto.pk}/tokens/revoke/", {"token": [token.pk]}).status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert LogEntry.objects.filter(user=ada, object_id=str(token.pk), change_message="Revoked the API token.").exists()
    nothing = admin_client.post(f"/people/{otto.pk}/tokens/revoke/", {})
    assert nothing.status_code == 400 and "choose the tokens to revoke" in nothing.content.decode()


def test_it_answers_404_for_an_unknown_person(admin_client):
    assert admin_client.get("/people/999999/").status_code == 404


# --- running it: serve's hint, 403 log lines, 404 pages -------------------------------------------------


def test_it_tells_how_to_reset_the_admin_password_on_a_restart(db):
    from io import StringIO

    from stacks.management.commands.serve import Command

    get_user_model().objects.create_superuser("admin", "", "seam-Admin-Password-42")
    out = StringIO()
    command = Command(stdout=out)
    command._first_run_admin()
    assert "manage.py changepassword admin" in out.getvalue() and "Password:" not in out.getvalue()


def test_it_logs_a_refused_request_as_one_line(client, db, capsys):
    import logging

    from cloudseam_site.log_filters import OneLineClientErrors

    client.force_login(make_user("vera", "viewer"))
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            if OneLineClientErrors().filter(record):
                records.append(self.format(record))

    handler = Keep()
    logging.getLogger("django.request").addHandler(handler)
    try:
        assert client.get("/people/").status_code == 403
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    (line,) = records
    assert "Forbidden (Permission denied): /people/" in line and "needs the admin role" in line
    assert "Traceback" not in line and "\n" not in line


def test_it_names_a_missing_stack_and_offers_its_record_and_creating_it(client, db):
    from stacks.services import handle_event

    save_machine("simple", SIMPLE_MACHINE, actor="tests", source="tests")
    handle_event({"stackId": "old", "event": "LAUNCH", "machine": "simple"}, actor="t", source="api")
    handle_event({"stackId": "old", "event": "DESTROY"}, actor="t", source="api")  # PROVISION → GONE: removed
    client.force_login(make_user("otto", "operator"))
    page = client.get("/stacks/old/event/", follow=False)  # an action URL of a gone stack: 405/404
    response = client.post("/stacks/old/event/", {"event": "DEPLOY"})
    assert response.status_code == 404
    text = response.content.decode()
    assert "no active stack <strong>old</strong>" in text
    assert "/stacks/removed/" in text and "read its record" in text
    assert "/stacks/new/?id=old" in text
    assert page.status_code in (404, 405)
    form = client.get("/stacks/new/?id=old").content.decode()
    assert 'value="old"' in form


def test_it_names_a_missing_machine(client, db):
    client.force_login(make_user("vera", "viewer"))
    response = client.get("/machines/ghost/")
    assert response.status_code == 404
    assert "There is no machine <strong>ghost</strong>" in response.content.decode()
