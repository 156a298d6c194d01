"""Event throughput of `handle_event` on one process: events per second and queries per event.

Every extra query per event costs real throughput (DESIGN §8), so the query count is printed beside
the rate. Runs against a temporary SQLite database, and against PostgreSQL when one is reachable
(BENCH_POSTGRES_URL, default the local server). Run: `.venv/bin/python benchmarks/bench_events.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 300
LIMITS = {"events_per_s": 100, "queries_per_event": 12}

MACHINE = """
version: 1
events: [LAUNCH, NOTE, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      NOTE: [{action: no-op}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
"""


def measure() -> dict:
    """Runs inside a process whose environment already points at the database to measure."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from machines_app.services import save_machine
    from stacks.services import handle_event

    call_command("migrate", verbosity=0)
    save_machine("bench", MACHINE, actor="bench")
    handle_event({"stackId": "warm", "event": "LAUNCH", "machine": "bench"}, actor="bench", source="api")

    def timed(messages: list[dict]) -> tuple[float, float]:
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            for message in messages:
                result = handle_event(message, actor="bench", source="api")
                assert result.status == 200, result.body
        elapsed = time.perf_counter() - start
        return len(messages) / elapsed, len(queries) / len(messages)

    launches = [{"stackId": f"s{i}", "event": "LAUNCH", "machine": "bench", "metadata": {"i": i}}
                for i in range(EVENTS)]
    notes = [{"stackId": f"s{i % 20}", "event": "NOTE", "metadata": {"n": i}} for i in range(EVENTS)]
    return {"create": timed(launches), "update": timed(notes)}


def _child(database_url: str | None, data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"CLOUDSEAM_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings",
                "PYTHONPATH": str(ROOT), "REDIS_URL": f"unix://{data_dir}/redis.sock"})
    if database_url:
        env["DATABASE_URL"] = database_url
    code = "import json; from benchmarks.bench_events import measure; print(json.dumps(measure()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def _postgres_url() -> str | None:
    url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/cloudseam_bench")
    try:
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS cloudseam_bench")
            conn.execute("CREATE DATABASE cloudseam_bench")
    except Exception as exc:  # noqa: BLE001 - the PostgreSQL figure is optional
        print(f"handle_event on PostgreSQL: skipped ({str(exc).strip()[:120]})")
        return None
    return url


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from cloudseam_site import embedded_redis, processes

    failures = 0
    data_dir = tempfile.mkdtemp(prefix="cloudseam-bench-")
    redis = embedded_redis.start(Path(data_dir), Path(data_dir) / "redis.sock", open(os.devnull, "wb"))  # noqa: SIM115
    try:
        targets = [("SQLite", None)]
        pg = _postgres_url()
        if pg:
            targets.append(("PostgreSQL", pg))
        for label, url in targets:
            figures = _child(url, data_dir)
            for kind, (rate, queries) in figures.items():
                ok = rate >= LIMITS["events_per_s"] and queries <= LIMITS["queries_per_event"]
                failures += not ok
                print(f"handle_event on {label}, {kind} ({EVENTS} events, one process): {rate:,.0f} events/s "
                      f"(limit >= {LIMITS['events_per_s']}), {queries:.1f} queries/event "
                      f"(limit <= {LIMITS['queries_per_event']}){'' if ok else '  OVER LIMIT'}")
            shutil.rmtree(Path(data_dir) / "staticfiles", ignore_errors=True)
            (Path(data_dir) / "cloudseam.sqlite3").unlink(missing_ok=True)
    finally:
        processes.stop([redis], grace=3)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
