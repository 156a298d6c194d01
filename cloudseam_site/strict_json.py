"""Strict JSON for every door (API, pages, admin, CLI): what `json.loads` lets through and CloudSeam
must not. Pure Python; imports nothing of ours, so any layer may use it.

- A key given twice in one object is refused (plain `json.loads` keeps the last one silently).
- `NaN`, `Infinity` and `-Infinity` are refused: they are not JSON.
- Text that cannot be encoded as UTF-8 is refused: a lone surrogate such as the escape `\\ud800`
  decodes to a Python string that no database, page or log can store or show.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

MAX_SHOWN_KEY = 40
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonInputError(ValueError):
    """The text is not JSON CloudSeam accepts; `message` is a sentence for the person who sent it."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def _shown(key: str) -> str:
    return repr(key[:MAX_SHOWN_KEY] + ("…" if len(key) > MAX_SHOWN_KEY else "")).encode(
        "utf-8", "backslashreplace").decode("utf-8")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise JsonInputError(f"the key {_shown(key)} appears twice in one JSON object; give each key once")
        result[key] = value
    return result


def _no_constant(name: str):
    raise JsonInputError(f"the JSON contains {name}, which is not valid JSON")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable_path(value: object, path: str = "") -> str | None:
    """Where in a decoded value a string (or key) cannot be encoded as UTF-8, or None when nowhere.

    The answer reads like `metadata["k"]` or `the key of metadata`; "" is the value itself.
    """
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:  # a loop, not recursion: a deeply nested value must not overflow the stack
        item, where = stack.pop()
        if isinstance(item, str):
            if not is_utf8(item):
                return where or "the value"
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                if isinstance(key, str) and not is_utf8(key):
                    return f"a key of {where}" if where else "a key"
                shown = key.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(key, str) else key
                stack.append((inner, f"{where}[{json.dumps(shown)}]" if where else str(shown)))
        elif isinstance(item, list | tuple):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
    return None


def check_text(value: object, what: str = "the JSON") -> None:
    """Refuse a decoded value holding text that is not valid Unicode, naming where it is."""
    where = unencodable_path(value)
    if where is not None:
        raise JsonInputError(
            f"{what} has text that is not valid Unicode at {where} (a lone surrogate such as \\ud800); "
            "send UTF-8 text only"
        )


def loads(text: str | bytes, what: str = "the JSON") -> object:
    """`json.loads`, refusing duplicate keys, NaN/Infinity and text that is not valid Unicode.

    Raises JsonInputError for those, and ValueError (json.JSONDecodeError, UnicodeDecodeError) or
    RecursionError for text that is not JSON at all, as `json.loads` does.
    """
    value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    check_text(value, what)
    return value


def scrub(text: str) -> str:
    """Text made storable: anything that is not valid Unicode becomes U+FFFD (for reports we write)."""
    return text if is_utf8(text) else _SURROGATE.sub("\ufffd", text)
