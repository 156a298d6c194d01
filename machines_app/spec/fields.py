"""Reading one YAML mapping field by field, with a sentence for every wrong value.

Every problem is reported with the path to the culprit, its YAML line and a sentence naming what
is allowed, so the rules in `rules` and `executor_configs` stay one short function each.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from machines_app.spec.reader import LineDict, key_path, line_of, quote, to_plain

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
