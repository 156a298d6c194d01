"""The embedded Redis keeps queued jobs across a restart: it really has a save rule and a dump file."""

from __future__ import annotations

import redis

from cloudseam_site import embedded_redis, processes


def test_it_saves_queued_jobs_to_the_data_folder(tmp_path):
    socket_path = tmp_path / "redis.sock"
    with open(tmp_path / "redis.log", "ab") as log:
        server = embedded_redis.start(tmp_path, socket_path, log)
    try:
        client = redis.Redis(unix_socket_path=str(socket_path))
        assert client.config_get("save") == {"save": "60 1"}
        client.rpush("rq:queue:default", "a job")
        client.save()
        assert (tmp_path / "redis.rdb").stat().st_size > 0
    finally:
        processes.stop([server], grace=3)
