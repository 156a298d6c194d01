"""Hostile and stale input (issue #9): every door answers a sentence and the right status, changes
nothing, and never answers 500. Database tests also run on PostgreSQL (`-m postgres`)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from cloudseam_site import strict_json
from cloudseam_site.accounts.tokens import issue_token
from stacks.models import Stack, StackEvent
from stacks.services import handle_event
from tests.support import MACHINE, form_data
from tests.support import launch as launch_demo

LONE = "\ud800"  # a lone surrogate: what the JSON escape \ud800 decodes to


def send(message: dict, actor: str = "tester", source: str = "api"):
    return handle_event(message, actor=actor, source=source)


def launch(stack_id: str = "s1", **extra):
    return send({"stackId": stack_id, "event": "LAUNCH", "machine": "simple", **extra})


# --- 3. a stale completion never brings a removed stack back ---------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("event", ["TASK_COMPLETED", "TASK_ERROR", "NEXT", "RETRY_FAILED_TASKS",
                                   "RETRY_PENDING_TASKS"])
def test_it_never_creates_a_stack_from_a_system_event(simple_machine, event):
    message = {"stackId": "ghost", "event": event, "machine": "simple"}
    if event.startswith("TASK_"):
        message["task"] = {"name": "db"}
    result = send(message, actor="worker", source="worker")
    assert result.status == 404
    assert "stack ghost does not exist" in result.body["error"]
    assert "never create a stack" in result.body["error"]
    assert not Stack.objects.exists()
    assert StackEvent.objects.get(stack_key="ghost").outcome == "rejected"


@pytest.mark.postgres
def test_it_refuses_a_late_completion_for_a_removed_stack_and_records_it_in_its_history(simple_machine):
    first = launch("gone")
    db_id = next(t["id"] for t in first.body["tasks"] if t["name"] == "db")
    assert send({"stackId": "gone", "event": "DESTROY"}).body["removed"] is True
    late = send({"stackId": "gone", "event": "TASK_COMPLETED", "machine": "simple", "task": {"id": db_id}},
                actor="worker", source="worker")
    assert late.status == 404
    assert "it was removed at" in late.body["error"]
    assert "task completions and errors never create a stack" in late.body["error"]
    assert Stack.objects.active().count() == 0 and Stack.objects.count() == 1
    removed = Stack.objects.get()
    entry = StackEvent.objects.filter(stack=removed).first()
    assert (entry.event, entry.outcome, entry.error) == ("TASK_COMPLETED", "rejected", late.body["error"])


@pytest.mark.postgres
def test_it_answers_404_through_the_api_for_a_stale_completion(client, simple_machine, make_user):

    _, raw = issue_token(None, make_user("op", "operator"), "t", "operator")
    body = {"stackId": "gone", "event": "TASK_ERROR", "machine": "simple", "task": {"name": "db"},
            "description": "late"}
    response = client.post("/api/events", json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 404
    assert "never create a stack" in response.json()["error"]
    assert not Stack.objects.exists()


# --- 4. hostile JSON: a sentence and 400 at every door, never a 500 --------------------------------


def test_it_reads_strict_json():
    assert strict_json.loads('{"a": "\\ud83d\\ude00", "b": [1, {"c": null}]}') == {"a": "😀", "b": [1, {"c": None}]}
    for text, words in [('{"a": 1, "a": 2}', "the key 'a' appears twice"),
                        ('{"m": {"k": 1, "k": 1}}', "the key 'k' appears twice"),
                        ('{"id": "\\ud800"}', "not valid Unicode at id"),
                        ('{"metadata": {"k": "x\\udfff"}}', 'not valid Unicode at metadata["k"]'),
                        ('{"metadata": {"\\ud800": 1}}', "not valid Unicode at a key of metadata"),
                        ('[1, ["\\ud800"]]', "not valid Unicode at [1][0]"),
                        ('{"x": NaN}', "NaN, which is not valid JSON")]:
        with pytest.raises(strict_json.JsonInputError, match=words.replace("[", r"\[")):
            strict_json.loads(text)
    assert strict_json.scrub("a" + LONE + "b") == "a\ufffdb"


def api_headers(make_user) -> dict:

    _, raw = issue_token(None, make_user("hostile-op", "operator"), "t", "operator")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


HOSTILE_BODIES = [
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "id": "\\ud800"}', "not valid Unicode at id"),
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "description": "x\\udc00"}',
     "not valid Unicode at description"),
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "metadata": {"k": "\\ud800"}}',
     'not valid Unicode at metadata["k"]'),
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "metadata": {"\\ud800": "v"}}',
     "not valid Unicode at a key of metadata"),
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "stackId": "s2"}', "the key 'stackId' appears twice"),
    ('{"stackId": "s1", "event": "LAUNCH", "machine": "simple", "metadata": {"k": 1, "k": 2}}',
     "the key 'k' appears twice"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("body", "words"), HOSTILE_BODIES)
def test_it_refuses_hostile_json_at_the_api(client, make_user, simple_machine, body, words):
    response = client.post("/api/events", body, content_type="application/json", **api_headers(make_user))
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]
    assert not Stack.objects.exists()


@pytest.mark.postgres
def test_it_refuses_lone_surrogates_in_an_existing_stacks_message_and_keeps_its_page(client, make_user,
                                                                                    simple_machine):
    launch("s1", metadata={"k": "ok"})
    headers = api_headers(make_user)
    body = '{"stackId": "s1", "event": "UPDATE_METADATA", "metadata": {"k": "\\ud800"}}'
    response = client.post("/api/events", body, content_type="application/json", **headers)
    assert response.status_code == 400
    assert Stack.objects.get().metadata == {"k": "ok"}
    assert client.get("/api/stacks/s1", **headers).status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"stackId": "s1", "event": "LAUNCH", "machine": "simple", "id": LONE}, "not valid Unicode at id"),
        ({"stackId": "s1", "event": "LAUNCH", "machine": "simple", "description": LONE},
         "not valid Unicode at description"),
        ({"stackId": "s1", "event": "LAUNCH", "machine": "simple", "metadata": {"k": "a" + LONE}},
         'not valid Unicode at metadata["k"]'),
        ({"stackId": "s1", "event": "LAUNCH", "machine": "simple", "metadata": {LONE: 1}},
         "not valid Unicode at a key of metadata"),
        ({"stackId": "s1", LONE: 1}, "not valid Unicode at a key"),
    ],
)
def test_it_refuses_text_that_is_not_unicode_in_any_message_as_a_last_line_of_defence(simple_machine, message,
                                                                                      words):
    result = send(message)
    assert result.status == 400 and words in result.body["error"]
    assert not Stack.objects.exists() and not StackEvent.objects.exists()


@pytest.mark.postgres
def test_it_refuses_lone_surrogates_in_the_metadata_rows_of_the_stack_page(client, otto, machine):
    launch_demo("p1", owner="alice")
    client.force_login(otto)
    url = reverse("stacks-metadata", args=["p1"])
    data = {"meta_shown": json.dumps({"owner": "alice"}), "meta_original": ["owner"], "meta_key": ["owner"],
            "meta_value": ['"\\ud800"']}
    response = client.post(url, data)
    assert response.status_code == 400
    assert "not valid Unicode" in response.content.decode()
    as_json = client.post(url, data, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 400 and "not valid Unicode" in as_json.json()["rows"][0]
    shown_twice = {**data, "meta_shown": '{"owner": "alice", "owner": "bob"}', "meta_value": ["carol"]}
    assert client.post(url, shown_twice).status_code == 400
    assert Stack.objects.get().metadata == {"owner": "alice"}
    assert client.get(reverse("stacks-detail", args=["p1"])).status_code == 200


@pytest.mark.postgres
def test_it_refuses_lone_surrogates_in_the_new_stack_form(client, otto, machine):
    client.force_login(otto)
    data = {"stack_id": "n1", "machine": MACHINE, "event": "LAUNCH", "meta_original": [""], "meta_key": ["k"],
            "meta_value": ['"a\\udc80"']}
    response = client.post(reverse("stacks-new"), data)
    assert response.status_code == 400
    assert "not valid Unicode" in response.content.decode()
    assert not Stack.objects.exists()


@pytest.mark.postgres
def test_it_refuses_undecodable_bytes_in_the_event_form(client, otto, machine):
    launch_demo("p1")
    client.force_login(otto)
    response = client.post(reverse("stacks-event", args=["p1"]), b"event=%ED%A0%80",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert Stack.objects.get().state == "DEPLOY"


@pytest.mark.postgres
def test_it_refuses_lone_surrogates_in_the_admins_metadata_editor(client, otto, machine):
    launch_demo("a1", branch="main")
    client.force_login(otto)
    url = reverse("admin:stacks_stack_metadata", args=[Stack.objects.get().pk])
    fields = form_data(client.get(url).content.decode(), "metadata-form")
    rows = {name: fields[name] if isinstance(fields[name], list) else [fields[name]]
            for name in ("meta_original", "meta_key", "meta_value")}
    bad = {**fields, **{name: [*values, extra] for (name, values), extra in
                        zip(rows.items(), ("", "bad", '"\\ud800"'), strict=True)}}
    response = client.post(url, bad)
    assert response.status_code == 400  # the editor again, with the row marked
    assert "not valid Unicode" in response.content.decode()
    tampered = {**bad, "meta_value": [*rows["meta_value"], "fine"], "meta_shown": '{"branch": "main", "branch": "x"}'}
    assert client.post(url, tampered).status_code == 400  # a tampered hidden field: nothing saved
    assert Stack.objects.get().metadata == {"branch": "main"}


def run_cli(*args, stdin: str | None = None) -> str:
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    finally:
        sys.stdin = saved
    return out.getvalue()


@pytest.mark.postgres
@pytest.mark.parametrize(("body", "words"), HOSTILE_BODIES)
def test_it_refuses_hostile_json_from_the_command_line(simple_machine, tmp_path, body, words):
    with pytest.raises(CommandError, match=words.replace("[", r"\[")):
        run_cli("send_event", "--json", "-", stdin=body)
    path = tmp_path / "m.json"
    path.write_text(body)
    with pytest.raises(CommandError, match=words.replace("[", r"\[")):
        run_cli("send_event", "--json", str(path))
    assert not Stack.objects.exists()


@pytest.mark.postgres
def test_it_refuses_meta_arguments_that_are_not_utf8(simple_machine):
    # A non-UTF-8 byte in argv reaches Python as a lone surrogate (surrogateescape).
    for meta in ("k=\udcff", "\udcff=v"):
        with pytest.raises(CommandError, match="not valid UTF-8") as raised:
            run_cli("send_event", "s1", "LAUNCH", "--machine", "simple", "--meta", meta)
        assert raised.value.returncode == 2
    with pytest.raises(CommandError, match="not valid Unicode at description"):
        run_cli("send_event", "s1", "LAUNCH", "--machine", "simple", "--description", "\udcff")
    assert not Stack.objects.exists()


@pytest.mark.postgres
def test_it_scrubs_a_workers_error_text_that_is_not_unicode(simple_machine):
    from stacks.models import Task
    from stacks.runtime.executors import TaskResult
    from stacks.runtime.jobs import _Output, _report

    launch("w1")
    task = Task.objects.get(name="db", current=True)
    assert _report(task, TaskResult(ok=False, error="boom " + LONE), _Output(task)) == "applied"
    task.refresh_from_db()
    assert task.status == "ERROR" and task.error_message == "boom \ufffd"


@pytest.mark.django_db(transaction=True)
def test_it_ignores_whatever_a_websocket_client_sends(otto):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from cloudseam_site.asgi import application

    async def talk() -> list:
        from channels.db import database_sync_to_async


        _, raw = await database_sync_to_async(issue_token)(None, otto, "ws", "viewer")
        headers = [(b"authorization", f"Bearer {raw}".encode())]
        communicator = WebsocketCommunicator(application, "/ws/stacks/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        for text in ('{"a": 1, "a": 2}', '"\\ud800"', "{not json", '{"stackId": "x", "event": "LAUNCH"}'):
            await communicator.send_to(text_data=text)
        await communicator.send_to(bytes_data=b"\xff\xfe")
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return [first["type"]]

    assert async_to_sync(talk)() == ["snapshot"]
    assert not Stack.objects.exists()


# --- 7. a message id is bound to its message -----------------------------------------------------


@pytest.mark.postgres
def test_it_answers_a_repeated_id_with_the_same_message_from_the_first_time(simple_machine):
    first = launch("i1", id="deploy-1", metadata={"tag": "a"})
    again = send({"stackId": "i1", "action": "LAUNCH", "machine": "simple", "id": "deploy-1", "metadata": {"tag": "a"}})
    assert again.repeated and (again.status, again.body) == (first.status, first.body)
    assert StackEvent.objects.filter(stack_key="i1").count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize(
    "second",
    [
        {"event": "DESTROY"},
        {"event": "LAUNCH", "machine": "simple", "metadata": {"tag": "b"}},
        {"event": "LAUNCH", "machine": "simple"},
        {"event": "TASK_ERROR", "task": {"name": "db"}, "description": "other"},
    ],
)
def test_it_refuses_an_id_reused_for_a_different_message(simple_machine, second):
    launch("i1", id="deploy-1", metadata={"tag": "a"})
    before = Stack.objects.get()
    result = send({"stackId": "i1", "id": "deploy-1", **second})
    assert result.status == 409
    assert result.body["error"].startswith("id deploy-1 was already used for a different message")
    after = Stack.objects.get()
    assert (after.state, after.metadata, after.updated_at) == (before.state, before.metadata, before.updated_at)
    rejected = StackEvent.objects.get(stack_key="i1", outcome="rejected")
    assert rejected.message_id is None and rejected.error.startswith(result.body["error"])
    assert StackEvent.objects.get(message_id="deploy-1").outcome == "applied"


@pytest.mark.postgres
def test_it_tells_task_reports_with_the_same_id_apart_by_their_description(simple_machine):
    launch("i1")
    error = {"stackId": "i1", "event": "TASK_ERROR", "task": {"name": "db"}, "id": "r-1"}
    assert send({**error, "description": "disk full"}).status == 200
    assert send({**error, "description": "disk full"}).repeated
    assert send({**error, "description": "network down"}).status == 409


@pytest.mark.postgres
def test_it_answers_409_for_a_reused_id_through_the_api(client, make_user, simple_machine):
    headers = api_headers(make_user)
    body = {"stackId": "i1", "event": "LAUNCH", "machine": "simple", "id": "x-1"}
    assert client.post("/api/events", json.dumps(body), content_type="application/json", **headers).status_code == 200
    body["metadata"] = {"tag": "other"}
    response = client.post("/api/events", json.dumps(body), content_type="application/json", **headers)
    assert response.status_code == 409
    assert "id x-1 was already used for a different message" in response.json()["error"]


@pytest.mark.postgres
def test_it_compares_event_and_metadata_for_ids_recorded_before_fingerprints(simple_machine):
    launch("i1", id="old-1", metadata={"tag": "a"})
    StackEvent.objects.filter(message_id="old-1").update(fingerprint="")
    assert send({"stackId": "i1", "event": "LAUNCH", "machine": "simple", "id": "old-1",
                 "metadata": {"tag": "a"}}).repeated
    assert send({"stackId": "i1", "event": "DESTROY", "id": "old-1"}).status == 409


# --- 8. python callables outside CLOUDSEAM_PYTHON_PREFIXES are refused when validated ------------

PYTHON_MACHINE = """\
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    tasks: [call]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE:
    terminal: true
tasks:
  call:
    executor: python
    config:
      callable: {target}
"""


def python_machine(target: str) -> str:
    return PYTHON_MACHINE.replace("{target}", target)


@pytest.mark.parametrize(
    ("target", "allowed"),
    [("os:system", False), ("subprocess:run", False), ("app.tasks:go", True), ("app.tasks.db:go", True),
     ("app.tasks_evil:go", False), ("app:go", False)],
)
def test_it_applies_the_workers_prefix_rule_when_validating(target, allowed):
    from machines_app import spec
    from stacks.runtime.executors import python_call

    result = spec.validate(python_machine(target), python_prefixes=("app.tasks",))
    assert result.valid is allowed
    assert python_call.is_allowed(target.partition(":")[0], ("app.tasks",)) is allowed
    if not allowed:
        [problem] = result.errors
        assert (problem.path, problem.line) == ("tasks.call.config.callable", 17)
        assert problem.message == (f"python callable '{target}' is not allowed; allowed module prefixes: "
                                   "app.tasks (set CLOUDSEAM_PYTHON_PREFIXES)")
    assert spec.validate(python_machine(target)).valid  # no prefixes given: the pure format only


def test_it_says_none_are_allowed_when_no_prefix_is_set():
    from machines_app import spec

    [problem] = spec.validate(python_machine("os:system"), python_prefixes=()).errors
    assert "allowed module prefixes: none (set CLOUDSEAM_PYTHON_PREFIXES)" in problem.message


@pytest.mark.postgres
def test_it_refuses_to_save_a_machine_calling_outside_the_prefixes(client, make_user, settings):
    from machines_app.models import Machine
    from machines_app.services import InvalidMachine, save_machine

    settings.CLOUDSEAM_PYTHON_PREFIXES = ("tests.executor_targets",)
    with pytest.raises(InvalidMachine, match="python callable 'os:system' is not allowed.*CLOUDSEAM_PYTHON_PREFIXES"):
        save_machine("py", python_machine("os:system"))
    assert save_machine("py", python_machine("tests.executor_targets:greet")).created
    _, raw = issue_token(None, make_user("boss", "admin"), "t", "admin")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    checked = client.post("/api/machines/validate", python_machine("os:system"), content_type="application/yaml",
                          **headers).json()
    assert checked["valid"] is False
    assert checked["errors"][0]["path"] == "tasks.call.config.callable"
    assert "CLOUDSEAM_PYTHON_PREFIXES" in checked["errors"][0]["message"]
    put = client.put("/api/machines/py", python_machine("os:system"), content_type="application/yaml", **headers)
    assert put.status_code == 400 and "CLOUDSEAM_PYTHON_PREFIXES" in json.dumps(put.json())
    assert Machine.objects.get(name="py").versions.count() == 1


@pytest.mark.postgres
def test_it_still_loads_a_stored_version_that_a_changed_setting_no_longer_allows(db, settings):
    from machines_app.services import save_machine

    settings.CLOUDSEAM_PYTHON_PREFIXES = ("tests.executor_targets",)
    version = save_machine("py", python_machine("tests.executor_targets:greet")).version
    settings.CLOUDSEAM_PYTHON_PREFIXES = ("elsewhere",)
    assert version.spec.tasks["call"].config["callable"] == "tests.executor_targets:greet"


def test_it_reports_a_refused_callable_from_validate_machines(tmp_path, settings):
    settings.CLOUDSEAM_PYTHON_PREFIXES = ("cloudseam_tasks",)
    (tmp_path / "py.yml").write_text(python_machine("os:system"))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("validate_machines", str(tmp_path / "py.yml"), stdout=out)
    assert (f"{tmp_path / 'py.yml'}:17: tasks.call.config.callable: python callable 'os:system' is not allowed; "
            "allowed module prefixes: cloudseam_tasks (set CLOUDSEAM_PYTHON_PREFIXES)") in out.getvalue()


# --- 9. the data folder is private ------------------------------------------------------------------


def _mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_it_makes_an_existing_data_folder_private(tmp_path):
    import os

    from cloudseam_site.private_files import make_private

    data = tmp_path / "var"
    (data / "logs").mkdir(parents=True)
    for name in ("cloudseam.sqlite3", "cloudseam.sqlite3-wal", "redis.rdb", "logs/worker-0.log"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    data.chmod(0o755)
    (data / "logs").chmod(0o755)
    os.symlink("/etc/hostname", data / "link")  # never followed
    make_private(data)
    assert _mode(data) == 0o700 and _mode(data / "logs") == 0o700
    assert {_mode(data / n) for n in ("cloudseam.sqlite3", "cloudseam.sqlite3-wal", "redis.rdb",
                                      "logs/worker-0.log")} == {0o600}
    assert _mode(tmp_path / "var" / "link") == _mode(Path("/etc/hostname"))
    make_private(tmp_path / "new" / "folder")
    assert _mode(tmp_path / "new" / "folder") == 0o700


def test_it_makes_the_data_folder_private_when_settings_are_read(tmp_path):
    import os
    import subprocess

    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "cloudseam.sqlite3").write_text("")
    (data / "cloudseam.sqlite3").chmod(0o644)
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY",)}
    env.update({"CLOUDSEAM_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings"})
    subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, check=True, timeout=60,
                   cwd=Path(__file__).parent.parent)
    assert _mode(data) == 0o700
    assert _mode(data / "cloudseam.sqlite3") == 0o600 and _mode(data / "secret_key") == 0o600


# --- 11. a password-protected Redis; database errors while checking tokens; whole-file problems -----

REDIS_ROUND_TRIP = """
import asyncio
import django
django.setup()
import django_rq
from channels.layers import get_channel_layer
from rq import SimpleWorker

queue = django_rq.get_queue("default")
job = queue.enqueue("operator.add", 2, 3)
SimpleWorker([queue], connection=queue.connection).work(burst=True)
job.refresh()
assert job.return_value() == 5, job.get_status()

async def live():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("password-test", channel)
    await layer.group_send("password-test", {"type": "stack.updated", "n": 1})
    return await asyncio.wait_for(layer.receive(channel), 10)

assert asyncio.run(live()) == {"type": "stack.updated", "n": 1}
print("round trip ok")
"""


@pytest.fixture
def redis_with_password(tmp_path):
    import socket
    import time

    import redis

    from cloudseam_site import embedded_redis, processes

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [embedded_redis.redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--requirepass", "s3cret-pw", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    server = processes.spawn(argv, log_file=open(tmp_path / "redis.log", "ab"))  # noqa: SIM115
    client = redis.Redis(host="127.0.0.1", port=port, password="s3cret-pw", socket_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.05)
    yield port
    processes.stop([server], grace=3)


def _with_redis_url(url: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"REDIS_URL": url, "CLOUDSEAM_DATA_DIR": str(tmp_path / "data"),
                "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings"})
    return subprocess.run([sys.executable, "-c", REDIS_ROUND_TRIP], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parent.parent)


def test_it_queues_jobs_and_live_updates_through_a_redis_with_a_password(redis_with_password, tmp_path):
    done = _with_redis_url(f"redis://:s3cret-pw@127.0.0.1:{redis_with_password}/0", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round trip ok" in done.stdout
    refused = _with_redis_url(f"redis://127.0.0.1:{redis_with_password}/0", tmp_path)  # the password matters
    assert refused.returncode != 0 and "AuthenticationError" in refused.stderr


@pytest.mark.postgres
def test_it_answers_json_when_the_database_fails_while_checking_a_token(client, monkeypatch, db):
    from django.db import OperationalError

    def broken(raw):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr("cloudseam_site.accounts.auth.find_token", broken)
    response = client.get("/api/stacks", HTTP_AUTHORIZATION="Bearer cs_whatever")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "could not reach its database to check your credentials" in response.json()["error"]


def test_it_prints_no_line_number_for_a_whole_file_problem(tmp_path):
    (tmp_path / "empty.yml").write_text("")
    (tmp_path / "Bad-Name.yml").write_text("version: 1\\n")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("validate_machines", str(tmp_path), stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.startswith(f"{tmp_path / 'empty.yml'}: ") for line in lines), lines
    assert any(line.startswith(f"{tmp_path / 'Bad-Name.yml'}: name: ") for line in lines), lines
    assert not any(":0:" in line for line in lines)
    assert any(line.startswith(f"{tmp_path / 'Bad-Name.yml'}:1: ") for line in lines), lines  # lines still shown
