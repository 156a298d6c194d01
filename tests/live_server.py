"""A real CloudSeam for end-to-end tests: `manage.py serve` in a subprocess with its own data
folder, SQLite database, embedded Redis and workers, driven over HTTP and WebSockets like a user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
# Variables of the test run itself that a separate CloudSeam must not inherit.
PRIVATE_ENV = ("REDIS_URL", "DATABASE_URL", "CLOUDSEAM_TEST_SQLITE", "CLOUDSEAM_TEST_DATABASE", "CLOUDSEAM_DATA_DIR",
               "CLOUDSEAM_MACHINES_DIR", "DJANGO_SETTINGS_MODULE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(Exception):
    pass


class Server:
    """One running `serve`. Use `api()` for JSON calls and `manage()` for CLI commands."""

    def __init__(self, *, workers: int = 2, machines: dict[str, str] | None = None, env: dict | None = None,
                 include_demo_machines: bool = True, web: int = 1):
        self.root = Path(tempfile.mkdtemp(prefix="cloudseam-e2e-"))
        self.data_dir = self.root / "data"
        self.machines_dir = self.root / "machines"
        self.machines_dir.mkdir()
        if include_demo_machines:
            for path in (ROOT / "machines").glob("*.yml"):
                shutil.copy(path, self.machines_dir / path.name)
        for name, text in (machines or {}).items():
            (self.machines_dir / f"{name}.yml").write_text(text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        self.env.update({"CLOUDSEAM_DATA_DIR": str(self.data_dir), "CLOUDSEAM_MACHINES_DIR": str(self.machines_dir),
                         "CLOUDSEAM_TASK_HEARTBEAT": "1", "CLOUDSEAM_TASK_LOST_AFTER": "6",
                         "CLOUDSEAM_PYTHON_PREFIXES": "tests.executor_targets", "PYTHONPATH": str(ROOT)})
        self.env.update(env or {})
        self.workers = workers
        self.web = web
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []
        self.admin_password: str | None = None
        self._tokens: dict[str, str] = {}

    def start(self, timeout: float = 60) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), "--workers", str(self.workers),
             "--web", str(self.web)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )
        ready = threading.Event()
        threading.Thread(target=self._read_output, args=(ready,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise ServerError("serve did not start:\n" + "\n".join(self.output[-40:]))
        if self.process.poll() is not None:
            raise ServerError("serve exited:\n" + "\n".join(self.output[-40:]))
        return self

    def _read_output(self, ready: threading.Event) -> None:
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            found = re.search(r"Username: admin\s+Password: (\S+)", line)
            if found:
                self.admin_password = found.group(1)
            if "CloudSeam is running at" in line:
                ready.set()
        ready.set()

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def manage(self, *args: str, input_text: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, input=input_text, timeout=timeout)

    def token(self, role: str = "admin") -> str:
        if role not in self._tokens:
            done = self.manage("create_token", f"e2e-{role}", "--role", role)
            if done.returncode != 0:
                raise ServerError(done.stderr)
            self._tokens[role] = done.stdout.strip().splitlines()[-1]
        return self._tokens[role]

    def api(self, method: str, path: str, json_body=None, *, role: str = "admin", raw: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, dict]:
        data = raw if raw is not None else (json.dumps(json_body).encode() if json_body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token(role)}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_for(self, stack_id: str, predicate, timeout: float = 60, role: str = "admin") -> dict:
        """Poll the API until predicate(stack) is true; the last snapshot is in the error otherwise."""
        deadline = time.monotonic() + timeout
        stack: dict = {}
        while time.monotonic() < deadline:
            status, stack = self.api("GET", f"/api/stacks/{stack_id}", role=role)
            if status == 200 and predicate(stack):
                return stack
            time.sleep(0.25)
        raise AssertionError(f"stack {stack_id} did not reach the expected condition: {stack}")
