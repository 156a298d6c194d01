"""Shared fixtures: named users per role, machines from small YAML texts, a running CloudSeam."""

from __future__ import annotations

import os

import pytest

from tests.live_server import Server

SIMPLE_MACHINE = """
version: 1
events: [LAUNCH, DEPLOY, DESTROY, NOTE]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: PROVISION}]
  PROVISION:
    tasks: [db, cert]
    on:
      NEXT: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  RUN:
    on:
      DEPLOY: [{action: advance, state: PROVISION}]
      NOTE: [{action: no-op}]
      DESTROY: [{action: advance, state: TEARDOWN}]
  TEARDOWN:
    terminal: true
    tasks: [nuke]
  GONE:
    terminal: true
tasks:
  db: {executor: external}
  cert: {executor: external}
  nuke: {executor: external}
"""


@pytest.fixture
def make_user(db, django_user_model):
    from django.contrib.auth.models import Group

    def make(username: str, role: str | None) -> object:
        user = django_user_model.objects.create_user(username=username, password="correct-horse-battery")
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def viewer(make_user):
    return make_user("vera-viewer", "viewer")


@pytest.fixture
def operator(make_user):
    return make_user("otto-operator", "operator")


@pytest.fixture
def admin_user(make_user):
    return make_user("ada-admin", "admin")


@pytest.fixture
def simple_machine(db):
    from machines_app.services import save_machine

    return save_machine("simple", SIMPLE_MACHINE, actor="tests", source="tests").version


@pytest.fixture(scope="session")
def cloudseam_server():
    """One real CloudSeam (serve + embedded Redis + 2 workers) shared by the end-to-end tests."""
    if os.environ.get("CLOUDSEAM_TEST_DATABASE") == "postgres":
        pytest.skip("end-to-end tests run in the SQLite pass")
    server = Server(workers=2).start()
    yield server
    server.cleanup()
