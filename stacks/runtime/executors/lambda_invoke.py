"""`lambda`: invokes an AWS Lambda function synchronously (RequestResponse) and waits for it.

Payload: the task message `{"task": {"id", "name", "executor", "config"}, "stack": {...}}`, so the
config's `args` arrive as `task.config.args`. For functions written for the original CloudSeam,
`stackId`, `metadata` and the config's `args` (`{}` when there are none) are also given at the top
level, where such a function reads them.

boto3 is imported only when a lambda task runs: it is large, and workers that never run lambda
tasks need not install it. Credentials and region come from the usual AWS environment.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from stacks.runtime.executors.base import TaskContext, TaskResult, emit, failure, task_message, to_json

MAX_LAMBDA_SECONDS = 900  # Lambda's own limit; a read timeout below it would cut a running function
PREVIEW_CHARS = 1000


class MissingBoto3(Exception):
    def __str__(self) -> str:
        return "the lambda executor needs boto3: pip install boto3"


def make_client(service: str, read_timeout: float) -> Any:
    """A boto3 client that waits as long as the task may run and never retries on its own:
    a retried invoke would run the function twice."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingBoto3() from None
    config = Config(read_timeout=read_timeout, connect_timeout=10, retries={"total_max_attempts": 1})
    return boto3.client(service, config=config)


def _payload(ctx: TaskContext) -> dict:
    message = task_message(ctx)
    stack = message["stack"]
    args = message["task"]["config"].get("args") or {}
    return {**message, "stackId": stack.get("id"), "metadata": stack.get("metadata") or {}, "args": args}


def run(ctx: TaskContext) -> TaskResult:
    name = str(ctx.config.get("name", ""))
    tail: list[str] = []
    emit(ctx, tail, f"invoking lambda function '{name}'")
    try:
        client = make_client("lambda", ctx.timeout or MAX_LAMBDA_SECONDS)
        response = client.invoke(
            FunctionName=name,
            InvocationType="RequestResponse",
            LogType="Tail",
            Payload=to_json(_payload(ctx)).encode("utf-8"),
        )
        raw = response["Payload"].read() if response.get("Payload") is not None else b""
    except MissingBoto3 as exc:
        return failure(str(exc), tail)
    except Exception as exc:  # botocore's errors: no credentials, no such function, throttling …
        return failure(f"invoking lambda function '{name}' failed: {type(exc).__name__}: {exc}", tail)
    _emit_log(ctx, tail, response.get("LogResult"))
    text = raw.decode("utf-8", errors="replace")
    if response.get("FunctionError"):
        return failure(f"lambda function '{name}' failed: {_function_error(text)}", tail)
    emit(ctx, tail, f"lambda function '{name}' answered: {text[:PREVIEW_CHARS]}")
    return TaskResult(ok=True, output_tail=tail)


def _function_error(text: str) -> str:
    """Lambda reports a function's exception as {"errorType", "errorMessage", "stackTrace"}."""
    try:
        details = json.loads(text)
    except ValueError:
        return text[:PREVIEW_CHARS] or "no details"
    if not isinstance(details, dict):
        return text[:PREVIEW_CHARS]
    kind, message = details.get("errorType"), details.get("errorMessage")
    if kind and message:
        return f"{kind}: {message}"
    return str(message or kind or text[:PREVIEW_CHARS])


def _emit_log(ctx: TaskContext, tail: list[str], log_result: str | None) -> None:
    """With LogType=Tail, Lambda returns the last 4 KB of the function's log, base64-encoded."""
    if not log_result:
        return
    try:
        text = base64.b64decode(log_result).decode("utf-8", errors="replace")
    except ValueError:
        return
    lines = text.splitlines()
    if lines:
        emit(ctx, tail, *lines)
