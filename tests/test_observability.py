"""Health probes and Prometheus metrics (issue #11, part 1): real Redis outages, real RQ workers,
totals checked against the database on SQLite and PostgreSQL, and two real web processes sharing
one database and one Redis."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count, F
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker

from cloudseam_site import embedded_redis, processes
from cloudseam_site.accounts.tokens import issue_token
from cloudseam_site.env import ConfigError, env_networks
from machines_app.services import save_machine
from stacks.models import Stack, StackEvent, Task
from stacks.observability import db_metrics
from stacks.observability.beat import beat
from stacks.observability.connections import probe_redis
from stacks.runtime.jobs import run_task
from stacks.services import send
from tests.live_server import ROOT, Server, free_port

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}

MACHINE = """
version: 1
events: [LAUNCH, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [quick, approve]
    on:
      NEXT: [{action: advance, state: LIVE}]
      DESTROY: [{action: advance, state: GONE}]
  LIVE:
    on:
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  quick: {executor: sleep, config: {seconds: 0}}
  approve: {executor: external}
"""


# --- helpers -------------------------------------------------------------------------------------


def scrape_text(text: str) -> dict[str, dict[tuple, float]]:
    """Sample name -> {sorted label pairs: value}, parsed by prometheus_client's own parser."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return scrape_text(response.content.decode())


def by_labels(samples: dict[tuple, float], *names: str) -> dict[tuple, float]:
    """Sum samples over every label but `names`, keyed by those labels' values."""
    out: Counter = Counter()
    for labels, value in samples.items():
        values = dict(labels)
        out[tuple(values[n] for n in names)] += value
    return {k: v for k, v in out.items() if v}


def worker_redis() -> redis.Redis:
    """A client of its own for test workers: an RQ Worker raises its client's socket timeout to minutes."""
    return redis.Redis.from_url(django_settings.REDIS_URL)


def register_worker(name: str | None = None) -> SimpleWorker:
    """A real RQ worker record with a fresh heartbeat in the Redis the probes use."""
    client = worker_redis()
    worker = SimpleWorker([Queue("default", connection=client)], connection=client,
                          name=name or f"test-{secrets.token_hex(4)}")
    worker.register_birth()
    return worker


def make_history() -> None:
    """Stacks in several states, tasks run by the real job body, rejected events and a removal."""
    save_machine("obs", MACHINE, actor="tests")
    for key in ("a", "b", "c", "d"):
        send(key, "LAUNCH", machine="obs", actor="tests", source="api")
    for task in Task.objects.filter(name="quick"):
        run_task(task.id)
    Task.objects.filter(stack__key="b", name="quick").update(started_at=F("finished_at") - timedelta(seconds=45))
    for key in ("a", "b"):
        send(key, "TASK_COMPLETED", task={"name": "approve"}, actor="tests", source="ui")
    send("a", "DESTROY", actor="tests", source="cli")
    send("c", "LAUNCH", actor="tests", source="api")  # rejected: not accepted in WORK
    send("zz", "LAUNCH", actor="tests", source="api")  # rejected: unknown stack without a machine


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def live_worker():
    worker = register_worker()
    yield worker
    worker.register_death()


@pytest.fixture
def private_redis(settings):
    """A real redis-server of this test only; `stop()` and `start()` it to make a real outage."""

    class PrivateRedis:
        def __init__(self) -> None:
            self.dir = Path(tempfile.mkdtemp(prefix="cs-h-"))
            self.socket = self.dir / "redis.sock"
            self.process = None

        def start(self) -> None:
            with open(self.dir / "redis.log", "ab") as log:
                self.process = embedded_redis.start(self.dir, self.socket, log)

        def stop(self) -> None:
            processes.stop([self.process], grace=5)

    redis_server = PrivateRedis()
    redis_server.start()
    settings.REDIS_URL = f"unix://{redis_server.socket}"
    yield redis_server
    processes.stop([redis_server.process], grace=3)
    shutil.rmtree(redis_server.dir, ignore_errors=True)


@pytest.fixture
def viewer_token(make_user):
    _, raw = issue_token(None, make_user("metrics-viewer", "viewer"), name="prometheus", role="viewer")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- probes --------------------------------------------------------------------------------------


def test_it_says_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_is_ready_when_the_database_redis_and_a_worker_answer(client, live_worker):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "workers": "ok"}}


@pytest.mark.django_db
def test_it_is_not_ready_without_a_live_worker(client, private_redis):
    body = client.get("/readyz").json()
    assert body["status"] == "unavailable" and "no worker is registered" in body["checks"]["workers"]
    worker = register_worker()
    three_minutes_ago = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    probe_redis().hset(worker.key, "last_heartbeat", three_minutes_ago)  # what a killed worker leaves behind
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "ok",
                                         "workers": "no live worker: the last heartbeat was 3 min ago"}


def cloudseam_worker(name: str):
    from stacks.runtime.worker import CloudSeamWorker

    client = worker_redis()
    worker = CloudSeamWorker([Queue("default", connection=client)], connection=client, name=name)
    worker.register_birth()
    return worker


@pytest.mark.django_db
def test_it_counts_a_cloudseam_worker_beating_from_its_liveness_thread(client, private_redis):
    worker = cloudseam_worker("beater")
    probe_redis().hset(worker.key, "last_heartbeat", "2020-01-01T00:00:00.000000Z")
    assert client.get("/readyz").status_code == 503
    beat(worker)
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_it_names_redis_when_redis_stops_and_is_ready_again_when_it_is_back(client, private_redis):
    worker = cloudseam_worker("survivor")
    assert client.get("/readyz").status_code == 200
    private_redis.stop()  # a real outage: the server is gone, its socket refuses connections
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"].startswith(f"Redis at {private_redis.socket} did not answer: ")
    assert checks["workers"].startswith("could not list workers: Redis at ")
    beat(worker)  # the worker's liveness thread keeps trying while Redis is away, and never raises
    private_redis.start()
    probe_redis().flushall()  # a Redis that came back without its data (no persistence, or a new one)
    checks = client.get("/readyz").json()["checks"]
    assert checks["redis"] == "ok" and checks["workers"].startswith("no live worker: no worker is registered")
    worker.heartbeat()  # RQ's own beat re-creates only the heartbeat field
    beat(worker)  # the liveness thread registers the worker again
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert worker.name in [w.name for w in SimpleWorker.all(connection=probe_redis())]


@pytest.mark.django_db
def test_it_answers_within_seconds_when_redis_hangs(client, private_redis):
    register_worker()
    private_redis.process.send_signal(signal.SIGSTOP)  # frozen: accepts connections, never answers
    try:
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    assert response.status_code == 503 and elapsed < 4.5
    assert "did not answer" in response.json()["checks"]["redis"]


@pytest.mark.django_db
def test_it_never_shows_the_redis_password(client, settings):
    port = free_port()  # nothing listens there
    settings.REDIS_URL = f"redis://:s3cret-pw@127.0.0.1:{port}/3"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert f"Redis at 127.0.0.1:{port}/3 did not answer" in response.json()["checks"]["redis"]
    assert b"s3cret-pw" not in response.content


@pytest.mark.django_db
def test_it_reports_a_broken_check_as_failing_not_as_a_500(client, monkeypatch, live_worker):
    from stacks.observability import health

    def broken() -> str:
        raise RuntimeError("a bug in the check")

    monkeypatch.setitem(health.CHECKS, "workers", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == "the workers check failed: a bug in the check"


# --- metrics: access -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_metrics_to_anonymous_requests_from_other_addresses(client):
    response = client.get("/metrics", **OUTSIDE)
    assert response.status_code == 401 and response["Content-Type"].startswith("text/plain")
    assert b"CLOUDSEAM_METRICS_ALLOW" in response.content and response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_it_refuses_metrics_to_bad_tokens_even_from_allowed_addresses(client):
    for remote in ("203.0.113.9", "127.0.0.1"):
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer cs_nope", REMOTE_ADDR=remote)
        assert response.status_code == 401 and b"unknown, revoked or expired" in response.content


@pytest.mark.django_db
def test_it_refuses_metrics_to_a_token_without_a_role(client, make_user):
    _, raw = issue_token(None, make_user("nobody", None), name="t", role="viewer")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}", **OUTSIDE)
    assert response.status_code == 403 and b"viewer role" in response.content


@pytest.mark.django_db
def test_it_serves_metrics_to_viewers_and_allowed_addresses(client, viewer_token, settings):
    assert client.get("/metrics", **viewer_token, **OUTSIDE).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    settings.CLOUDSEAM_METRICS_ALLOW = env_networks("X", "10.1.0.0/16,203.0.113.0/24")
    assert client.get("/metrics", **OUTSIDE).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401


@pytest.mark.django_db
def test_it_answers_503_not_500_when_a_token_cannot_be_checked(client, monkeypatch):
    from django.db import OperationalError

    def database_away(raw):
        raise OperationalError("connection to server at 127.0.0.1 port 5432 failed: Connection refused")

    monkeypatch.setattr("cloudseam_site.accounts.auth.find_token", database_away)
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer cs_whatever", **OUTSIDE)
    assert response.status_code == 503 and b"Connection refused" in response.content


def test_it_reads_the_allow_list_loudly(monkeypatch):
    monkeypatch.setenv("CLOUDSEAM_METRICS_ALLOW", "10.0.0.0/8, 2001:db8::/32")
    assert env_networks("CLOUDSEAM_METRICS_ALLOW", "") == (ipaddress.ip_network("10.0.0.0/8"),
                                                           ipaddress.ip_network("2001:db8::/32"))
    monkeypatch.setenv("CLOUDSEAM_METRICS_ALLOW", "10.0.0.300")
    with pytest.raises(ConfigError, match="'10.0.0.300' is not an IP address"):
        env_networks("CLOUDSEAM_METRICS_ALLOW", "")


# --- metrics: figures ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_reports_stack_task_and_event_totals_that_agree_with_the_database(client):
    make_history()
    samples = scrape(client)
    active = Stack.objects.active().values_list("machine__name", "state").annotate(n=Count("id"))
    assert by_labels(samples["cloudseam_stacks"], "machine", "state") == {(m, s): n for m, s, n in active}
    assert samples["cloudseam_stacks"][(("machine", "obs"), ("state", "LIVE"))] == 1
    assert samples["cloudseam_stacks_removed_total"][()] == Stack.objects.removed().count() == 1
    tasks = Task.objects.values_list("executor", "status").annotate(n=Count("id"))
    assert by_labels(samples["cloudseam_tasks"], "executor", "status") == {(e, s): n for e, s, n in tasks}
    events = StackEvent.objects.values_list("outcome", "source").annotate(n=Count("id"))
    assert by_labels(samples["cloudseam_events_total"], "outcome", "source") == {(o, s): n for o, s, n in events}
    assert by_labels(samples["cloudseam_events_total"], "outcome")[("rejected",)] == 2


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_counts_task_durations_into_buckets(client):
    make_history()
    Task.objects.filter(stack__key="c", name="quick").update(finished_at=datetime.now(UTC) - timedelta(hours=25))
    samples = scrape(client)
    buckets = {dict(labels)["le"]: value for labels, value in samples["cloudseam_task_duration_seconds_bucket"].items()
               if dict(labels)["executor"] == "sleep"}
    # quick ran ~0 s for a and d, 45 s for b; c's finished outside the 24 h window.
    assert buckets["0.1"] == 2 and buckets["30.0"] == 2 and buckets["60.0"] == 3 and buckets["+Inf"] == 3
    assert samples["cloudseam_task_duration_seconds_gcount"][(("executor", "sleep"),)] == 3
    assert 45 <= samples["cloudseam_task_duration_seconds_gsum"][(("executor", "sleep"),)] < 47


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_reads_metrics_with_the_same_number_of_queries_however_many_stacks(client):
    save_machine("obs", MACHINE, actor="tests")
    send("s0", "LAUNCH", machine="obs", actor="tests", source="api")
    with CaptureQueriesContext(connection) as few:
        db_metrics_list = list(db_metrics.collect(datetime.now(UTC)))
    for i in range(1, 15):
        send(f"s{i}", "LAUNCH", machine="obs", actor="tests", source="api")
    with CaptureQueriesContext(connection) as many:
        list(db_metrics.collect(datetime.now(UTC)))
    assert len(few) == len(many) == 5 and len(db_metrics_list) == 5


@pytest.mark.django_db
def test_it_reports_queues_and_workers_from_redis(client, private_redis, live_worker):
    queue = Queue("default", connection=probe_redis())
    queue.enqueue("tests.executor_targets.no_such_function", job_id="waiting-job")
    probe_redis().hset("rq:job:waiting-job", "enqueued_at",
                       (datetime.now(UTC) - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    samples = scrape(client)
    assert samples["cloudseam_queue_jobs"][(("queue", "default"),)] == 1
    assert 89 <= samples["cloudseam_queue_oldest_job_age_seconds"][(("queue", "default"),)] < 100
    assert samples["cloudseam_queue_failed_jobs"][(("queue", "default"),)] == 0
    assert samples["cloudseam_workers_live"][()] == 1
    assert samples["cloudseam_worker_heartbeat_age_seconds"][(("worker", live_worker.name),)] < 5
    assert samples["cloudseam_metrics_source_up"] == {(("source", "database"),): 1, (("source", "redis"),): 1}


@pytest.mark.django_db
def test_it_still_answers_metrics_from_the_database_while_redis_is_down(client, private_redis):
    make_history()
    private_redis.stop()
    samples = scrape(client)
    assert samples["cloudseam_metrics_source_up"] == {(("source", "database"),): 1, (("source", "redis"),): 0}
    assert "cloudseam_stacks" in samples and "cloudseam_queue_jobs" not in samples


@pytest.mark.django_db
def test_it_ships_a_grafana_dashboard_that_uses_only_metrics_we_emit(client, live_worker):
    make_history()
    emitted = set(scrape(client))
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 8
    for expr in exprs:
        names = set(re.findall(r"\bcloudseam_[a-z_]+", expr))
        assert names and names <= emitted, f"{expr!r} uses {names - emitted}"


# --- end to end ----------------------------------------------------------------------------------

E2E_DB = "cs_health_e2e"
E2E_REDIS_DB = 11
POSTGRES = "postgres://postgres@127.0.0.1:5432"


def _fresh_postgres_database() -> str:
    import psycopg

    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server for the shared-database test: {exc}")
    with admin:
        admin.execute(f"DROP DATABASE IF EXISTS {E2E_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {E2E_DB}")
    return f"{POSTGRES}/{E2E_DB}"


def _fresh_redis_db() -> str:
    import redis

    url = f"redis://127.0.0.1:6379/{E2E_REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_timeout=2).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 for the shared-Redis test: {exc}")
    return url


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


DB_FAMILIES = ("cloudseam_stacks", "cloudseam_stacks_removed_total", "cloudseam_tasks", "cloudseam_events_total")


@pytest.mark.e2e
def test_it_gives_the_same_totals_from_two_web_processes_sharing_one_database_and_redis():
    import psycopg

    env = {"DATABASE_URL": _fresh_postgres_database(), "REDIS_URL": _fresh_redis_db()}
    first = Server(workers=1, env=env, machines={"obs": MACHINE}, include_demo_machines=False).start()
    second = None
    try:
        second = Server(workers=1, env=env, machines={"obs": MACHINE}, include_demo_machines=False).start()
        for key in ("a", "b", "c"):
            status, _ = first.api("POST", "/api/events", {"stackId": key, "event": "LAUNCH", "machine": "obs"},
                                  role="operator")
            assert status == 200
        second.api("POST", "/api/events", {"stackId": "a", "event": "DESTROY"}, role="operator")
        second.api("POST", "/api/events", {"stackId": "b", "event": "LAUNCH"}, role="operator")  # rejected
        first.wait_for("c", lambda s: any(t["name"] == "quick" and t["status"] == "SATISFIED" for t in s["tasks"]))
        token = first.token("viewer")  # tokens live in the shared database: one works on both
        texts = [_get(f"{server.url}/metrics", token) for server in (first, second)]
        assert [status for status, _ in texts] == [200, 200]
        one, two = (scrape_text(body.decode()) for _, body in texts)
        for name in DB_FAMILIES:
            assert one[name] == two[name], name
        assert one["cloudseam_workers_live"] == two["cloudseam_workers_live"] == {(): 2}
        with psycopg.connect(env["DATABASE_URL"]) as db:
            active = db.execute("SELECT count(*) FROM stacks_stack WHERE removed_at IS NULL").fetchone()[0]
            removed = db.execute("SELECT count(*) FROM stacks_stack WHERE removed_at IS NOT NULL").fetchone()[0]
            tasks = db.execute("SELECT count(*) FROM stacks_task").fetchone()[0]
            events = db.execute("SELECT count(*) FROM stacks_stackevent").fetchone()[0]
        assert sum(one["cloudseam_stacks"].values()) == active == 2
        assert one["cloudseam_stacks_removed_total"][()] == removed == 1
        assert sum(one["cloudseam_tasks"].values()) == tasks
        assert sum(one["cloudseam_events_total"].values()) == events
        assert _get(f"{second.url}/readyz")[0] == 200 and _get(f"{second.url}/healthz")[0] == 200
        assert _get(f"{second.url}/metrics")[0] == 200  # 127.0.0.1 is allowed without a token by default
        assert _get(f"{second.url}/metrics", "cs_not-a-token")[0] == 401
    finally:
        first.cleanup()
        if second is not None:
            second.cleanup()


def _redis_server_of(server: Server):
    return next(p for p in server.children() if p.name() == "redis-server")


def _wait_gone(process, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"{process} did not exit")


def _wait_status(url: str, wanted: int, timeout: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    status, body = 0, b"{}"
    while time.monotonic() < deadline:
        status, body = _get(url)
        if status == wanted:
            break
        time.sleep(0.5)
    return status, json.loads(body)


@pytest.mark.e2e
def test_it_turns_unready_when_serve_loses_its_redis_and_ready_when_it_returns():
    server = Server(workers=1, include_demo_machines=False).start()
    restarted = None
    try:
        ready = f"{server.url}/readyz"
        assert _wait_status(ready, 200, 20)[0] == 200
        redis_server = _redis_server_of(server)
        redis_server.send_signal(signal.SIGSTOP)  # frozen first: the probe must not hang
        started = time.monotonic()
        status, body = _get(ready)
        assert status == 503 and time.monotonic() - started < 6
        assert "did not answer" in json.loads(body)["checks"]["redis"]
        redis_server.send_signal(signal.SIGCONT)
        assert _wait_status(ready, 200, 20)[0] == 200
        redis_server.terminate()  # stopped (serve does not reap it: it stays a zombie until serve exits)
        _wait_gone(redis_server)
        status, body = _wait_status(ready, 503, 10)
        assert status == 503 and body["checks"]["database"] == "ok" and "Redis at" in body["checks"]["redis"]
        socket_path = server.data_dir / "redis.sock"
        with open(server.data_dir / "redis-restart.log", "ab") as log:
            restarted = embedded_redis.start(server.data_dir, socket_path, log)
        status, body = _wait_status(ready, 200, 40)
        assert status == 200, body
    finally:
        server.cleanup()
        if restarted is not None:
            processes.stop([restarted], grace=3)
