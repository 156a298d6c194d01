"""`python`: calls `package.module:function(task=..., stack=..., **args)` in a child process.

Only modules under the prefixes the operator allowed (CLOUDSEAM_PYTHON_PREFIXES) may be called:
a machine definition must not be able to name `os:system`. The call runs in a fresh interpreter
started with an argv list, not in a fork of the worker: the worker has threads and open database
and Redis connections that a fork would copy, and a separate process is what lets the timeout
kill a runaway function. The request and the answer travel through JSON files, never as code.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from machines_app.spec.python_prefixes import is_allowed  # the one rule, shared with the validator
from machines_app.spec.python_prefixes import refusal as _refusal
from stacks.runtime.executors.base import (
    TaskContext,
    TaskResult,
    emit,
    failure,
    plain,
    task_environment,
    task_message,
)
from stacks.runtime.executors.process import ProcessStartError, run_process

RESULT_PREVIEW_CHARS = 2000

# Constant bootstrap for the child; the only variable parts are two file paths in argv.
_BOOTSTRAP = (
    "import sys; from stacks.runtime.executors.python_call import child_main; "
    "sys.exit(child_main(sys.argv[1], sys.argv[2]))"
)


def _check(spec: str, args: dict, prefixes: tuple[str, ...]) -> str | None:
    """The reason not to run, or None."""
    module, _, function = spec.partition(":")
    if not module or not function:
        return f"python callable '{spec}' must look like 'package.module:function'"
    if not is_allowed(module, prefixes):
        return _refusal(spec, prefixes)
    clashes = sorted({"task", "stack"} & set(args))
    if clashes:
        return f"python args may not be named {' or '.join(clashes)}: the callable receives those itself"
    return None


def _child_env(ctx: TaskContext) -> dict[str, str]:
    """The child imports exactly what the worker can: same interpreter, same sys.path."""
    env = task_environment(ctx)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"  # prints reach the live output as they happen
    return env


def run(ctx: TaskContext) -> TaskResult:
    spec = str(ctx.config.get("callable", ""))
    args = plain(ctx.config.get("args") or {})
    reason = _check(spec, args, ctx.python_prefixes)
    if reason:
        return failure(reason)
    module, _, function = spec.partition(":")
    message = task_message(ctx)
    request = {"spec": spec, "module": module, "function": function, "args": args, **message}
    with tempfile.TemporaryDirectory(prefix="cloudseam-python-", dir=ctx.workdir) as scratch:
        request_path = Path(scratch, "request.json")
        result_path = Path(scratch, "result.json")
        request_path.write_text(json.dumps(request, default=str), encoding="utf-8")
        argv = [sys.executable, "-c", _BOOTSTRAP, str(request_path), str(result_path)]
        try:
            outcome = run_process(argv, env=_child_env(ctx), timeout=ctx.timeout, on_output=ctx.on_output,
                                  lease=ctx.lease)
        except ProcessStartError as exc:
            return failure(str(exc))
        if outcome.timed_out:
            return failure(outcome.error("python callable", ctx.timeout) or "", outcome.tail)
        report = _read_report(result_path)
    tail = outcome.tail
    if report is None:
        # The child died without a word (os._exit, a signal, out of memory).
        return failure(outcome.error(f"python callable '{spec}'", ctx.timeout) or "no result", tail)
    if not report.get("ok"):
        return failure(str(report.get("error")), tail)
    if report.get("value") is not None:
        emit(ctx, tail, "result: " + json.dumps(report["value"], default=str)[:RESULT_PREVIEW_CHARS])
    return TaskResult(ok=True, output_tail=tail)


def _read_report(path: Path) -> dict | None:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


# --- the child side -------------------------------------------------------------------------------


def _write_report(path: str, report: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(report, default=str), encoding="utf-8")


def child_main(request_path: str, result_path: str) -> int:
    """Runs in the child: import, call, and write {"ok", "value"|"error"} for the parent."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    spec, module_name, function_name = request["spec"], request["module"], request["function"]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        traceback.print_exc()
        error = f"could not import module '{module_name}': {type(exc).__name__}: {exc}"
        _write_report(result_path, {"ok": False, "error": error})
        return 1
    function = getattr(module, function_name, None)
    if not callable(function):
        error = f"module '{module_name}' has no function '{function_name}'"
        _write_report(result_path, {"ok": False, "error": error})
        return 1
    try:
        value = function(task=request["task"], stack=request["stack"], **request["args"])
    except BaseException as exc:  # SystemExit too: the function ended badly either way
        traceback.print_exc()
        error = f"python callable '{spec}' raised {type(exc).__name__}: {exc}"
        _write_report(result_path, {"ok": False, "error": error})
        return 1
    _write_report(result_path, {"ok": True, "value": value})
    return 0
