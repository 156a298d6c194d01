"""Importable functions for the python executor's tests (the child process imports this module)."""

from __future__ import annotations

import time


def greet(task: dict, stack: dict, name: str = "world") -> dict:
    print(f"hello {name} from {stack['id']} ({task['name']})")
    return {"greeted": name, "metadata": stack.get("metadata")}


def explode(task: dict, stack: dict) -> None:
    raise ValueError("the database is on fire")


def nap(task: dict, stack: dict, seconds: float = 100) -> None:
    print("napping", flush=True)
    time.sleep(seconds)


not_a_function = 42


def kill_the_worker(task_id: str) -> None:
    """An RQ job that kills its own worker process, as `kill -9` or the OOM killer would."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
