"""Each executor's `config`: one function per executor, returning the config with defaults filled."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from machines_app.spec.fields import Fields, Reporter, any_map, describe, scalar_map, text_map
from machines_app.spec.python_prefixes import is_allowed, refusal
from machines_app.spec.reader import item_path, key_path, line_of, quote

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


def _drop_none(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if value is not None}


def terraform_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("action", "source", "variables"))
    return _drop_none(
        {
            "action": fields.choice("action", ("apply", "destroy"), required=True),
            "source": terraform_source(fields),
            "variables": scalar_map(fields, "variables"),
        }
    )


def terraform_source(fields: Fields) -> dict[str, str] | None:
    """`{type: s3, bucket, key}` or `{type: local, location}`, all text."""
    hint = ": {type: s3, bucket, key} or {type: local, location}"
    source = fields.mapping_of("source")
    if source is None:
        fields.get("source", True, hint)
        return None
    sub = fields.sub("source", source, "the terraform source")
    kind = sub.choice("type", ("s3", "local"), required=True)
    keys = {"s3": ("type", "bucket", "key"), "local": ("type", "location")}.get(kind)
    sub.unknown(keys or ("type", "bucket", "key", "location"))
    if keys is None:
        return None
    values = {key: sub.text(key, required=True) for key in keys}
    return values if None not in values.values() else None


def lambda_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("name", "args"))
    return _drop_none({"name": fields.text("name", required=True), "args": any_map(fields, "args")})


def shell_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("command", "env", "cwd"))
    return _drop_none({"command": shell_command(fields), "env": text_map(fields, "env"), "cwd": fields.text("cwd")})


def shell_command(fields: Fields) -> list[str] | None:
    """argv only: CloudSeam never hands a string to a shell (DESIGN §3, executors)."""
    example = 'e.g. ["./deploy.sh", "--env", "qa"]'
    command = fields.get("command", True, f"; a list of arguments, {example}")
    if command is None:
        return None
    if isinstance(command, str):
        fields.error("command", f"command must be a list of arguments, {example}; CloudSeam never runs a shell")
        return None
    if not isinstance(command, list) or not command:
        fields.error("command", f"command must be a non-empty list of arguments, {example}")
        return None
    path, _ = fields.where("command")
    bad = [index for index, arg in enumerate(command) if not isinstance(arg, str)]
    for index in bad:
        message = f"every argument must be text (quote numbers); found {describe(command[index])}"
        fields.report.error(item_path(path, index), line_of(command, index), message)
    if command[0] == "":
        fields.report.error(item_path(path, 0), line_of(command, 0), "the program to run must not be empty")
    return None if bad or command[0] == "" else list(command)


def http_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("url", "method", "headers", "mode"))
    return _drop_none(
        {
            "url": http_url(fields),
            "method": fields.choice("method", HTTP_METHODS, default="POST"),
            "headers": text_map(fields, "headers"),
            "mode": fields.choice("mode", ("sync", "callback"), default="sync"),
        }
    )


def http_url(fields: Fields) -> str | None:
    url = fields.text("url", required=True)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        ok = False
    if not ok:
        fields.error("url", f"'url' must be an http:// or https:// address with a host; found {quote(url)}")
        return None
    return url


def python_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("callable", "args"))
    target = fields.text("callable", required=True)
    if target is not None and not re.fullmatch(CALLABLE_PATTERN, target):
        message = f"'callable' must look like package.module:function; found {quote(target)}"
        fields.error("callable", message)
        target = None
    return _drop_none({"callable": target, "args": any_map(fields, "args")})


def external_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("instructions",))
    return _drop_none({"instructions": fields.text("instructions")})


def sleep_config(fields: Fields) -> dict[str, Any]:
    fields.unknown(("seconds", "fail"))
    return _drop_none({"seconds": fields.number("seconds", 0, default=1), "fail": fields.number("fail", 0, 1)})


CONFIG_CHECKS: dict[str, Callable[[Fields], dict[str, Any]]] = {
    "shell": shell_config,
    "http": http_config,
    "python": python_config,
    "terraform": terraform_config,
    "lambda": lambda_config,
    "external": external_config,
    "sleep": sleep_config,
}


# --- installation rules: passed in by the caller, since the validator reads no settings -----------


def python_callables_allowed(raw_tasks: Any, prefixes: tuple[str, ...], report: Reporter) -> None:
    """`python` tasks may call only modules under the operator's prefixes (the rule the worker applies)."""
    if not isinstance(raw_tasks, Mapping):
        return  # 'tasks' itself is already reported
    for name, body in raw_tasks.items():
        config = body.get("config") if isinstance(body, Mapping) and body.get("executor") == "python" else None
        target = config.get("callable") if isinstance(config, Mapping) else None
        if not isinstance(target, str) or not re.fullmatch(CALLABLE_PATTERN, target):
            continue  # not a python task, or its callable is already reported
        if not is_allowed(target.partition(":")[0], prefixes):
            path = key_path(key_path(key_path("tasks", name), "config"), "callable")
            line = line_of(config, "callable") or line_of(body, "config") or line_of(raw_tasks, name)
            report.error(path, line, refusal(target, prefixes))
