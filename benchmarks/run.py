"""`make bench`: every figure of issue #10 beside a reference measured in the same run, and its goal.

The machine's cores are shared, so absolute rates wander; each figure is compared with a reference
taken at (nearly) the same time: pgbench and a bare Django transaction on the same PostgreSQL,
the same on SQLite, raw RQ no-op jobs on the same worker class and count. Prints one line per
figure (value, reference, ratio, goal, met or not) and exits 0, unless `--check` is given (then 1
when a goal is missed). Names on the command line (`P0`, `P1`, …, `bench_impact`) run only those.
Scratch databases (PostgreSQL `cloudseam_bench_*`, SQLite files, Redis db
BENCH_REDIS_DB) are removed at the end, also after a failure. Needs PostgreSQL for P1, P3 and P4
(BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/); they are skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/").rstrip("/")
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '13')}"
TAG = f"cloudseam_bench_{os.getpid()}"

rows: list[tuple] = []
STANDALONE = [("bench_impact", "impact of a machine edit on 10 000 active stacks (issue 12)"),
              ("bench_run_record", "the run record: stack page with 500 events and 2 000 attempts, replay (issue 8)")]


def report(key: str, label: str, value: float | None, unit: str, reference: float | None = None,
           ref_label: str = "", goal: float | None = None, kind: str = "ratio", note: str = "") -> None:
    """One line: the figure, its reference and ratio, and the goal (a ratio ≥, or a maximum ≤)."""
    if value is None:
        print(f"{key:4} {label}: not measured {note}")
        rows.append((key, None))
        return
    ratio = value / reference if reference else None
    if kind == "ratio":
        met = None if goal is None or ratio is None else ratio >= goal
        goal_text = f"goal ratio ≥ {goal}" if goal is not None else ""
    elif kind == "min":
        met = value >= goal
        goal_text = f"goal ≥ {goal:,.0f} {unit}"
    else:
        met = value <= goal
        goal_text = f"goal ≤ {goal:,.0f} {unit}"
    ref = f"; {ref_label} {reference:,.1f}" if reference is not None else ""
    ratio_text = f"; ratio {ratio:.2f}" if ratio is not None else ""
    verdict = "" if met is None else ("  met" if met else "  NOT MET")
    print(f"{key:4} {label}: {value:,.1f} {unit}{ref}{ratio_text}; {goal_text}{verdict} {note}".rstrip())
    rows.append((key, met))


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


def _create_db(name: str) -> str:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    return f"{SERVER_URL}/{name}"


def _drop_db(name: str) -> None:
    try:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # noqa: BLE001 - report and go on cleaning up
        print(f"could not drop database {name}: {exc}")


def _env(data_dir: str, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CLOUDSEAM_TEST_DATABASE", "CLOUDSEAM_TEST_SQLITE")}
    env.update({"CLOUDSEAM_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings",
                "PYTHONPATH": str(ROOT), "REDIS_URL": REDIS_URL, "CLOUDSEAM_LOG_LEVEL": "WARNING"})
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _migrate(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)


def pgbench(name: str) -> float | None:
    binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    if not Path(binary).exists():
        return None
    url = _create_db(name)
    host = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run([binary, *host, "-i", "-s", "1", "-q", name], check=True, capture_output=True)
    done = subprocess.run([binary, *host, "-N", "-c", "1", "-T", "4", name], capture_output=True, text=True)
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    del url
    return float(found.group(1)) if found else None


def p0() -> None:
    from benchmarks.bench_engine import measure

    figures = measure()
    report("P0", "pure engine, advance + 2 completions + metadata merge", figures["engine"], "events/s",
           figures["transitions"], "`transitions` (reference)", 100_000, kind="min")


def p1(data_dir: str) -> dict | None:
    from benchmarks.bench_events import measure_database

    try:
        tps = pgbench(f"{TAG}_pgbench")
        url = _create_db(TAG)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"P1   PostgreSQL not reachable ({str(exc).strip()[:100]}); P1, P3 and P4 skipped")
        return None
    env = _env(data_dir, url)
    _migrate(env)
    figures = measure_database(env, "pg")
    noop, advance, two = figures["noop"], figures["advance"], figures["two"]
    report("P1", "no-op event, PostgreSQL, 1 process", noop["event"]["rate"], "events/s", tps,
           "pgbench -N -c 1 TPS", 0.4,
           note=f"(bare Django transaction {noop['bare']['rate']:,.0f}/s, ratio "
                f"{noop['event']['rate'] / noop['bare']['rate']:.2f}; {noop['event']['queries']:.0f} vs "
                f"{noop['bare']['queries']:.0f} queries; CPU {noop['event']['cpu_ms']:.1f} vs "
                f"{noop['bare']['cpu_ms']:.1f} ms)")
    report("P1b", "advance into a state with 3 tasks, PostgreSQL", advance["event"]["rate"], "events/s",
           advance["bare"]["rate"], "bare transaction + 3 task rows", 0.5,
           note=f"({advance['event']['queries']:.0f} vs {advance['bare']['queries']:.0f} queries; CPU "
                f"{advance['event']['cpu_ms']:.1f} vs {advance['bare']['cpu_ms']:.1f} ms)")
    pair = sum(p["event"]["rate"] for p in two)
    report("P1c", "no-op, 2 processes on different stacks", pair, "events/s", noop["event"]["rate"],
           "1 process", 1.6, note=f"(bare: 2 processes {sum(p['bare']['rate'] for p in two):,.0f}/s)")
    return {"noop": noop["event"]["rate"], "url": url}


def p2(data_dir: str) -> None:
    from benchmarks.bench_events import collect, run_child

    env = _env(data_dir, None)
    _migrate(env)
    figures = collect(run_child("noop", "lite", env))
    report("P2", "no-op event, SQLite, 1 process", figures["event"]["rate"], "events/s",
           figures["bare"]["rate"], "bare Django SQLite transaction", 0.6,
           note=f"({figures['event']['queries']:.0f} vs {figures['bare']['queries']:.0f} queries)")


def p3_p4(pg: dict | None) -> None:
    if pg is None:
        report("P3", "POST /api/events through serve", None, "", note="(no PostgreSQL)")
        report("P4", "task cycle on 2 workers", None, "", note="(no PostgreSQL)")
        return
    from benchmarks.bench_server import measure, raw_rq_rate

    url = _create_db(f"{TAG}_serve")
    try:
        figures = measure(url)
    finally:
        _drop_db(f"{TAG}_serve")
    url = _create_db(f"{TAG}_serve")
    try:
        two = measure(url, web=2, tasks=False)["post"]
    finally:
        _drop_db(f"{TAG}_serve")
    for web, post in ((1, figures["post"]), (2, two)):
        report("P3", f"POST /api/events through serve --web {web}, 8 keep-alive clients, PG ({post['errors']} errors)",
               post["rate"], "events/s", pg["noop"], "P1 handle_event (1 process)", 0.5)
    reference = raw_rq_rate(REDIS_URL)
    report("P4", "task cycle (4 trivial tasks → NEXT), serve's 2 workers", figures["tasks"]["tasks_per_s"],
           "tasks/s", reference, "raw RQ no-op jobs, 2 SimpleWorkers", 0.5)
    report("P4b", "event accepted → NEXT applied, p50", figures["tasks"]["next_p50_ms"], "ms", goal=50,
           kind="max")


def p5() -> None:
    from benchmarks import bench_live as live

    try:
        url = _create_db(f"{TAG}_live")
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
        report("P5", "event → WebSocket frame", None, "", note=f"(no PostgreSQL: {str(exc).strip()[:100]})")
        return
    try:
        figures = live.measure(url, REDIS_URL)
    finally:
        _drop_db(f"{TAG}_live")
    frames, bare = figures["frames"], figures["bare"]
    label = f"event → WebSocket frame, serve --web {live.WEB}, {live.WATCHERS} watchers at {live.RATE} events/s"
    note = f"(1.5 × bare; {frames['frames']:,} frames, {frames['missing']} watchers short)"
    for name in ("p50", "p99"):
        report("P5", f"{label}, {name}", frames[name], "ms", bare[name], "bare channels_redis + Daphne",
               goal=1.5 * bare[name], kind="max", note=note)
    report("P5b", f"{live.MANY_EVENTS:,} events (8 clients, as fast as they go), {live.MANY_WATCHERS} watchers have "
           "every frame", figures["many_seconds"], "s", figures["bare_many_seconds"],
           "bare: the same frames by group_send to one bare Daphne", goal=12, kind="max",
           note=f"(POSTs took {figures['many_posted_seconds']:.1f} s; {figures['many_missing']} watchers short; "
                f"bare: sent in {figures['bare_many_sent_seconds']:.1f} s, "
                f"{figures['bare_many_missing']} watchers short)")
    cost, many = figures["post_p50"], live.MANY_WATCHERS
    report("P5c", f"POST /api/events p50 at {live.COST_RATE} events/s, {many} watchers", cost[many], "ms",
           cost[0], "0 watchers", goal=1.5 * cost[0], kind="max",
           note=f"(1.5 × 0 watchers; at {live.RATE} events/s with {live.WATCHERS} watchers "
                f"{figures['post_p50_at_rate']:.1f} ms)")


def p6(data_dir: str) -> None:
    code = ("import json, benchmarks.bench_dashboard as d; d.setup_django(%r); d.create_stacks(d.STACKS); "
            "c = d.viewer_client(); v = {**d.VIEWS, 'stack page': '/stacks/feature-1/', '/api/stacks': '/api/stacks'}; "
            "print(json.dumps({l: d.median_ms(c, u) for l, u in v.items()}))")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code % data_dir], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        print(f"P6   dashboard benchmark failed: {done.stderr[-500:]}")
        return
    for label, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
        report("P6", f"{label}, 10 000 active stacks (SQLite)", ms, "ms", goal=100, kind="max")
    from benchmarks import bench_diagrams

    print("P6   300-state machine: diagram text and SVG (the page itself is not measured here):")
    bench_diagrams.main()


def standalone(module: str, title: str) -> None:
    """A benchmark that prints its own figures beside its own reference (it sets up its own Django)."""
    print(f"---- {title}")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}"], env=env, cwd=ROOT, timeout=600)
    if done.returncode != 0:
        rows.append((module, False))


def run_figures(only: set[str], data_dir: str, state: dict) -> None:
    """Every figure, or only those named; `state["pg"]` holds the PostgreSQL details once P1 ran."""
    def wanted(*keys: str) -> bool:
        return not only or bool(only & set(keys))

    pg = None
    if wanted("P0"):
        p0()
    if wanted("P1", "P3", "P4"):
        pg = state["pg"] = p1(data_dir)
    if wanted("P2"):
        p2(data_dir)
    if wanted("P3", "P4"):
        p3_p4(pg)
    if wanted("P5"):
        p5()
    if wanted("P6"):
        p6(tempfile.mkdtemp(prefix="cloudseam-bench-dash-", dir=data_dir))
    for module, title in STANDALONE:
        if wanted(module.upper()):
            standalone(module, title)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    data_dir = tempfile.mkdtemp(prefix="cloudseam-bench-")
    state: dict = {"pg": None}
    only = {arg.upper() for arg in argv if not arg.startswith("-")}
    try:
        run_figures(only, data_dir, state)
    finally:
        for name in (TAG, f"{TAG}_pgbench", f"{TAG}_serve"):
            if state["pg"] is not None or name.endswith("pgbench"):
                _drop_db(name)
        shutil.rmtree(data_dir, ignore_errors=True)
        try:
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
        except Exception:  # noqa: BLE001, S110 - Redis may be absent
            pass
    missed = [key for key, met in rows if met is False]
    print(f"goals missed: {', '.join(missed) or 'none'}; took {time.perf_counter() - started:.0f} s")
    return 1 if missed and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
