"""Benchmark: the editor's impact check with 10 000 active stacks.

The editor asks `POST /api/machines/<name>/impact` after every pause in typing, so with a busy
machine the answer must stay under 100 ms. Sets Django up against a throw-away SQLite database
(see bench_dashboard), creates 10 000 active qa-env stacks with their tasks in bulk, then times the
endpoint for a draft that removes FROZEN (strands the stacks there, lets the others move up).
Printed beside two references measured in the same run on the same data: a bare SELECT of the
stacks' keys and states, and the validation of the draft alone (`POST /api/machines/validate`).
Run as `.venv/bin/python benchmarks/bench_impact.py`; `benchmarks/run.py` calls `main()`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import create_stacks, setup_django  # noqa: E402

STACKS = 10_000
RUNS = 9
LIMIT_MS = 100.0


def draft_without_frozen() -> str:
    """qa-env with FROZEN gone: FREEZE's scale-down now leads straight to RUN."""
    text = (ROOT / "machines" / "qa-env.yml").read_text().replace("state: FROZEN", "state: RUN")
    start, end = text.index("  FROZEN:\n"), text.index("  THAW:\n")
    return text[:start] + text[end:]


def median_ms(action, runs: int = RUNS) -> float:
    action()  # warm-up: caches, parsed versions
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def admin_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user("bench-admin", password="bench-admin-password")
    user.groups.add(Group.objects.get(name="admin"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def main() -> int:
    """Print the impact figure beside its references and limit; 1 when it is over the limit."""
    data_dir = tempfile.mkdtemp(prefix="cloudseam-bench-")
    try:
        setup_django(data_dir)
        create_stacks(STACKS)
        from stacks.models import Stack

        client, draft = admin_client(), draft_without_frozen()

        def impact():
            response = client.post("/api/machines/qa-env/impact", data=draft, content_type="application/yaml")
            assert response.status_code == 200, response.content[:300]
            return response

        select_ms = median_ms(lambda: list(Stack.objects.filter(removed_at__isnull=True).values_list("key", "state")))
        validate_ms = median_ms(lambda: client.post("/api/machines/validate", data=draft,
                                                    content_type="application/yaml"))
        impact_ms = median_ms(impact)
        body = impact().json()
        print(f"draft impact: {len(body['stranded'])} stranded, {len(body['upgradable'])} upgradable "
              f"of {body['active']} active stacks")
        print(f"reference: SELECT of {STACKS} stacks' keys and states: {select_ms:.0f} ms")
        print(f"reference: POST /api/machines/validate (the draft alone): {validate_ms:.0f} ms")
        flag = "" if impact_ms <= LIMIT_MS else "  OVER THE LIMIT"
        print(f"POST /api/machines/<name>/impact with {STACKS} active stacks: {impact_ms:.0f} ms "
              f"(limit {LIMIT_MS:.0f} ms){flag}")
        return 0 if impact_ms <= LIMIT_MS else 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
