"""A burst far beyond the database connection pool, against a real `serve` on PostgreSQL.

Every request is answered 200, 409 or a JSON 503 with Retry-After (never a 500 or an HTML page),
the server never holds more connections than its pools allow, and it is healthy again at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.live_server import Server

pytestmark = pytest.mark.e2e

DATABASE = os.environ.get("CLOUDSEAM_E2E_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/cs_perf_e2e")
POOL_SIZE = 4
BURST = 200
BURST_MACHINE = """
version: 1
events: [NOTE, DESTROY]
states:
  INIT:
    on:
      NOTE: [{action: no-op}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
"""


def _admin(sql: str) -> str | None:
    """Run one statement on the server's `postgres` database; the reason when it cannot be reached."""
    try:
        import psycopg

        with psycopg.connect(DATABASE.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql)
    except Exception as exc:  # noqa: BLE001 - the test is skipped without PostgreSQL
        return str(exc).strip()[:200]
    return None


def _connections() -> int:
    import psycopg

    name = DATABASE.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]


@pytest.fixture(scope="module")
def pg_server():
    name = DATABASE.rsplit("/", 1)[1]
    reason = _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)') or _admin(f'CREATE DATABASE "{name}"')
    if reason:
        pytest.skip(f"no PostgreSQL for the pool test: {reason}")
    server = Server(workers=1, env={"DATABASE_URL": DATABASE, "CLOUDSEAM_DB_POOL_SIZE": str(POOL_SIZE),
                                    "CLOUDSEAM_DB_POOL_TIMEOUT": "1"})
    try:
        server.start()
        status, body = server.api("PUT", "/api/machines/burst", raw=BURST_MACHINE.encode(),
                                  content_type="application/yaml")
        assert status in (200, 201), body
        yield server
    finally:
        server.cleanup()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _request(server: Server, token: str, index: int) -> tuple[int, str, dict, str | None]:
    if index % 3 == 0:
        request = urllib.request.Request(server.url + "/api/stacks?page=1", method="GET")
    else:
        body = {"stackId": f"burst-{index % 20}", "event": "NOTE", "machine": "burst"}
        request = urllib.request.Request(server.url + "/api/events", data=json.dumps(body).encode(), method="POST")
        request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), json.loads(response.read()), None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"not json": raw[:200].decode(errors="replace")}
        return exc.code, exc.headers.get("Content-Type", ""), body, exc.headers.get("Retry-After")


def test_it_answers_a_burst_beyond_the_pool_with_json_and_recovers_at_once(pg_server):
    token = pg_server.token("operator")
    start = threading.Barrier(BURST)
    answers: list = [None] * BURST
    peak = {"connections": 0}
    done = threading.Event()

    def client(index: int) -> None:
        start.wait()
        try:
            answers[index] = _request(pg_server, token, index)
        except OSError as exc:
            answers[index] = (repr(exc), "", {}, None)

    def watch() -> None:
        while not done.is_set():
            peak["connections"] = max(peak["connections"], _connections())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(BURST)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(120)
    done.set()
    watcher.join(5)

    statuses = {answer[0] for answer in answers}
    assert statuses <= {200, 409, 503}, [a for a in answers if a[0] not in (200, 409, 503)][:3]
    assert all(answer[1].startswith("application/json") for answer in answers), answers[:3]
    overloaded = [answer for answer in answers if answer[0] == 503]
    assert all(answer[3] and answer[2]["code"] == "overloaded" for answer in overloaded)
    assert sum(answer[0] == 200 for answer in answers) > 0
    # serve itself, the web process and the worker: a pool each, never one connection per thread.
    assert peak["connections"] <= 3 * POOL_SIZE, peak
    status, body = pg_server.api("GET", "/api/stacks", role="operator")
    assert status == 200, body
    status, body = pg_server.api("POST", "/api/events", {"stackId": "after", "event": "NOTE", "machine": "burst"},
                                 role="operator")
    assert status == 200, body
