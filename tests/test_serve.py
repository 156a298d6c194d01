"""`serve` as a user runs it: it starts everything, answers HTTP and WebSocket, runs a task, and
stops cleanly — leaving no redis-server, worker or web process behind."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.request

import psutil
import pytest
import websockets

from tests.live_server import Server

pytestmark = pytest.mark.e2e


def _names(processes: list[psutil.Process]) -> str:
    """Each process's program name and arguments (redis-server rewrites its own command line, so
    the kernel's process name is used for the program)."""
    out = []
    for p in processes:
        try:
            out.append(" ".join([p.name(), *p.cmdline()[1:]]))
        except psutil.NoSuchProcess:
            continue
    return "; ".join(out)


def test_it_starts_serves_runs_a_task_and_stops_without_leftovers():
    server = Server(workers=1).start()
    try:
        assert server.admin_password, "the first run prints the admin password"
        with urllib.request.urlopen(server.url + "/accounts/login/", timeout=10) as page:
            assert page.status == 200 and b"Log in" in page.read()
        children = server.children()
        kinds = _names(children)
        assert "redis-server" in kinds and "daphne" in kinds and "rqworker" in kinds

        async def watch() -> dict:
            headers = {"Authorization": f"Bearer {server.token('viewer')}"}
            url = server.url.replace("http://", "ws://") + "/ws/stacks/"
            async with websockets.connect(url, additional_headers=headers, origin=server.url) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

        assert asyncio.run(watch())["type"] == "snapshot"
        server.api("POST", "/api/events", {"stackId": "first", "event": "LAUNCH", "machine": "qa-env"})
        server.wait_for("first", lambda s: s["state"] == "RUN", timeout=60)
        assert server.stop() == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {_names(alive)}"
        assert "CloudSeam stopped." in server.output
    finally:
        server.cleanup()


def test_it_takes_its_children_down_even_when_killed_hard():
    server = Server(workers=1).start()
    try:
        children = server.children()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"orphans: {_names(alive)}"
    finally:
        server.cleanup()


def test_several_web_processes_share_the_port_and_each_serves_alone():
    server = Server(workers=0, web=2).start()
    try:
        webs = [child for child in server.children() if "daphne" in " ".join(child.cmdline())]
        assert len(webs) == 2, _names(server.children())
        token = server.token("operator")
        for serving in webs:
            paused = [web for web in webs if web is not serving]
            for web in paused:
                web.suspend()  # a stopped process accepts nothing: every connection goes to `serving`
            try:
                request = urllib.request.Request(
                    server.url + "/api/events", method="POST", headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    data=json.dumps({"stackId": f"via-{serving.pid}", "event": "LAUNCH", "machine": "qa-env"}).encode())
                with urllib.request.urlopen(request, timeout=20) as answer:
                    assert answer.status == 200
            finally:
                for web in paused:
                    web.resume()
        assert server.stop() == 0
    finally:
        server.cleanup()


def _login(server: Server, username: str, password: str) -> str:
    """Post the login form as a browser would (cookies, CSRF token); the page it ends on."""
    import http.cookiejar
    import re
    import urllib.parse

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(server.url + "/accounts/login/", timeout=20).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(server.url + "/accounts/login/", data=data.encode(), method="POST",
                                     headers={"Referer": server.url + "/"})
    with opener.open(request, timeout=20) as response:
        return response.read().decode()


def test_several_web_processes_count_failed_logins_together():
    server = Server(workers=0, web=2).start()
    try:
        password = "a-long-password-for-lockout-tests"
        done = server.manage("shell", "-c", "from django.contrib.auth.models import User; "
                             f"User.objects.create_user('lockme', password='{password}')")
        assert done.returncode == 0, done.stderr
        webs = [child for child in server.children() if "daphne" in " ".join(child.cmdline())]
        assert len(webs) == 2, _names(server.children())
        for serving, failures in zip(webs, (3, 2), strict=True):  # 3 failures on one process, 2 on the other
            for web in webs:
                if web is not serving:
                    web.suspend()
            try:
                for _ in range(failures):
                    assert "Too many failed logins" not in _login(server, "lockme", "wrong")
            finally:
                for web in webs:
                    web.resume()
        webs[0].suspend()  # the right password, on the process that saw only 2 of the 5 failures
        try:
            assert "Too many failed logins" in _login(server, "lockme", password)
        finally:
            webs[0].resume()
    finally:
        server.cleanup()


def test_it_does_not_print_the_admin_password_again():
    server = Server(workers=0).start()
    try:
        first = server.admin_password
        server.stop()
        first_run_lines = len(server.output)
        server.process = None
        server.admin_password = None
        server.start()
        second_run = server.output[first_run_lines:]
        assert first and server.admin_password is None
        assert any("CloudSeam is running at" in line for line in second_run)
        assert not any(first in line or "Password:" in line for line in second_run)
    finally:
        server.cleanup()


def test_it_refuses_a_port_in_use_with_a_clear_message():
    second = Server(workers=0)
    try:
        with socket.create_server(("127.0.0.1", 0)) as taken:  # what a running CloudSeam holds: a listening port
            port = taken.getsockname()[1]
            done = second.manage("serve", "--port", str(port), "--workers", "0", timeout=60)
        assert done.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    finally:
        second.cleanup()


def test_it_trusts_forwarded_addresses_only_when_told(settings):
    from stacks.management.commands.serve import _daphne_argv

    settings.TRUST_PROXY = False
    assert "--proxy-headers" not in _daphne_argv("127.0.0.1", 8000)
    settings.TRUST_PROXY = True
    assert "--proxy-headers" in _daphne_argv("127.0.0.1", 8000)


def _mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_it_keeps_the_data_folder_private_to_its_owner():
    server = Server(workers=1).start()
    try:
        server.api("POST", "/api/events", {"stackId": "private", "event": "LAUNCH", "machine": "qa-env"})
        data = server.data_dir
        assert _mode(data) == 0o700 and _mode(data / "logs") == 0o700
        files = [data / "secret_key", data / "cloudseam.sqlite3", data / "cloudseam.sqlite3-wal",
                 data / "cloudseam.sqlite3-shm", *(data / "logs").glob("*.log")]
        assert len(files) >= 6
        assert {str(p.relative_to(data)): oct(_mode(p)) for p in files} == {
            str(p.relative_to(data)): oct(0o600) for p in files}
        import redis

        assert redis.Redis(unix_socket_path=str(data / "redis.sock")).save()
        assert _mode(data / "redis.rdb") == 0o600
    finally:
        server.cleanup()
