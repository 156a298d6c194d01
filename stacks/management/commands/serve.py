"""serve: all of CloudSeam on one machine, in one command (DESIGN §6.5, §7).

Migrates, syncs the machines folder, starts an embedded Redis (unless REDIS_URL is set), Daphne
(HTTP + WebSocket) and N RQ workers, prints the URL (and, on the first run, the admin password),
then supervises: a dead worker is restarted; Ctrl-C or SIGTERM stops every child.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cloudseam_site import embedded_redis, processes
from cloudseam_site.private_files import use_private_umask
from machines_app.services import load_folder

WORKER_RESTART_DELAY = 2.0
BACKLOG = 1024  # pending connections the web server accepts in a burst
LISTEN_FD = 3  # where a shared listening socket is handed to the web processes (systemd's first)


class Command(BaseCommand):
    help = "Run CloudSeam: web server with WebSockets, workers and (by default) an embedded Redis."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CLOUDSEAM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CLOUDSEAM_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
        parser.add_argument("--web", type=int, default=int(os.environ.get("CLOUDSEAM_WEB_PROCESSES", "1")),
                            help="web server processes sharing the port, each with its own database pool "
                                 "(default 1, or CLOUDSEAM_WEB_PROCESSES)")

    def handle(self, *args, host, port, workers, web, **options):
        if workers < 0:
            raise CommandError("--workers must be 0 or more")
        if web < 1:
            raise CommandError("--web must be 1 or more")
        _check_port_free(host, port)
        use_private_umask()  # the database, its -wal/-shm, redis.rdb and logs are created 0600
        logs = Path(settings.DATA_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        children: list = []
        redis_process = None
        stopping = {"now": False}

        def request_stop(signum, frame):
            stopping["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            if settings.EMBEDDED_REDIS:
                redis_log = open(logs / "redis.log", "ab")  # noqa: SIM115 - lives as long as serve
                redis_process = embedded_redis.start(
                    Path(settings.DATA_DIR), Path(settings.EMBEDDED_REDIS_SOCKET), redis_log
                )
            self._prepare()
            env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "CLOUDSEAM_DATA_DIR": str(settings.DATA_DIR)}
            if web > 1 and not env.get("CLOUDSEAM_CACHE_URL"):
                env["CLOUDSEAM_CACHE_URL"] = settings.REDIS_URL  # login throttling counts across the web processes
            webs = _start_web(host, port, web, env)
            children.extend(webs)
            pool = [self._start_worker(env, i, logs) for i in range(workers)]
            children.extend(pool)
            _wait_until_served(host, port, webs)
            self.stdout.write(self.style.SUCCESS(f"CloudSeam is running at http://{_display(host)}:{port}/"))
            self.stdout.write(f"data folder: {settings.DATA_DIR}; Redis: {_redis_label()}; workers: {workers}"
                              + (f"; web processes: {web}" if web > 1 else ""))
            if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("DJANGO_ALLOWED_HOSTS"):
                self.stderr.write(
                    f"note: listening on {host}, but only {', '.join(settings.ALLOWED_HOSTS)} are accepted as "
                    "host names; set DJANGO_ALLOWED_HOSTS to the name people will use (e.g. cloudseam.example.com)"
                )
            self.stdout.write("Press Ctrl-C to stop.")
            sys.stdout.flush()
            self._supervise(webs, pool, env, logs, children, stopping)
        except embedded_redis.EmbeddedRedisError as exc:
            raise CommandError(str(exc)) from None
        finally:
            processes.stop(children)  # web and workers first: they still need Redis to shut down
            if redis_process is not None:
                processes.stop([redis_process])
            self.stdout.write("CloudSeam stopped.")

    def _prepare(self) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self._first_run_admin()
        folder = Path(settings.MACHINES_DIR)
        if folder.is_dir():
            report = load_folder(folder)
            loaded = len(report.created) + len(report.unchanged)
            self.stdout.write(f"machines from {folder}: {loaded} loaded ({len(report.created)} new versions)")
            for reason in report.outdated.values():
                self.stdout.write(f"note: {reason}")
            for name, problems in report.invalid.items():
                first = problems[0]
                self.stderr.write(f"skipped {name}: line {first.line or '?'}: {first.path}: {first.message}")
        else:
            self.stdout.write(f"no machines folder at {folder}; add machines in the editor or with load_machines")

    def _first_run_admin(self) -> None:
        user_model = get_user_model()
        existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            name = existing.get_username()
            self.stdout.write(f"Admin account: {name} (created on the first run; its password was shown then). "
                              f"Forgot it? Set a new one: {_python()} manage.py changepassword {name}")
            return
        password = secrets.token_urlsafe(12)
        admin = user_model.objects.create_superuser("admin", "", password)
        admin.groups.add(Group.objects.get(name="admin"))
        self.stdout.write(self.style.WARNING(
            f"First run: created the admin account. Username: admin  Password: {password}\n"
            "This password is shown only once; change it in the admin (/admin/password_change/)."
        ))

    def _start_worker(self, env: dict, index: int, logs: Path):
        log = open(logs / f"worker-{index}.log", "ab")  # noqa: SIM115 - lives as long as the worker
        argv = [sys.executable, "-m", "django", "rqworker", "default", "--with-scheduler",  # notification retries
                "--worker-class", "stacks.runtime.worker.CloudSeamWorker", "--name", f"cloudseam-{os.getpid()}-{index}-"
                f"{secrets.token_hex(3)}"]
        return processes.spawn(argv, env={**env, "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings"},
                               log_file=log)

    def _supervise(self, webs, pool, env, logs, children, stopping) -> None:
        while not stopping["now"]:
            time.sleep(0.5)
            for web in webs:
                if web.poll() is not None:
                    raise CommandError(f"the web server exited with code {web.returncode}")
            for index, worker in enumerate(pool):
                if worker.poll() is not None and not stopping["now"]:
                    self.stderr.write(f"worker {index} exited with code {worker.returncode}; restarting it")
                    time.sleep(WORKER_RESTART_DELAY)
                    replacement = self._start_worker(env, index, logs)
                    pool[index] = replacement
                    children.append(replacement)


def _daphne_argv(host: str, port: int, fd: int | None = None) -> list[str]:
    proxy = ["--proxy-headers"] if settings.TRUST_PROXY else []
    if fd is not None:  # a socket serve listens on, shared by several web processes (systemd's convention)
        endpoint = f"systemd:domain={'INET6' if ':' in host else 'INET'}:index=0"
    else:
        # Twisted listens with a backlog of 50 by default: a burst of new connections beyond it was reset.
        interface = host.strip("[]").replace(":", r"\:")
        endpoint = f"tcp:port={port}:interface={interface}:backlog={BACKLOG}"
    return [sys.executable, "-m", "daphne", "-v", "0", "-e", endpoint, *proxy, "cloudseam_site.asgi:application"]


def _start_web(host: str, port: int, count: int, env: dict) -> list:
    """One Daphne on the port, or `count` of them accepting from one socket that serve opens.

    One Daphne process runs the Django views of all its requests on one thread (a sync view holds
    the GIL): a second process is what lets requests use a second core. The kernel hands each new
    connection to whichever process accepts first; each process has its own database pool, so the
    budget is pool size × web processes (README, "Connection budget").
    """
    if count == 1:
        return [processes.spawn(_daphne_argv(host, port), env=env, log_file=None)]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host.strip("[]"), port))
    listener.listen(BACKLOG)
    listener.set_inheritable(True)
    # systemd's socket passing (Twisted reads it): the socket is descriptor 3, LISTEN_FDS=1 and
    # LISTEN_PID is the server's own pid, which only the child knows (hence the shell that execs Daphne).
    shell = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" "$@"'
    argv = ["/bin/sh", "-c", shell, *_daphne_argv(host, port, LISTEN_FD)]
    try:
        return [processes.spawn(argv, env=env, log_file=None, pass_fds=[LISTEN_FD],
                                move_fds={listener.fileno(): LISTEN_FD}) for _ in range(count)]
    finally:
        listener.close()  # the web processes hold it now


def _python() -> str:
    """How to name this Python in a hint: `.venv/bin/python` when it is under the current folder."""
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def _display(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _redis_label() -> str:
    return "embedded" if settings.EMBEDDED_REDIS else settings.REDIS_URL.split("@")[-1]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None


def _wait_until_served(host: str, port: int, webs: list, timeout: float = 30) -> None:
    """Until a web process answers HTTP (a shared socket accepts connections before anyone serves them)."""
    deadline = time.monotonic() + timeout
    target = _display(host)
    while time.monotonic() < deadline:
        for web in webs:
            if web.poll() is not None:
                raise CommandError(f"the web server exited with code {web.returncode} while starting")
        connection = http.client.HTTPConnection(target, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return  # any answer: a process serves (the host name it was asked for may not be allowed)
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            connection.close()
    raise CommandError(f"the web server did not start listening on {host}:{port} within {timeout:.0f} s")
