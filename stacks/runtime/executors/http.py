"""`http`: sends the task message as JSON to a URL.

`mode: sync` (default) means the answer is the result: 2xx succeeds, anything else fails.
`mode: callback` means a 2xx only says "accepted": the remote system reports completion later
through the API, naming the task-instance id it received in `task.id`.
"""

from __future__ import annotations

from cloudseam_site import outbound
from stacks.runtime.executors.base import (
    TaskContext,
    TaskResult,
    emit,
    failure,
    format_seconds,
    task_message,
    to_json,
)

DEFAULT_TIMEOUT = 30.0
BODY_PREVIEW_CHARS = 200
MAX_BODY_BYTES = 64 * 1024  # only a preview is shown; a huge answer must not fill the worker's memory
METHODS_WITHOUT_BODY = {"GET", "HEAD"}


def _headers(ctx: TaskContext) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "CloudSeam"}
    headers.update({str(k): str(v) for k, v in (ctx.config.get("headers") or {}).items()})
    return headers


def _preview(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").strip()[:BODY_PREVIEW_CHARS]


def run(ctx: TaskContext) -> TaskResult:
    """Every request goes through `cloudseam_site.outbound` (no internal addresses, redirects checked)."""
    url = str(ctx.config.get("url", ""))
    method = str(ctx.config.get("method") or "POST").upper()
    mode = str(ctx.config.get("mode") or "sync")
    if not url.lower().startswith(("http://", "https://")):
        return failure(f"the http executor only calls http:// and https:// URLs, not '{url}'")
    timeout = ctx.timeout or DEFAULT_TIMEOUT
    label = f"{method} {url}"
    tail: list[str] = []
    emit(ctx, tail, f"{label} ({mode})")
    body = None if method in METHODS_WITHOUT_BODY else to_json(task_message(ctx)).encode("utf-8")
    try:
        response = outbound.request(method, url, body=body, headers=_headers(ctx), timeout=timeout,
                                    max_bytes=MAX_BODY_BYTES)
    except outbound.Refused as exc:
        return failure(f"{label} refused: {exc.message}", tail)
    except TimeoutError:
        return failure(f"{label} timed out after {format_seconds(timeout)} s", tail)
    except OSError as exc:
        return failure(f"{label} failed: {_reason(exc)}", tail)
    status, body = response.status, response.body
    if not 200 <= status < 300:
        return failure(f"{label} answered {status}: {_preview(body)}", tail)
    emit(ctx, tail, f"answered {status}: {_preview(body)}" if body else f"answered {status}")
    if mode == "callback":
        emit(ctx, tail, "waiting for the remote system to report completion through the API")
        return TaskResult(ok=True, waiting=True, output_tail=tail)
    return TaskResult(ok=True, output_tail=tail)


def _reason(reason: object) -> str:
    """`[Errno 111] Connection refused` → `connection refused`; the URL is already in the sentence."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason)
