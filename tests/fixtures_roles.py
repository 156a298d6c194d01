"""Named people for each role, a small machine, and helpers for the admin, roles, tokens and security tests.

vera is a viewer, otto an operator, ada an admin (by group, not a superuser, so the role system
itself is what lets her in). All three are staff so they can open the admin console; nora is a
viewer who is not staff; root is a superuser. Test modules load this file with
`pytest_plugins = ["tests.fixtures_roles"]` and import the helpers by name. (PYTEST_DONT_REWRITE:
the module is imported before pytest registers it as a plugin; its checks raise on their own.)
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from machines_app.services import save_machine
from stacks import services

PASSWORD = "seam-Testing-Password-42"
MACHINE = "demo"
MACHINE_YAML = """\
version: 1
events: [LAUNCH, DESTROY, PAUSE]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: DEPLOY}]
      PAUSE: [{action: no-op}]
  DEPLOY:
    tasks: [build, approve]
    on:
      NEXT: [{action: advance, state: LIVE}]
      DESTROY: [{action: advance, state: GONE}]
  LIVE:
    on:
      DESTROY: [{action: advance, state: GONE}]
      PAUSE: [{action: no-op}]
  GONE:
    terminal: true
tasks:
  build:
    executor: sleep
    config: {seconds: 1}
  approve:
    executor: external
"""


def make_user(username: str, role: str | None, *, staff: bool = True, password: str | None = None):
    """Tests log in with force_login; pass a password only to test logging in (hashing one costs ~0.3 s)."""
    user = get_user_model().objects.create_user(username, password=password, is_staff=staff)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def vera(db):
    return make_user("vera", "viewer")


@pytest.fixture
def otto(db):
    return make_user("otto", "operator")


@pytest.fixture
def ada(db):
    return make_user("ada", "admin")


@pytest.fixture
def nora(db):
    return make_user("nora", "viewer", staff=False)


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", password=None)


@pytest.fixture
def people(vera, otto, ada) -> dict:
    """The staff user for each role, by role name; None stands for anonymous."""
    return {"anonymous": None, "viewer": vera, "operator": otto, "admin": ada}


@pytest.fixture
def machine(db):
    return save_machine(MACHINE, MACHINE_YAML, actor="tests", source="tests").version


def launch(stack_id: str, **metadata) -> services.EventResult:
    """A stack in DEPLOY with two pending tasks (build, approve)."""
    result = services.send(stack_id, "LAUNCH", machine=MACHINE, metadata=metadata or None, actor="tests",
                           source="tests")
    return _ok(result)


def create_idle(stack_id: str) -> services.EventResult:
    """A stack that stays in INIT (PAUSE is a no-op there)."""
    return _ok(services.send(stack_id, "PAUSE", machine=MACHINE, actor="tests", source="tests"))


def fail_task(stack_id: str, task: str = "build") -> services.EventResult:
    return _ok(services.send(stack_id, "TASK_ERROR", task={"name": task}, description="exit code 3",
                             actor="tests", source="worker"))


def _ok(result: services.EventResult) -> services.EventResult:
    if not result.ok:
        raise AssertionError(f"the test setup was refused: {result.body}")
    return result


class _FormFields(HTMLParser):
    """What a browser would submit from one form: inputs, checked boxes, textareas, selected options."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, []
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "name" not in a and tag != "option":
            return
        if tag == "input" and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "on" if a.get("type") == "checkbox" else "")))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields.append((a["name"], ""))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))

    def handle_data(self, data):
        if self._textarea is not None:
            name, value = self.fields[-1]
            if not value and data.startswith("\n"):
                data = data[1:]  # browsers drop the newline that follows <textarea>
            self.fields[-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None


def form_data(html: str, form_id: str) -> dict:
    """The fields of the form with this id as a dict for the test client (lists for repeated names)."""
    parser = _FormFields(form_id)
    parser.feed(html)
    data: dict = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in data.items()}
