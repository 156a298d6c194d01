"""Helpers the tests share: making people, the small `demo` machine, stacks in known states, form fields.

The fixtures built from them (the named people, the machines, logged-in clients) live in
`tests/conftest.py`; this module holds plain functions a test calls directly.
"""

from __future__ import annotations

from html.parser import HTMLParser

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from stacks import services
from stacks.models import Stack

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


# --- the `shop` machine of the page tests -------------------------------------------------------

SHOP = """\
version: 1
events: [LAUNCH, PING, PAUSE, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  RUN:
    on:
      PING: [{action: no-op}]
      PAUSE: [{action: advance, state: WAIT}]
      DESTROY: [{action: advance, state: GONE}]
  WAIT:
    tasks: [approve, check]
    on:
      NEXT: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  approve:
    executor: external
    config:
      instructions: "Check the shop & <b>sign</b> off, then mark this task done."
  check:
    executor: external
"""

SHOP_V2 = SHOP.replace("events: [LAUNCH, PING, PAUSE, DESTROY]", "events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]")

XSS = "<img src=x onerror=alert(1)>"
OTHER = SHOP.replace("tasks:\n  approve:", "tasks:\n  approve2:").replace("[approve, check]", "[approve2, check]")


def launch_shop(stack_id: str = "feature-1", event: str = "LAUNCH", **fields) -> Stack:
    result = services.send(stack_id, event, machine="shop", actor="test", source="test", **fields)
    assert result.ok, result.body
    return Stack.objects.active().get(key=stack_id)


def waiting_shop_stack(stack_id: str = "feature-1") -> Stack:
    """A stack in WAIT, whose two external tasks are pending."""
    launch_shop(stack_id)
    assert services.send(stack_id, "PAUSE", actor="test", source="test").ok
    return Stack.objects.active().get(key=stack_id)


def removed_shop_stack(stack_id: str = "old-1") -> Stack:
    launch_shop(stack_id)
    assert services.send(stack_id, "DESTROY", actor="test", source="test").ok
    return Stack.objects.removed().get(key=stack_id)


def page_urls(stack: Stack, gone: Stack) -> list[str]:
    return [
        reverse("stacks-dashboard"),
        reverse("stacks-dashboard") + "?format=json",
        reverse("stacks-detail", args=[stack.key]),
        reverse("stacks-output", args=[stack.key]),
        reverse("stacks-removed"),
        reverse("stacks-removed-detail", args=[gone.pk]),
        reverse("machines-list"),
        reverse("machines-detail", args=["shop"]),
        reverse("machines-export", args=["shop", "dot"]),
        reverse("machines-export", args=["shop", "mermaid"]),
    ]


def page_user(name: str, group: str | None) -> User:
    user = User.objects.create_user(name, password="a long test password")
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def page_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client
