"""The rules of machine format v1, one small function per rule (see DESIGN §4).

Split from `spec.py` so each rule stays short and readable: `spec.py` walks the document and builds
the machine, this module says what one piece may look like. Pure Python, no Django. Every problem is
reported with the path to the culprit, its YAML line and a sentence naming what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from machines_app.python_prefixes import is_allowed, refusal
from machines_app.yaml_safe import LineDict, item_path, key_path, line_of, quote, to_plain

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
_SHOWN_NAMES = 20  # known-name lists in messages are cut after this many


class Reporter(Protocol):
    """Where rules send problems; `spec` turns them into `Problem`s (kept apart to avoid a cycle)."""

    def error(self, path: str, line: int | None, message: str) -> None: ...

    def warn(self, path: str, line: int | None, message: str) -> None: ...


# --- message helpers ----------------------------------------------------------------------------


def describe(value: Any) -> str:
    """How a found value is named in messages: "found the text '1'", "found a list"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        shown = str(value)
        return f"the number {shown if len(shown) <= 30 else shown[:27] + '...'}"
    if isinstance(value, str):
        return f"the text {quote(value)}"
    return "a mapping" if isinstance(value, Mapping) else "a list"


def name_list(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown if len(names) <= _SHOWN_NAMES else f"{shown}, ... ({len(names)} in all)"


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "does not exist") -> str:
    """Names the culprit, a close match if any, and the known names.

    e.g. "state 'RUNN' does not exist (did you mean 'RUN'?); known states: INIT, PROVISION, RUN".
    """
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1) if len(known) < 1000 else []
    hint = f" (did you mean {quote(close[0])}?)" if close else ""
    return f"{kind} {quote(name)} {where}{hint}; known {kind}s: {name_list(known)}"


# --- reading one mapping field by field ---------------------------------------------------------


class Fields:
    """Reads one YAML mapping field by field, reporting each problem with its path and line.

    Every rule needs the same four things (the mapping, its path, its line and the report); keeping
    them together makes each rule a line or two. `what` names the mapping in messages
    ("the terraform config", "state PROVISION"). A null value counts as missing.
    """

    def __init__(self, mapping: Mapping, path: str, line: int | None, report: Reporter, what: str):
        self.mapping, self.base, self.report, self.what = mapping, path, report, what
        self.line = getattr(mapping, "line", None) if line is None else line

    def where(self, key: str) -> tuple[str, int | None]:
        return key_path(self.base, key), line_of(self.mapping, key) or self.line

    def error(self, key: str, message: str) -> None:
        self.report.error(*self.where(key), message)

    def unknown(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in self.mapping:
            if key not in allowed:
                self.error(key, f"unknown key {quote(key)} in {self.what}; allowed keys: {', '.join(allowed)}")

    def get(self, key: str, required: bool, hint: str = "") -> Any:
        value = self.mapping.get(key)
        if value is None and required:
            self.error(key, f"missing {quote(key)} in {self.what}{hint}")
        return value

    def typed(self, key: str, ok: Callable[[Any], bool], kind: str, required: bool = False) -> Any:
        value = self.get(key, required)
        if value is None:
            return None
        if not ok(value):
            self.error(key, f"{quote(key)} must be {kind}; found {describe(value)}")
            return None
        return value

    def sub(self, key: str, mapping: Mapping, what: str) -> Fields:
        path, line = self.where(key)
        return Fields(mapping, path, line, self.report, what)

    def text(self, key: str, required: bool = False, default: str | None = None) -> str | None:
        value = self.typed(key, lambda v: isinstance(v, str), "text", required)
        if value == "" and required:
            self.error(key, f"{quote(key)} must not be empty in {self.what}")
            return None
        return default if value is None else value

    def choice(
        self, key: str, choices: tuple[str, ...], required: bool = False, default: str | None = None
    ) -> str | None:
        hint = f"; allowed: {', '.join(choices)}"
        value = self.get(key, required, hint)
        if value is None:
            return default
        if value not in choices:
            self.error(key, f"{quote(key)} must be one of {', '.join(choices)}; found {describe(value)}")
            return None
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.typed(key, lambda v: isinstance(v, bool), "true or false")
        return default if value is None else value

    def number(
        self, key: str, low: float, high: float = math.inf, low_open: bool = False, default: float | None = None
    ) -> float | None:
        """A finite number in [low, high] (or (low, high] with low_open); booleans are not numbers."""
        value = self.typed(key, is_number, "a number")
        if value is None:
            return default
        if not is_finite(value) or value < low or value > high or (low_open and value == low):
            self.error(key, f"{quote(key)} must be {_range(low, high, low_open)}; found {describe(value)}")
            return None
        return value

    def integer(self, key: str, low: int, default: int) -> int:
        value = self.typed(key, lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number")
        if value is None:
            return default
        if value < low:
            self.error(key, f"{quote(key)} must be {low} or more; found {describe(value)}")
            return default
        return value

    def mapping_of(self, key: str, required: bool = False) -> LineDict | None:
        return self.typed(key, lambda v: isinstance(v, Mapping), "a mapping (key: value)", required)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: int | float) -> bool:
    """False for inf, nan and integers too large for a float (they would overflow later)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _range(low: float, high: float, low_open: bool) -> str:
    lower = f"above {low:g}" if low_open else f"{low:g} or more"
    return f"a number {lower}" if high == math.inf else f"a number from {low:g} to {high:g}"


# --- small value shapes shared by several executors ---------------------------------------------


def text_map(fields: Fields, key: str) -> dict[str, str] | None:
    """env and headers: text values; whole numbers are turned into text (PORT: 8080)."""
    mapping = fields.mapping_of(key)
    if mapping is None:
        return None
    result = {}
    for name, value in mapping.items():
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            message = f'{quote(name)} must be text (quote it, e.g. "1.10"); found {describe(value)}'
            fields.sub(key, mapping, key).error(name, message)
            continue
        result[name] = value
    return result


def scalar_map(fields: Fields, key: str) -> dict[str, Any] | None:
    """Terraform variables: text, numbers, true/false or null, not nested lists or mappings."""
    mapping = fields.mapping_of(key)
    if mapping is None:
        return None
    for name, value in mapping.items():
        if isinstance(value, Mapping | list):
            message = f"{quote(name)} must be a text, number, true/false or null value; found {describe(value)}"
            fields.sub(key, mapping, key).error(name, message)
    return to_plain(mapping)


def any_map(fields: Fields, key: str) -> dict[str, Any] | None:
    mapping = fields.mapping_of(key)
    return None if mapping is None else to_plain(mapping)


def _drop_none(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if value is not None}


# --- executor configs: one function each, returning the config with defaults filled -------------


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


# --- warnings: the machine is valid but probably not what was meant -----------------------------


def advance_targets(state: Any) -> set[str]:
    return {action.state for actions in state.on.values() for action in actions if action.kind == "advance"}


def reachable_states(states: Mapping[str, Any]) -> set[str]:
    """States an INIT stack can get to by any event (NEXT included)."""
    if "INIT" not in states:
        return set()
    seen, todo = {"INIT"}, ["INIT"]
    while todo:
        for target in advance_targets(states[todo.pop()]):
            if target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def warn_unreachable_states(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    reachable = reachable_states(states)
    for name in states:
        if reachable and name not in reachable:
            message = f"state {name} cannot be reached from INIT: no reachable state advances to it"
            report.warn(key_path("states", name), lines.get(name), message)


def warn_no_terminal_path(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    reachable = reachable_states(states)
    has_terminal = any(state.terminal for state in states.values())
    if reachable and has_terminal and not any(states[name].terminal for name in reachable):
        message = "no terminal state can be reached from INIT: stacks of this machine are never removed"
        report.warn("states.INIT", lines.get("INIT"), message)


def warn_unhandled_events(places: Mapping[str, tuple[str, int | None]], states: Mapping, report: Reporter) -> None:
    """`places`: each declared event's path and line, in declaration order."""
    handled = {event for state in states.values() for event in state.on}
    for event, (path, line) in places.items():
        if event not in handled:
            message = f"event {event} is declared but no state handles it: sending it is always rejected"
            report.warn(path, line, message)


def warn_unused_tasks(tasks: Iterable[str], states: Mapping, lines: Mapping, report: Reporter) -> None:
    used = {name for state in states.values() for name in state.tasks}
    for name in tasks:
        if name not in used:
            report.warn(key_path("tasks", name), lines.get(name), f"task {name} is defined but no state uses it")


def warn_next_in_terminal(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    """A terminal stack is removed once its tasks are done, so its NEXT handler can never run."""
    for name, state in states.items():
        if state.terminal and "NEXT" in state.on:
            message = (
                f"state {name} is terminal: the stack is removed when its tasks are done, "
                "so this NEXT handler never runs"
            )
            path = key_path(key_path(key_path("states", name), "on"), "NEXT")
            report.warn(path, lines.get(name), message)


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
