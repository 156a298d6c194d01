"""Every shared fixture: the named people of each role, logged-in clients, tokens, machines, a running CloudSeam."""

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


@pytest.fixture(autouse=True)
def _quick_password_hashing(settings):
    """Django's real hasher takes ~0.3 s per password by design; logging in with a password is what
    the tests check, not the cost of the hash. Served CloudSeams (subprocesses) keep the defaults."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- people: one per role, by name ---------------------------------------------------------------
# vera is a viewer, otto an operator, ada an admin (by group, not a superuser, so the role system
# itself is what lets her in); all three are staff so they can open the admin console. nora is a
# viewer who is not staff; root is a superuser.


@pytest.fixture
def make_user(db):
    """Users in a role (or none), not staff; `tests.support.make_user` takes staff and a password too."""
    from tests.support import make_user as create

    return lambda username, role: create(username, role, staff=False)


@pytest.fixture
def vera(db):
    from tests.support import make_user

    return make_user("vera", "viewer")


@pytest.fixture
def otto(db):
    from tests.support import make_user

    return make_user("otto", "operator")


@pytest.fixture
def ada(db):
    from tests.support import make_user

    return make_user("ada", "admin")


@pytest.fixture
def nora(db):
    from tests.support import make_user

    return make_user("nora", "viewer", staff=False)


@pytest.fixture
def root(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", password=None)


@pytest.fixture
def people(vera, otto, ada) -> dict:
    """The staff user for each role, by role name; None stands for anonymous."""
    return {"anonymous": None, "viewer": vera, "operator": otto, "admin": ada}


def _logged_in(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_viewer(vera):
    return _logged_in(vera)


@pytest.fixture
def as_operator(otto):
    return _logged_in(otto)


@pytest.fixture
def as_admin(ada):
    return _logged_in(ada)


@pytest.fixture
def bearer(make_user):
    """`bearer("operator")`: headers carrying a fresh token of a new user in that role."""
    from cloudseam_site.accounts.tokens import issue_token

    def make(role: str) -> dict:
        _, raw = issue_token(None, make_user(f"api-{role}", role), name="tests", role=role)
        return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    return make


# --- machines ---------------------------------------------------------------------------------------


@pytest.fixture
def simple_machine(db):
    from machines_app.services import save_machine

    return save_machine("simple", SIMPLE_MACHINE, actor="tests", source="tests").version


@pytest.fixture
def machine(db):
    """The `demo` machine of `tests.support` (a sleep task and an external one in DEPLOY)."""
    from machines_app.services import save_machine
    from tests.support import MACHINE, MACHINE_YAML

    return save_machine(MACHINE, MACHINE_YAML, actor="tests", source="tests").version


@pytest.fixture
def shop(db):
    """The `shop` machine of the page tests (external tasks with instructions in WAIT)."""
    from machines_app.services import save_machine
    from tests.support import SHOP

    return save_machine("shop", SHOP, actor="test", source="test").version.machine


# --- a running CloudSeam ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cloudseam_server():
    """One real CloudSeam (serve + embedded Redis + 2 workers) shared by the end-to-end tests."""
    if os.environ.get("CLOUDSEAM_TEST_DATABASE") == "postgres":
        pytest.skip("end-to-end tests run in the SQLite pass")
    server = Server(workers=2).start()
    yield server
    server.cleanup()
