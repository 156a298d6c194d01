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
def make_user(db):
    """Users in a role (or none); see tests.fixtures_roles for the named users of the role tables."""
    from tests.fixtures_roles import make_user as create

    return lambda username, role: create(username, role, staff=False)


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
