"""Run every benchmark and print its figures beside their limits; exit 1 if any is over its limit."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ["bench_events", "bench_diagrams", "bench_dashboard", "bench_run_record"]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    failed = []
    for name in BENCHMARKS:
        if not (ROOT / "benchmarks" / f"{name}.py").exists():
            print(f"{name}: missing")
            failed.append(name)
            continue
        print(f"== {name}")
        module = importlib.import_module(f"benchmarks.{name}")
        if module.main() != 0:
            failed.append(name)
    print("benchmarks over their limits: " + (", ".join(failed) if failed else "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
