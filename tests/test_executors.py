"""Executors against the real outside world where it is cheap (processes, a local HTTP server) and a
stand-in where it is not (a fake `terraform` program, botocore's Stubber). No Django, no database."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stacks.runtime.executors import REGISTRY, TaskContext, TaskResult, lambda_invoke, process, run_task
from stacks.runtime.executors.process import run_process

PY = sys.executable
TARGETS = "tests.executor_targets"


def make_ctx(executor: str, config: dict, **overrides) -> TaskContext:
    stack = {
        "id": "feature-123",
        "machine": "qa-env",
        "machineVersion": 1,
        "state": "PROVISION",
        "previousState": "INIT",
        "tasks": [{"id": "t-1", "name": "deploy", "status": "PENDING"}],
        "metadata": {"imageTag": "e724e90"},
    }
    values = {
        "task_id": "t-1",
        "task_name": "deploy",
        "executor": executor,
        "config": config,
        "stack": stack,
        "timeout": 10,
    }
    values.update(overrides)
    return TaskContext(**values)


class Lines:
    """An on_output sink that remembers every call."""

    def __init__(self):
        self.calls: list[tuple[float, list[str]]] = []

    def __call__(self, lines: list[str]) -> None:
        self.calls.append((time.monotonic(), list(lines)))

    @property
    def lines(self) -> list[str]:
        return [line for _, batch in self.calls for line in batch]


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan's zombie may wait for init)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_dead(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- registry ------------------------------------------------------------------------------------


def test_it_fails_an_unknown_executor():
    result = run_task(make_ctx("teleport", {}))

    assert result.ok is False
    assert result.error.startswith("unknown executor 'teleport'; known executors: external, http")


def test_it_turns_an_executor_crash_into_a_failed_result(monkeypatch):
    def broken(ctx):
        raise KeyError("oops")

    monkeypatch.setitem(REGISTRY, "sleep", broken)

    result = run_task(make_ctx("sleep", {}))

    assert result == TaskResult(ok=False, error="the sleep executor failed: KeyError: 'oops'")


def test_it_registers_every_executor_of_the_machine_format():
    assert set(REGISTRY) == {"shell", "http", "python", "terraform", "lambda", "external", "sleep"}


# --- sleep ---------------------------------------------------------------------------------------


def test_it_sleeps_and_succeeds():
    sink = Lines()

    result = run_task(make_ctx("sleep", {"seconds": 0.05}, on_output=sink))

    assert result.ok is True
    assert sink.lines == ["sleeping for 0.05 s", "slept 0.05 s"]
    assert result.output_tail == sink.lines


def test_it_fails_a_sleep_on_purpose():
    result = run_task(make_ctx("sleep", {"seconds": 0, "fail": 1}))

    assert result.ok is False
    assert result.error == "sleep task failed on purpose (fail probability 1.0)"


def test_it_never_fails_a_sleep_with_probability_zero():
    assert all(run_task(make_ctx("sleep", {"seconds": 0, "fail": 0})).ok for _ in range(20))


def test_it_times_out_a_sleep_longer_than_the_timeout():
    started = time.monotonic()

    result = run_task(make_ctx("sleep", {"seconds": 30}, timeout=0.2))

    assert result.error == "timed out after 0.2 s"
    assert time.monotonic() - started < 2


# --- external ------------------------------------------------------------------------------------


def test_it_leaves_an_external_task_waiting():
    result = run_task(make_ctx("external", {}))

    assert result.ok is True
    assert result.waiting is True


# --- shell ---------------------------------------------------------------------------------------


def test_it_runs_a_command_and_streams_its_output():
    sink = Lines()
    script = "import sys; print('out'); print('err', file=sys.stderr)"

    result = run_task(make_ctx("shell", {"command": [PY, "-c", script]}, on_output=sink))

    assert result == TaskResult(ok=True, output_tail=["out", "err"])
    assert sink.lines == ["out", "err"]


def test_it_streams_lines_while_the_command_still_runs():
    sink = Lines()
    script = "import time; print('first', flush=True); time.sleep(0.6); print('second')"

    run_task(make_ctx("shell", {"command": [PY, "-c", script]}, on_output=sink))
    finished = time.monotonic()

    first_seen = next(at for at, batch in sink.calls if "first" in batch)
    assert finished - first_seen > 0.3
    assert sink.lines == ["first", "second"]


def test_it_batches_output_and_keeps_a_tail_of_200_lines():
    sink = Lines()
    script = "for i in range(1000): print(f'line {i}')"
    started = time.monotonic()

    result = run_task(make_ctx("shell", {"command": [PY, "-c", script]}, on_output=sink))

    assert result.output_tail == [f"line {i}" for i in range(800, 1000)]
    assert sink.lines == [f"line {i}" for i in range(1000)]
    assert len(sink.calls) <= 4 * (time.monotonic() - started) + 2


def test_it_passes_the_stack_through_the_environment_and_metadata_verbatim(tmp_path):
    marker, victim = tmp_path / "pwned", tmp_path / "victim"
    victim.mkdir()
    metadata = {"note": f"$(touch {marker}); rm -rf {victim}", "count": 3, "flag": True, "gone": None}
    script = (
        "import os\n"
        "for name in ['CLOUDSEAM_STACK_ID', 'CLOUDSEAM_MACHINE', 'CLOUDSEAM_STATE', 'CLOUDSEAM_PREVIOUS_STATE',"
        " 'CLOUDSEAM_TASK', 'CLOUDSEAM_TASK_ID', 'GREETING', 'HOME_SET']:\n"
        "    print(os.environ[name])\n"
        "print(os.environ['CLOUDSEAM_METADATA'])\n"
    )
    ctx = make_ctx("shell", {"command": [PY, "-c", script], "env": {"GREETING": "hi there", "HOME_SET": True}})
    ctx.stack["metadata"] = metadata

    result = run_task(ctx)

    assert result.ok, result.error
    assert result.output_tail[:-1] == [
        "feature-123", "qa-env", "PROVISION", "INIT", "deploy", "t-1", "hi there", "true",
    ]
    assert json.loads(result.output_tail[-1]) == metadata
    assert not marker.exists()
    assert victim.exists()


def test_it_keeps_the_stack_facts_even_if_the_config_env_names_them():
    ctx = make_ctx("shell", {"command": ["printenv", "CLOUDSEAM_STACK_ID"], "env": {"CLOUDSEAM_STACK_ID": "prod"}})

    assert run_task(ctx).output_tail == ["feature-123"]


def test_it_does_not_interpret_the_argv_in_a_shell(tmp_path):
    config = {"command": ["echo", "$HOME", "a;b", f"`touch {tmp_path}/x`", "*", "|", "cat"], "cwd": str(tmp_path)}

    result = run_task(make_ctx("shell", config))

    assert result.output_tail == [f"$HOME a;b `touch {tmp_path}/x` * | cat"]
    assert list(tmp_path.iterdir()) == []


def test_a_command_that_ends_at_once_is_seen_ending():
    # The guard once lost the exit of a program that ended before the guard dropped its Popen
    # object (which then reaped it), and waited for the timeout instead. It depends on timing: on a
    # loaded machine about one quick command in four "timed out"; on an idle one this may pass anyway.
    results = [run_task(make_ctx("shell", {"command": ["true"], "timeout": 20})) for _ in range(25)]

    assert [r.error for r in results if not r.ok] == []


def test_it_refuses_a_command_given_as_one_string():
    result = run_task(make_ctx("shell", {"command": "echo hi; rm -rf /"}))

    assert result.error == "command must be a list of argv strings, not one string (no shell parses it)"


def test_it_runs_the_command_in_the_configured_directory(tmp_path):
    result = run_task(make_ctx("shell", {"command": ["pwd"], "cwd": str(tmp_path)}))

    assert result.output_tail == [str(tmp_path)]


def test_it_reports_the_exit_code_and_the_last_lines():
    script = "import sys\nfor i in range(10): print(f'step {i}')\nsys.exit(3)"

    result = run_task(make_ctx("shell", {"command": [PY, "-c", script]}))

    assert result.ok is False
    assert result.error == "command exited with code 3: step 5\nstep 6\nstep 7\nstep 8\nstep 9"
    assert len(result.output_tail) == 10


def test_it_reports_a_command_that_does_not_exist(tmp_path):
    result = run_task(make_ctx("shell", {"command": ["./deploy.sh"], "cwd": str(tmp_path)}))

    assert result == TaskResult(ok=False, error="command not found: ./deploy.sh")


def test_it_reports_a_command_that_is_not_executable(tmp_path):
    (tmp_path / "deploy.sh").write_text("echo hi\n")

    result = run_task(make_ctx("shell", {"command": ["./deploy.sh"], "cwd": str(tmp_path)}))

    assert result.error == "command is not executable: ./deploy.sh"


def test_it_sees_a_program_that_ends_at_once_end_every_time():
    # The guard used to start the program with subprocess.Popen and drop the Popen object, whose
    # finalizer could reap a program that had already ended: the guard then never reported its
    # exit, and about one quick task in a hundred waited for its timeout and failed.
    outcomes = [run_process(["true"], timeout=10) for _ in range(100)]
    assert [(o.returncode, o.timed_out) for o in outcomes] == [(0, False)] * 100


def test_it_gives_the_program_the_default_sigpipe():
    result = run_task(make_ctx("shell", {"command": ["sh", "-c", "yes | head -n 1"]}))
    assert result.ok and result.output_tail == ["y"]  # `yes` ends on SIGPIPE, without an error line


def test_it_reports_a_program_that_cannot_be_executed(tmp_path):
    binary = tmp_path / "deploy"
    binary.write_bytes(b"\x7fELF not really")
    binary.chmod(0o755)

    result = run_task(make_ctx("shell", {"command": ["./deploy"], "cwd": str(tmp_path)}))

    assert result.error == "could not start ./deploy: Exec format error"


def test_it_reports_a_missing_working_directory(tmp_path):
    result = run_task(make_ctx("shell", {"command": ["true"], "cwd": str(tmp_path / "nope")}))

    assert result.error == f"working directory does not exist: {tmp_path / 'nope'}"


CHILD_WITH_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen(["sleep", "100"])
with open(sys.argv[1], "w") as f:
    f.write(str(grandchild.pid))
print("started", flush=True)
time.sleep(100)
"""


def test_it_kills_the_whole_process_tree_on_timeout(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()

    result = run_task(make_ctx("shell", {"command": [PY, "-c", CHILD_WITH_GRANDCHILD, str(pid_file)]}, timeout=1))

    assert result.ok is False
    assert result.error == "timed out after 1 s"
    assert result.output_tail == ["started"]
    assert time.monotonic() - started < 4
    assert wait_until_dead(int(pid_file.read_text()))


def test_it_kills_a_program_that_ignores_sigterm_after_the_grace_period():
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(100)"
    )

    outcome = run_process([PY, "-c", script], timeout=0.5, grace=0.3)

    assert outcome.timed_out is True
    assert outcome.returncode == -9
    assert outcome.tail == ["ready"]


def test_it_stops_background_children_that_hold_the_output_open(monkeypatch):
    monkeypatch.setattr(process, "DRAIN_SECONDS", 0.3)
    script = "import subprocess; print(subprocess.Popen(['sleep', '100']).pid, flush=True)"

    outcome = run_process([PY, "-c", script], timeout=10)

    assert outcome.returncode == 0
    assert outcome.error("command", 10) is None
    assert outcome.tail[-1].startswith("[cloudseam] stopping background processes")
    assert wait_until_dead(int(outcome.tail[0]))


# --- python --------------------------------------------------------------------------------------


def python_ctx(callable_: str, args: dict | None = None, prefixes=(TARGETS,), **overrides) -> TaskContext:
    config = {"callable": callable_, "args": args or {}}
    return make_ctx("python", config, python_prefixes=prefixes, **overrides)


def test_it_calls_an_allowed_python_function_with_task_stack_and_args(tmp_path):
    sink = Lines()

    result = run_task(python_ctx(f"{TARGETS}:greet", {"name": "Ada"}, on_output=sink, workdir=str(tmp_path)))

    assert result.ok, result.error
    assert result.output_tail == [
        "hello Ada from feature-123 (deploy)",
        'result: {"greeted": "Ada", "metadata": {"imageTag": "e724e90"}}',
    ]
    assert sink.lines == result.output_tail
    assert list(tmp_path.iterdir()) == []  # the request/answer files are cleaned up


def test_it_allows_submodules_of_a_prefix_but_not_lookalikes():
    assert run_task(python_ctx(f"{TARGETS}:greet", prefixes=("tests",))).ok
    result = run_task(python_ctx(f"{TARGETS}:greet", prefixes=("tests.executor",)))

    assert result.error == (
        f"python callable '{TARGETS}:greet' is not allowed; "
        "allowed module prefixes: tests.executor (set CLOUDSEAM_PYTHON_PREFIXES)"
    )


def test_it_refuses_every_python_callable_when_no_prefix_is_configured():
    result = run_task(python_ctx("os:system", {"command": "touch /tmp/x"}, prefixes=()))

    assert result == TaskResult(
        ok=False,
        error="python callable 'os:system' is not allowed; "
        "allowed module prefixes: none (set CLOUDSEAM_PYTHON_PREFIXES)",
    )


def test_it_reports_the_exception_a_python_function_raised():
    result = run_task(python_ctx(f"{TARGETS}:explode"))

    assert result.ok is False
    assert result.error == f"python callable '{TARGETS}:explode' raised ValueError: the database is on fire"
    assert "Traceback (most recent call last):" in result.output_tail


def test_it_reports_a_missing_python_function_and_module():
    missing = run_task(python_ctx(f"{TARGETS}:not_a_function"))
    no_module = run_task(python_ctx("tests.executor_targets_gone:run", prefixes=("tests",)))

    assert missing.error == f"module '{TARGETS}' has no function 'not_a_function'"
    assert no_module.error == (
        "could not import module 'tests.executor_targets_gone': "
        "ModuleNotFoundError: No module named 'tests.executor_targets_gone'"
    )


def test_it_refuses_a_malformed_callable_and_clashing_args():
    assert run_task(python_ctx(TARGETS)).error == (
        f"python callable '{TARGETS}' must look like 'package.module:function'"
    )
    assert run_task(python_ctx(f"{TARGETS}:greet", {"stack": 1})).error == (
        "python args may not be named stack: the callable receives those itself"
    )


def test_it_times_out_a_python_function():
    started = time.monotonic()

    result = run_task(python_ctx(f"{TARGETS}:nap", timeout=1))

    assert result.error == "timed out after 1 s"
    assert result.output_tail == ["napping"]
    assert time.monotonic() - started < 4


# --- http ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, answer = (500, b"database on fire " * 20) if self.path == "/fail" else (200, b"accepted")
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_PUT = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def allow_local(settings):
    """The local test server is on 127.0.0.1, which the outbound guard refuses unless allowed."""
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ("127.0.0.1",)


@pytest.fixture
def http_server(allow_local):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_port}{path}"


def test_it_posts_the_task_message_and_succeeds_on_2xx(http_server):
    config = {"url": url(http_server, "/ok"), "headers": {"X-Token": "s3cret"}}

    result = run_task(make_ctx("http", config))

    assert result.ok is True
    assert result.waiting is False
    assert result.output_tail[-1] == "answered 200: accepted"
    (request,) = http_server.received
    assert request["headers"]["X-Token"] == "s3cret"
    assert request["headers"]["Content-Type"] == "application/json"
    message = json.loads(request["body"])
    assert message["task"] == {"id": "t-1", "name": "deploy", "executor": "http", "config": config}
    assert message["stack"]["id"] == "feature-123"


def test_it_fails_when_the_server_answers_an_error(http_server):
    target = url(http_server, "/fail")

    result = run_task(make_ctx("http", {"url": target, "method": "put"}))

    assert result.ok is False
    assert result.error == f"PUT {target} answered 500: " + ("database on fire " * 20)[:200]


def test_it_fails_clearly_when_the_connection_is_refused(allow_local):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        target = f"http://127.0.0.1:{unused.getsockname()[1]}/hook"

        result = run_task(make_ctx("http", {"url": target}))

    assert result.error == f"POST {target} failed: connection refused"


def test_it_waits_for_the_callback_after_a_2xx(http_server):
    result = run_task(make_ctx("http", {"url": url(http_server, "/ok"), "mode": "callback"}))

    assert result.ok is True
    assert result.waiting is True
    assert len(http_server.received) == 1


def test_it_refuses_urls_that_are_not_http():
    result = run_task(make_ctx("http", {"url": "file:///etc/passwd"}))

    assert result.error == "the http executor only calls http:// and https:// URLs, not 'file:///etc/passwd'"


# --- lambda --------------------------------------------------------------------------------------


def test_it_explains_that_the_lambda_executor_needs_boto3(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)

    result = run_task(make_ctx("lambda", {"name": "db-setup"}))

    assert result.error == "the lambda executor needs boto3: pip install boto3"


def stubbed_lambda(monkeypatch, response: dict):
    """A real boto3 client answered by botocore's Stubber; returns what invoke was called with."""
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import ANY, Stubber

    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    expected = {"FunctionName": "db-setup", "InvocationType": "RequestResponse", "LogType": "Tail", "Payload": ANY}
    stubber.add_response("invoke", response, expected)
    stubber.activate()
    calls = []
    real_invoke = client.invoke

    def invoke(**params):
        calls.append(params)
        return real_invoke(**params)

    monkeypatch.setattr(client, "invoke", invoke)
    monkeypatch.setattr(lambda_invoke, "make_client", lambda service, read_timeout: client)
    return calls


def streaming(data: bytes):
    """A response body as botocore returns it (skips the test when boto3 is not installed)."""
    pytest.importorskip("boto3")
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


def test_it_invokes_a_lambda_function_with_the_task_message(monkeypatch):
    log = base64.b64encode(b"START\nsetting up db\nEND").decode()
    calls = stubbed_lambda(monkeypatch, {"StatusCode": 200, "Payload": streaming(b'{"done": true}'), "LogResult": log})

    result = run_task(make_ctx("lambda", {"name": "db-setup", "args": {"size": "small"}}))

    assert result.ok, result.error
    assert "setting up db" in result.output_tail
    assert result.output_tail[-1] == "lambda function 'db-setup' answered: {\"done\": true}"
    payload = json.loads(calls[0]["Payload"])
    assert payload["task"]["config"] == {"name": "db-setup", "args": {"size": "small"}}
    assert payload["stack"]["id"] == payload["stackId"] == "feature-123"
    assert payload["metadata"] == {"imageTag": "e724e90"}


def test_it_reports_the_error_a_lambda_function_raised(monkeypatch):
    error = json.dumps({"errorType": "ValueError", "errorMessage": "no capacity", "stackTrace": []}).encode()
    stubbed_lambda(monkeypatch, {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": streaming(error)})

    result = run_task(make_ctx("lambda", {"name": "db-setup"}))

    assert result.error == "lambda function 'db-setup' failed: ValueError: no capacity"


# --- terraform -----------------------------------------------------------------------------------

FAKE_TERRAFORM = """#!{python}
import json, os, sys
with open(os.environ["FAKE_TERRAFORM_LOG"], "a") as log:
    record = {{
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "files": sorted(os.listdir()),
        "tf_vars": {{k: v for k, v in os.environ.items() if k.startswith("TF_VAR_")}},
    }}
    log.write(json.dumps(record) + "\\n")
print("fake terraform", sys.argv[1])
sys.exit(int(os.environ.get("FAKE_TERRAFORM_FAIL_" + sys.argv[1].upper(), "0")))
"""


@pytest.fixture
def fake_terraform(tmp_path, monkeypatch):
    """A stand-in `terraform` first on PATH that records each call; returns a reader of the calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "terraform-calls.jsonl"
    bin_dir.mkdir()
    program = bin_dir / "terraform"
    program.write_text(FAKE_TERRAFORM.format(python=PY))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TERRAFORM_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def tf_source(tmp_path):
    folder = tmp_path / "tf"
    (folder / ".terraform").mkdir(parents=True)
    (folder / "main.tf").write_text('resource "random_id" "x" { byte_length = 8 }\n')
    (folder / "variables.tf").write_text('variable "desired_capacity" {}\n')
    return folder


def test_it_applies_a_local_terraform_configuration(fake_terraform, tf_source, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = {
        "action": "apply",
        "source": {"type": "local", "location": str(tf_source / "main.tf")},
        "variables": {"desired_capacity": 1, "name": "a b"},
    }

    result = run_task(make_ctx("terraform", config, workdir=str(workdir)))

    assert result.ok, result.error
    init, workspace, apply = fake_terraform()
    assert init["argv"] == ["init", "-input=false", "-no-color"]
    assert workspace["argv"][:4] == ["workspace", "select", "-or-create=true", "-no-color"]
    assert re.fullmatch(r"feature-123-[0-9a-f]{10}", workspace["argv"][4])
    assert apply["argv"] == [
        "apply", "-auto-approve", "-input=false", "-no-color", "-var", "desired_capacity=1", "-var", "name=a b",
    ]
    assert apply["files"] == ["main.tf", "variables.tf"]  # a copy, without the source's .terraform/
    assert Path(apply["cwd"]).parent.parent == workdir
    assert apply["tf_vars"]["TF_VAR_stack_id"] == "feature-123"
    assert apply["tf_vars"]["TF_VAR_imageTag"] == "e724e90"
    assert "fake terraform apply" in result.output_tail
    assert list(workdir.iterdir()) == []  # the scratch copy is gone


def test_it_destroys_and_reports_a_failing_step(fake_terraform, tf_source, monkeypatch):
    monkeypatch.setenv("FAKE_TERRAFORM_FAIL_DESTROY", "1")
    config = {"action": "destroy", "source": {"type": "local", "location": str(tf_source)}}

    result = run_task(make_ctx("terraform", config))

    assert result.error == "terraform destroy exited with code 1: fake terraform destroy"
    assert [call["argv"][0] for call in fake_terraform()] == ["init", "workspace", "destroy"]


def test_it_says_when_terraform_is_not_installed(tmp_path, tf_source, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    config = {"action": "apply", "source": {"type": "local", "location": str(tf_source)}}

    assert run_task(make_ctx("terraform", config)).error == "terraform is not installed on this worker"


def test_it_reports_a_missing_local_terraform_source(fake_terraform, tmp_path):
    config = {"action": "apply", "source": {"type": "local", "location": str(tmp_path / "missing")}}

    result = run_task(make_ctx("terraform", config))

    assert result.error == f"terraform source does not exist on this worker: {tmp_path / 'missing'}"
    assert not (tmp_path / "terraform-calls.jsonl").exists()


def test_it_downloads_an_s3_terraform_source(fake_terraform, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    listing = {"Contents": [{"Key": "qa/ecs/"}, {"Key": "qa/ecs/main.tf"}, {"Key": "qa/ecs/modules/db.tf"}]}
    stubber.add_response("list_objects_v2", listing, {"Bucket": "scripts", "Prefix": "qa/ecs/"})
    for key in ("qa/ecs/main.tf", "qa/ecs/modules/db.tf"):
        stubber.add_response("get_object", {"Body": streaming(b"# tf\n")}, {"Bucket": "scripts", "Key": key})
    monkeypatch.setattr(lambda_invoke, "make_client", lambda service, read_timeout: client)
    config = {"action": "apply", "source": {"type": "s3", "bucket": "scripts", "key": "qa/ecs"}}

    with stubber:
        result = run_task(make_ctx("terraform", config))

    assert result.ok, result.error
    assert fake_terraform()[-1]["files"] == ["main.tf", "modules"]
    assert "downloaded 2 files" in result.output_tail


def test_it_keeps_cloudseams_own_secrets_out_of_task_environments(monkeypatch):
    from stacks.runtime.executors.base import task_environment

    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CLOUDSEAM_CACHE_URL"):
        monkeypatch.setenv(name, "secret-value")
    monkeypatch.setenv("HOME_GROWN", "kept")
    ctx = TaskContext(task_id="t", task_name="n", executor="shell", config={}, stack={"id": "s", "metadata": {}},
                      timeout=None)
    env = task_environment(ctx)
    assert "secret-value" not in env.values() and env["HOME_GROWN"] == "kept"


# --- compatibility with the original CloudSeam (issue #7) ---------------------------------------


def test_it_gives_a_lambda_function_the_originals_stack_id_metadata_and_args_at_the_top(monkeypatch):
    calls = stubbed_lambda(monkeypatch, {"StatusCode": 200, "Payload": streaming(b"{}")})
    run_task(make_ctx("lambda", {"name": "db-setup", "args": {"task": "destroy", "size": 2}}))
    payload = json.loads(calls[0]["Payload"])
    assert (payload["stackId"], payload["metadata"]) == ("feature-123", {"imageTag": "e724e90"})
    assert payload["args"] == {"task": "destroy", "size": 2}
    assert payload["task"]["config"]["args"] == payload["args"] and payload["stack"]["id"] == "feature-123"

    calls = stubbed_lambda(monkeypatch, {"StatusCode": 200, "Payload": streaming(b"{}")})
    run_task(make_ctx("lambda", {"name": "db-setup"}))
    assert json.loads(calls[0]["Payload"])["args"] == {}


def tf_workspace(config: dict, **overrides) -> str:
    """The workspace a terraform task ran in (the fake terraform records its calls)."""
    calls_before = Path(os.environ["FAKE_TERRAFORM_LOG"])
    seen = len(calls_before.read_text().splitlines()) if calls_before.exists() else 0
    assert run_task(make_ctx("terraform", config, **overrides)).ok
    calls = [json.loads(line) for line in calls_before.read_text().splitlines()[seen:]]
    return next(call["argv"][4] for call in calls if call["argv"][0] == "workspace")


def test_it_keeps_terraform_state_apart_per_stack_and_configuration(fake_terraform, tf_source, tmp_path):
    other = tmp_path / "other-tf"
    other.mkdir()
    (other / "main.tf").write_text("# another configuration\n")
    apply = {"action": "apply", "source": {"type": "local", "location": str(tf_source / "main.tf")}}
    destroy = {"action": "destroy", "source": {"type": "local", "location": str(tf_source)}}
    scale = {**apply, "variables": {"desired_capacity": 0}}
    another = {"action": "apply", "source": {"type": "local", "location": str(other)}}
    master = {**make_ctx("terraform", {}).stack, "id": "master"}

    applied = tf_workspace(apply)
    assert tf_workspace(destroy) == tf_workspace(scale) == applied  # the same configuration, the same state
    assert tf_workspace(another) != applied  # another configuration of the same stack
    assert tf_workspace(apply, stack=master) != applied  # another stack
    assert tf_workspace(apply, task_name="other-task", task_id="t-2") == applied
    result = run_task(make_ctx("terraform", apply))
    assert f"state: workspace {applied} (stack feature-123, configuration {str(tf_source).strip('/')})" \
        in result.output_tail


def test_it_passes_the_originals_backend_key_when_the_configuration_declares_an_s3_backend(
    fake_terraform, tf_source
):
    (tf_source / "backend.tf").write_text('terraform {\n  backend "s3" {\n    bucket = "states"\n  }\n}\n')
    config = {"action": "apply", "source": {"type": "local", "location": str(tf_source)}}

    result = run_task(make_ctx("terraform", config))

    assert result.ok, result.error
    init, apply = fake_terraform()
    key = f"qa-env/feature-123/{str(tf_source).strip('/')}"
    assert init["argv"] == ["init", "-input=false", "-no-color", f"-backend-config=key={key}"]
    assert apply["argv"][0] == "apply"  # the default workspace: the key already names stack and source
    assert f"state: s3 backend key {key}" in result.output_tail


def test_it_uses_the_s3_source_key_in_the_backend_key_as_the_original_did(fake_terraform, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("list_objects_v2", {"Contents": [{"Key": "qa/ecs/main.tf.json"}]},
                         {"Bucket": "scripts", "Prefix": "qa/ecs/"})
    body = b'{"terraform": {"backend": {"s3": {"bucket": "states"}}}}'
    stubber.add_response("get_object", {"Body": streaming(body)}, {"Bucket": "scripts", "Key": "qa/ecs/main.tf.json"})
    monkeypatch.setattr(lambda_invoke, "make_client", lambda service, read_timeout: client)
    config = {"action": "destroy", "source": {"type": "s3", "bucket": "scripts", "key": "qa/ecs"}}

    with stubber:
        result = run_task(make_ctx("terraform", config))

    assert result.ok, result.error
    assert [call["argv"] for call in fake_terraform()][0][-1] == "-backend-config=key=qa-env/feature-123/qa/ecs"
    assert [call["argv"][0] for call in fake_terraform()] == ["init", "destroy"]
