"""Roles on every door: API, admin console, admin actions, WebSockets and "My tokens".

One table per door; each row says what anonymous, viewer, operator and admin get. The API and
WebSockets are tried with a browser session and with a bearer token of the same role, because a
token must never grant more than its user has, nor less than its own role.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from cloudseam_site.accounts.models import ApiToken
from cloudseam_site.accounts.tokens import issue_token
from cloudseam_site.asgi import application
from machines_app.models import Machine
from stacks.models import Stack, StackEvent
from tests.support import MACHINE, MACHINE_YAML, create_idle, fail_task, form_data, launch

ROLES = ("anonymous", "viewer", "operator", "admin")
CHANGED_YAML = MACHINE_YAML.replace("seconds: 1", "seconds: 5")


def expected(row: tuple[int, ...]) -> dict[str, int]:
    return dict(zip(ROLES, row, strict=True))


def role_params(table: list) -> list:
    return [pytest.param(row, role, id=f"{row[0]}-{role}") for row in table for role in ROLES]


# --- the HTTP API ---------------------------------------------------------------------------------

API = [
    # name, method, path, body, content type, statuses for anonymous, viewer, operator, admin
    ("list-stacks", "GET", "/api/stacks", None, None, (401, 200, 200, 200)),
    ("one-stack", "GET", "/api/stacks/alpha", None, None, (401, 200, 200, 200)),
    ("history", "GET", "/api/stacks/alpha/history", None, None, (401, 200, 200, 200)),
    ("send-event", "POST", "/api/events", json.dumps({"stackId": "beta", "event": "LAUNCH", "machine": MACHINE}),
     "application/json", (401, 403, 200, 200)),
    ("get-events", "GET", "/api/events", None, None, (405, 405, 405, 405)),
    ("list-machines", "GET", "/api/machines", None, None, (401, 200, 200, 200)),
    ("one-machine", "GET", f"/api/machines/{MACHINE}", None, None, (401, 200, 200, 200)),
    ("put-machine", "PUT", f"/api/machines/{MACHINE}", CHANGED_YAML, "application/yaml", (401, 403, 403, 201)),
    ("validate", "POST", "/api/machines/validate", MACHINE_YAML, "application/yaml", (401, 200, 200, 200)),
    ("openapi", "GET", "/api/openapi.json", None, None, (200, 200, 200, 200)),  # the API's shape is public
]


def call(client, method: str, path: str, body, content_type, **headers):
    kwargs = {"data": body, "content_type": content_type} if body is not None else {}
    return getattr(client, method.lower())(path, **kwargs, **headers)


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize(("row", "role"), role_params(API))
def test_it_enforces_roles_on_every_api_endpoint(client, people, machine, row, role, auth):
    name, method, path, body, content_type, statuses = row
    launch("alpha")
    headers = {}
    user = people[role]
    if user is not None and auth == "session":
        client.force_login(user)
    elif user is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {issue_token(None, user, 'roles', role)[1]}"
    stacks_before, versions_before = Stack.objects.count(), machine.machine.versions.count()

    response = call(client, method, path, body, content_type, **headers)

    assert response.status_code == expected(statuses)[role], response.content[:300]
    if response.status_code >= 400:
        assert "error" in response.json()
        assert Stack.objects.count() == stacks_before and machine.machine.versions.count() == versions_before


@pytest.mark.parametrize(
    ("user_role", "token_role", "method", "path", "body", "content_type", "status"),
    [
        ("admin", "viewer", "POST", "/api/events", json.dumps({"stackId": "beta", "event": "LAUNCH",
                                                                "machine": MACHINE}), "application/json", 403),
        ("admin", "operator", "PUT", f"/api/machines/{MACHINE}", CHANGED_YAML, "application/yaml", 403),
        ("viewer", "admin", "POST", "/api/events", json.dumps({"stackId": "beta", "event": "LAUNCH",
                                                                "machine": MACHINE}), "application/json", 403),
        ("operator", "admin", "PUT", f"/api/machines/{MACHINE}", CHANGED_YAML, "application/yaml", 403),
    ],
    ids=["admin-with-viewer-token", "admin-with-operator-token", "viewer-with-admin-token",
         "operator-with-admin-token"],
)
def test_it_gives_a_token_the_weaker_of_its_role_and_its_users(client, people, machine, user_role, token_role,
                                                                method, path, body, content_type, status):
    _, raw = issue_token(None, people[user_role], "mismatched", token_role)  # made directly: the forms refuse this
    response = call(client, method, path, body, content_type, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == status
    assert not Stack.objects.exists() and machine.machine.versions.count() == 1


def test_it_refuses_an_account_without_a_role_everywhere_in_the_api(client, db, machine):
    from tests.support import make_user

    client.force_login(make_user("sam", None))
    response = client.get("/api/stacks")
    assert response.status_code == 403
    assert "no CloudSeam role" in response.json()["error"]


# --- the admin console: pages ---------------------------------------------------------------------

ADMIN_PAGES = [
    # name, url (from stack "alpha" and the machine), statuses for anonymous, viewer, operator, admin
    ("index", lambda ids: "/admin/", (302, 200, 200, 200)),
    ("stacks", lambda ids: "/admin/stacks/stack/", (302, 200, 200, 200)),
    ("stack", lambda ids: f"/admin/stacks/stack/{ids['stack']}/change/", (302, 200, 200, 200)),
    ("stack-add", lambda ids: "/admin/stacks/stack/add/", (302, 403, 403, 403)),
    ("stack-delete", lambda ids: f"/admin/stacks/stack/{ids['stack']}/delete/", (302, 403, 403, 403)),
    ("tasks", lambda ids: "/admin/stacks/task/", (302, 200, 200, 200)),
    ("history", lambda ids: "/admin/stacks/stackevent/", (302, 200, 200, 200)),
    ("history-add", lambda ids: "/admin/stacks/stackevent/add/", (302, 403, 403, 403)),
    ("machines", lambda ids: "/admin/machines_app/machine/", (302, 200, 200, 200)),
    ("machine-add", lambda ids: "/admin/machines_app/machine/add/", (302, 403, 403, 200)),
    ("machine-delete", lambda ids: f"/admin/machines_app/machine/{ids['machine']}/delete/", (302, 403, 403, 403)),
    ("versions", lambda ids: "/admin/machines_app/machineversion/", (302, 200, 200, 200)),
    ("tokens", lambda ids: "/admin/accounts/apitoken/", (302, 403, 403, 200)),
    ("token-add", lambda ids: "/admin/accounts/apitoken/add/", (302, 403, 403, 200)),
    ("users", lambda ids: "/admin/auth/user/", (302, 403, 403, 200)),
    ("groups", lambda ids: "/admin/auth/group/", (302, 403, 403, 200)),
    ("admin-log", lambda ids: "/admin/admin/logentry/", (302, 403, 403, 200)),
    ("rq-queues", lambda ids: "/admin/rq/", (302, 403, 403, 200)),
    ("rq-stats-json", lambda ids: "/admin/rq/stats.json", (302, 403, 403, 200)),
    ("rq-in-admin", lambda ids: "/admin/django_rq/dashboard/", (302, 404, 404, 404)),  # unregistered
    ("failed-logins", lambda ids: "/admin/security/failed-logins/", (302, 403, 403, 200)),
]


@pytest.mark.parametrize(("row", "role"), role_params(ADMIN_PAGES))
def test_it_enforces_roles_on_admin_pages(client, people, machine, row, role):
    name, url, statuses = row
    launch("alpha")
    if people[role] is not None:
        client.force_login(people[role])
    ids = {"stack": Stack.objects.get(key="alpha").pk, "machine": machine.machine_id}

    response = client.get(url(ids))

    assert response.status_code == expected(statuses)[role]
    if response.status_code == 302:
        assert "/admin/login/" in response["Location"]


def test_it_shows_each_role_only_the_admin_sections_it_may_use(client, people, machine):
    sections = {}
    for role in ("viewer", "operator", "admin"):
        client.force_login(people[role])
        page = client.get("/admin/").content.decode()
        sections[role] = {name for name in ("/admin/stacks/stack/", "/admin/accounts/apitoken/", "/admin/auth/user/",
                                            "/admin/rq/", "/admin/machines_app/machine/add/") if name in page}
    assert sections["viewer"] == sections["operator"] == {"/admin/stacks/stack/"}
    assert sections["admin"] == {"/admin/stacks/stack/", "/admin/accounts/apitoken/", "/admin/auth/user/",
                                 "/admin/rq/", "/admin/machines_app/machine/add/"}


# --- the admin console: changes and actions -------------------------------------------------------


def stack_actions(ids: dict) -> list:
    return [
        ("retry-failed", "/admin/stacks/stack/", {"action": "retry_failed", "_selected_action": [ids["stack"]],
                                                  "index": "0"}),
        ("retry-pending", "/admin/stacks/stack/", {"action": "retry_pending", "_selected_action": [ids["idle"]],
                                                   "index": "0"}),
        ("send-event", "/admin/stacks/stack/", {"action": "send_event", "_selected_action": [ids["idle"]],
                                                "post": "yes", "event": "LAUNCH"}),
        ("move-version", "/admin/stacks/stack/", {"action": "move_to_newest_version",
                                                  "_selected_action": [ids["idle"]], "index": "0"}),
        ("retry-task", "/admin/stacks/task/", {"action": "retry", "_selected_action": [ids["task"]],
                                               "index": "0"}),
    ]


ACTIONS = ["retry-failed", "retry-pending", "send-event", "move-version", "retry-task"]


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("action", ACTIONS)
def test_it_lets_operators_and_admins_run_stack_actions_and_nobody_else(client, people, machine, action, role):
    from machines_app.services import save_machine

    launch("alpha")
    fail_task("alpha")
    create_idle("idle")
    launch("pending")
    save_machine(MACHINE, CHANGED_YAML, actor="tests", source="tests")
    failed_task = Stack.objects.get(key="alpha").current_tasks().get(name="build")
    ids = {"stack": Stack.objects.get(key="alpha").pk, "idle": Stack.objects.get(key="idle").pk,
           "task": failed_task.pk}
    if action == "retry-pending":
        ids["idle"] = Stack.objects.get(key="pending").pk
    _, url, data = next(a for a in stack_actions(ids) if a[0] == action)
    client.force_login(people[role])

    client.post(url, data, follow=True)

    recorded = StackEvent.objects.filter(source="admin", actor=people[role].username, outcome="applied")
    assert recorded.count() == (0 if role == "viewer" else 1)


@pytest.mark.parametrize(("role", "saved"), [("viewer", False), ("operator", True), ("admin", True)])
def test_it_lets_operators_and_admins_edit_metadata(client, people, machine, role, saved):
    launch("alpha", branch="main")
    client.force_login(people[role])
    url = reverse("admin:stacks_stack_metadata", args=[Stack.objects.get(key="alpha").pk])
    data = {"meta_shown": '{"branch": "main"}', "meta_original": "branch", "meta_key": "branch", "meta_value": "next"}

    response = client.post(url, data)

    assert response.status_code == (302 if saved else 403)
    assert Stack.objects.get(key="alpha").metadata == {"branch": "next" if saved else "main"}


@pytest.mark.parametrize(("role", "allowed"), [("viewer", False), ("operator", False), ("admin", True)])
def test_it_lets_only_admins_save_machines_and_revoke_tokens_in_the_admin(client, people, machine, role, allowed):
    _, raw = issue_token(None, people["viewer"], "ci", "viewer")
    token = ApiToken.objects.get()
    client.force_login(people[role])
    url = reverse("admin:machines_app_machine_change", args=[machine.machine_id])

    client.post(url, {**form_data(client.get(url).content.decode(), "machine_form"), "yaml": CHANGED_YAML})
    client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk], "index": "0"})

    assert Machine.objects.get(name=MACHINE).versions.count() == (2 if allowed else 1)
    token.refresh_from_db()
    assert (token.revoked_at is not None) is allowed


# --- "My tokens" ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_it_shows_my_tokens_to_every_signed_in_role(client, people, role):
    if people[role] is not None:
        client.force_login(people[role])
    response = client.get("/tokens/")
    if role == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    else:
        assert response.status_code == 200


# --- WebSockets -----------------------------------------------------------------------------------

WS_ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def ws_connect(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, object, dict | None]:
    """Connect, read the first message when accepted, disconnect. Consumers run on this thread's DB connection."""

    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, detail = await communicator.connect(timeout=5)
        first = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, detail, first

    return async_to_sync(attempt)()


def session_headers(client, user) -> list[tuple[bytes, bytes]]:
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize("path", ["/ws/stacks/", "/ws/stacks/alpha/"])
@pytest.mark.parametrize("role", ROLES)
def test_it_enforces_roles_on_websockets(client, people, machine, role, path, auth):
    launch("alpha")
    user = people[role]
    headers = list(WS_ORIGIN)
    if user is not None and auth == "session":
        headers += session_headers(client, user)
    elif user is not None:
        headers.append((b"authorization", f"Bearer {issue_token(None, user, 'ws', role)[1]}".encode()))

    connected, detail, first = ws_connect(path, headers)

    if role == "anonymous":
        assert (connected, detail) == (False, 4401)
    else:
        assert connected and first["type"] == "snapshot"


@pytest.mark.django_db(transaction=True)
def test_it_refuses_websockets_with_a_revoked_token_or_a_foreign_origin(client, people, machine):
    token, raw = issue_token(None, people["viewer"], "ws", "viewer")
    bearer = (b"authorization", f"Bearer {raw}".encode())
    assert ws_connect("/ws/stacks/", [*WS_ORIGIN, bearer])[0]
    foreign = [(b"origin", b"http://evil.example"), (b"host", b"localhost"), bearer]
    assert not ws_connect("/ws/stacks/", foreign)[0]
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=token.created_at)
    assert ws_connect("/ws/stacks/", [*WS_ORIGIN, bearer])[:2] == (False, 4401)
