"""Benchmark: the editor's impact check with 10 000 active stacks, on SQLite and PostgreSQL.

The editor asks `POST /api/machines/<name>/impact` after every pause in typing, so with a busy
machine the answer must stay under 100 ms. Sets Django up against a throw-away database (a SQLite
file in a temporary folder, as bench_dashboard; or the PostgreSQL database given), creates 10 000
active qa-env stacks with their tasks in bulk (and, as real stacks have, finished tasks of the states
they went through, which are no longer current), then times the whole endpoint through Django's test
client as a logged-in admin (session, role check, YAML validation, the stacks, the JSON answer) for
two drafts: one that removes FROZEN (strands the stacks there, lets the others move up) and one from
which no terminal state can be reached (strands every stack: the largest answer).

Each figure is printed beside references measured in the same run, interleaved with it, on the same
data: a bare SELECT of the stacks' keys and states, and the validation of the draft alone
(`POST /api/machines/validate`). The machine's cores are shared, so compare with those, not with
another run. Then, unless `--sqlite-only`, the same in a scratch PostgreSQL database on
BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/; skipped when not reachable).

Run as `.venv/bin/python -m benchmarks.bench_impact`; `benchmarks/run.py bench_impact` runs it too.
Exits 1 when a figure is over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import create_stacks, setup_django  # noqa: E402

STACKS = 10_000
RUNS = 15
LIMIT_MS = 100.0


def draft_without_frozen() -> str:
    """qa-env with FROZEN gone: FREEZE's scale-down now leads straight to RUN."""
    text = (ROOT / "machines" / "qa-env.yml").read_text().replace("state: FROZEN", "state: RUN")
    start, end = text.index("  FROZEN:\n"), text.index("  THAW:\n")
    return text[:start] + text[end:]


def draft_without_terminal() -> str:
    """qa-env whose DESTROY loops on itself instead of ending: from no state can a stack finish."""
    text = (ROOT / "machines" / "qa-env.yml").read_text()
    ending = "  DESTROY:\n    terminal: true\n    tasks:\n      - teardown\n"
    looping = ("  DESTROY:\n    tasks:\n      - teardown\n    on:\n      NEXT:\n        - action: advance\n"
               "          state: DESTROY\n\n  GONE:\n    terminal: true\n")
    return text.replace(ending, looping)


DRAFTS = {"removes FROZEN": draft_without_frozen, "reaches no terminal state": draft_without_terminal}


def medians_ms(actions: dict[str, Callable[[], object]], runs: int = RUNS) -> dict[str, float]:
    """The median time of each action, run in turns so that each meets the same load as the others."""
    for action in actions.values():
        action()  # warm-up: caches, parsed versions
    timings: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            started = time.perf_counter()
            action()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(found) for name, found in timings.items()}


def add_history() -> None:
    """Every stack went through PROVISION once: its two tasks there, finished, are no longer current."""
    from stacks.models import SATISFIED, Stack, Task

    past = (("cert-provision", "sleep"), ("db-setup", "shell"))
    Task.objects.bulk_create(
        [Task(stack_id=pk, name=name, state="PROVISION", position=position, executor=executor, status=SATISFIED,
              current=False)
         for pk in Stack.objects.values_list("pk", flat=True) for position, (name, executor) in enumerate(past)],
        batch_size=5000,
    )


def admin_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user("bench-admin", password="bench-admin-password")
    user.groups.add(Group.objects.get(name="admin"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def setup(data_dir: str, database_url: str | None) -> str:
    """Django on a fresh SQLite file, or on the (throw-away) database at `database_url`; its name."""
    if database_url is None:
        setup_django(data_dir)
        return "SQLite"
    for name in ("CLOUDSEAM_TEST_DATABASE", "CLOUDSEAM_TEST_SQLITE"):
        os.environ.pop(name, None)
    os.environ.update(CLOUDSEAM_DATA_DIR=data_dir, DATABASE_URL=database_url,
                      DJANGO_SETTINGS_MODULE="cloudseam_site.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return "PostgreSQL"


def measure(database: str) -> bool:
    """Print the figures for every draft beside their references; True when all are within the limit."""
    from stacks.models import Stack

    client = admin_client()

    def post(url: str, text: str):
        response = client.post(url, data=text, content_type="application/yaml")
        assert response.status_code == 200, response.content[:300]
        return response

    drafts = {label: make() for label, make in DRAFTS.items()}
    actions = {"select": lambda: list(Stack.objects.filter(removed_at__isnull=True).values_list("key", "state"))}
    for label, text in drafts.items():
        actions[f"validate {label}"] = lambda text=text: post("/api/machines/validate", text)
        actions[label] = lambda text=text: post("/api/machines/qa-env/impact", text)
    found = medians_ms(actions)
    select_ms = found["select"]
    print(f"{database}, {STACKS} active qa-env stacks; reference: SELECT of their keys and states: {select_ms:.1f} ms")
    within = True
    for label, text in drafts.items():
        response = post("/api/machines/qa-env/impact", text)
        body = json.loads(response.content)
        ms = found[label]
        within = within and ms <= LIMIT_MS
        flag = "" if ms <= LIMIT_MS else "  OVER THE LIMIT"
        print(f"  POST /api/machines/<name>/impact, draft {label} ({body['strandedCount']} stranded, "
              f"{body['upgradableCount']} upgradable; {len(response.content) / 1024:.0f} KiB of JSON): "
              f"{ms:.1f} ms = {ms / select_ms:.1f} × the SELECT (limit {LIMIT_MS:.0f} ms){flag}")
        print(f"    reference: POST /api/machines/validate (the draft alone): {found[f'validate {label}']:.1f} ms")
    return within


def run(database_url: str | None) -> int:
    data_dir = tempfile.mkdtemp(prefix="cloudseam-bench-")
    try:
        database = setup(data_dir, database_url)
        create_stacks(STACKS)
        add_history()
        if database == "PostgreSQL":
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # the statistics autovacuum would gather on a live database
        return 0 if measure(database) else 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def on_postgres() -> int:
    """The same figures in a scratch PostgreSQL database (its own process: Django is set up once per process)."""
    from benchmarks.run import SERVER_URL, _create_db, _drop_db

    name = f"cloudseam_bench_impact_{os.getpid()}"
    try:
        url = _create_db(name)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"PostgreSQL not reachable at {SERVER_URL} ({str(exc).strip()[:100]}); its figures are skipped")
        return 0
    try:
        command = [sys.executable, "-m", "benchmarks.bench_impact", "--database-url", url]
        return subprocess.run(command, cwd=ROOT, timeout=600).returncode
    finally:
        _drop_db(name)


def main(argv: list[str] | None = None) -> int:
    """Print the impact figures beside their references and limit; 1 when one is over the limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="measure on this throw-away database instead (migrated, filled)")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    args = parser.parse_args(argv)
    if args.database_url:
        return run(args.database_url)
    status = run(None)
    if not args.sqlite_only:
        status = max(status, on_postgres())
    return status


if __name__ == "__main__":
    sys.exit(main())
