"""Safe, bounded YAML for machine definitions, remembering the line of every key and list item.

Why not plain `yaml.safe_load`: machine YAML comes from users (API, editor, files), so reading it
must never build Python objects, must not hang or eat memory on an alias bomb or a 10 000-level
nesting, must refuse duplicate keys (PyYAML silently keeps the last one), must not turn `on`, `off`,
`yes` or `no` into booleans (they are event and state names here), and must keep line numbers so
every error can point at its line.

How: PyYAML's parser (libyaml's when installed, else the pure-Python one) turns the text into
events, and a small reader builds plain data straight from them, checking every limit as it goes
(building from events skips PyYAML's node graph, which was two thirds of the validation time):

- plain scalars follow the YAML 1.2 core schema: only true/false (any case) are booleans; integers
  are decimal, 0o octal or 0x hex; `~`, `null` or nothing is null. YAML 1.1's other surprises are
  off too: no sexagesimal numbers (`8080:80` stays text), no timestamps (dates stay text);
- mapping keys are always text, because every key in a machine is a name (`404:` is the name '404');
- only the core tags (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map) are allowed; any other
  tag, `!!python/...` included, is a problem, never an object;
- `<<` merge keys work: a mapping's own keys win over merged ones, earlier merged mappings win over
  later ones, and merged keys take the place of the `<<` key so document order stays readable;
- an alias (`*name`) shares the anchored value (it is read, never changed); its expanded size and
  depth count against the limits at every use, so an alias bomb stops after 100 000 values;
- mappings become `LineDict` and lists `LineList` (dict and list subclasses) carrying 1-based lines.

`parse` never raises for bad input: every problem comes back as a `YamlProblem`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser does the same, slower
    CParser = None

MAX_BYTES = 256 * 1024  # a large machine is ~30 KiB; more is a mistake or an attack
MAX_DEPTH = 64  # levels of nesting, counted in mappings, lists and values
MAX_ALIASES = 10_000  # uses of *name in one document
MAX_NODES = 100_000  # values built, aliases expanded: stops "billion laughs" early

_CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_CORE + name for name in ("str", "int", "float", "bool", "null"))
SEQ, MAP, MERGE = _CORE + "seq", _CORE + "map", _CORE + "merge"


class LineDict(dict):
    """A YAML mapping that remembers the line it starts on and the line of each of its keys."""

    def __init__(self, line: int | None = None):
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}

    def put(self, key: str, value: Any, line: int) -> None:
        self[key] = value
        self.lines[key] = line


class LineList(list):
    """A YAML list that remembers the line it starts on and the line of each of its items."""

    def __init__(self, line: int | None = None):
        super().__init__()
        self.line = line
        self.lines: list[int] = []

    def add(self, value: Any, line: int) -> None:
        self.append(value)
        self.lines.append(line)


@dataclass(frozen=True)
class YamlProblem:
    path: str  # where in the document ("states.INIT"), "" for the document itself
    line: int | None  # 1-based
    message: str


@dataclass(frozen=True)
class Parsed:
    data: LineDict | None  # the top-level mapping; None when there are problems
    problems: tuple[YamlProblem, ...]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(parent: str, key: str) -> str:
    """`states.INIT`; keys that are not plain names are quoted: `tasks["db.setup"]`."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def item_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def line_of(container: Any, key: str | int) -> int | None:
    """The line of a key (LineDict) or an item (LineList); None when it is not known."""
    if isinstance(container, LineDict):
        return container.lines.get(key)  # type: ignore[arg-type]
    if isinstance(container, LineList) and isinstance(key, int) and 0 <= key < len(container.lines):
        return container.lines[key]
    return None


def to_plain(value: Any) -> Any:
    """Plain dicts and lists, without line bookkeeping: what gets stored and sent to executors."""
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    return value


def parse(text: str | bytes) -> Parsed:
    """Read one YAML document that must be a mapping; bad input gives problems, never an exception."""
    decoded, problem = _decode(text)
    if problem is not None:
        return Parsed(None, (problem,))
    try:
        return _read_document(decoded, _Reader)
    except _Fatal as fatal:
        return Parsed(None, (YamlProblem(fatal.path, fatal.line, fatal.message),))
    except yaml.YAMLError as exc:
        return Parsed(None, (YamlProblem("", _error_line(exc, decoded), _error_message(exc, decoded)),))


# --- text in ------------------------------------------------------------------------------------


def _decode(text: Any) -> tuple[str, YamlProblem | None]:
    if isinstance(text, bytes | bytearray):
        return _decode_bytes(bytes(text))
    if not isinstance(text, str):
        return "", YamlProblem("", None, f"expected YAML text, got {type(text).__name__}")
    if len(text) > MAX_BYTES:
        return "", _too_large(len(text))
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        return "", YamlProblem("", line, "the text contains a character that cannot be written as UTF-8")
    return text, (_too_large(size) if size > MAX_BYTES else None)


def _decode_bytes(data: bytes) -> tuple[str, YamlProblem | None]:
    if len(data) > MAX_BYTES:
        return "", _too_large(len(data))
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        return "", YamlProblem("", line, message)


def _too_large(size: int) -> YamlProblem:
    message = f"the document is {size // 1024} KiB; machines are limited to {MAX_BYTES // 1024} KiB"
    return YamlProblem("", None, message)


# --- text -> data ------------------------------------------------------------------------------


class _Fatal(Exception):
    """A problem that stops reading (a limit was hit); carries where and why."""

    def __init__(self, line: int | None, message: str, path: str = ""):
        super().__init__(message)
        self.line, self.message, self.path = line, message, path


class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema for plain scalars: see the module docstring for why."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in (
    (BOOL, r"(?i:true|false)", "tTfF"),
    (NULL, r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    (INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
    (MERGE, r"<<", "<"),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), list(_first))


def _to_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _to_int(text: str) -> int:
    try:
        return int(text, 10)  # "010" is ten, as in YAML 1.2
    except ValueError:
        return int(text, 0)  # 0x1f, 0o17 and their signed forms


def _to_float(text: str) -> float:
    special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
    return float(special.get(text.lower(), text))


_SCALARS = {STR: str, NULL: lambda text: None, BOOL: _to_bool, INT: _to_int, FLOAT: _to_float}
_ALLOWED_TAGS = "!!str, !!int, !!float, !!bool, !!null, !!seq, !!map"

_Trail = tuple | None  # (parent trail, key or index): turned into a path only when there is a problem


def _format_trail(trail: _Trail) -> str:
    steps = []
    while trail is not None:
        trail, step = trail
        steps.append(step)
    path = ""
    for step in reversed(steps):
        path = item_path(path, step) if isinstance(step, int) else key_path(path, step)
    return path


def _line(event: Any) -> int:
    return event.start_mark.line + 1


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


@dataclass(frozen=True)
class _Anchor:
    value: Any
    size: int  # values built for it, aliases inside counted at their size
    height: int  # levels of nesting, 1 for a scalar
    line: int  # where the anchor is defined


class _ReaderMixin:
    """Builds LineDict / LineList / scalars from parser events, collecting every problem found.

    Mixed into a parser class (libyaml's or PyYAML's) with `_CoreResolver`. `count` is the number of
    values the document expands to and `deepest` the deepest level reached; both include what
    aliases expand to, which is how the limits hold against alias bombs.
    """

    def start_reading(self) -> None:
        self.problems: list[YamlProblem] = []
        self.anchors: dict[str, _Anchor] = {}
        self.building: dict[str, int] = {}  # anchors being read (an alias to one loops) -> line
        self.count = 0
        self.alias_uses = 0
        self.deepest = 0

    def problem(self, trail: _Trail, line: int | None, message: str) -> None:
        self.problems.append(YamlProblem(_format_trail(trail), line, message))

    def document(self) -> tuple[Any, int | None]:
        """The one document's value and its first line; (None, None) for an empty stream."""
        self.get_event()  # stream start
        if self.check_event(StreamEndEvent):
            return None, None
        self.get_event()  # document start
        line = _line(self.peek_event())
        value = self.value(None, 1)
        self.get_event()  # document end
        if not self.check_event(StreamEndEvent):
            raise _Fatal(_line(self.peek_event()), "expected a single document, but found another one (---)")
        return value, line

    def value(self, trail: _Trail, depth: int) -> Any:
        event = self.get_event()
        if type(event) is AliasEvent:
            return self.alias(event, trail, depth)
        if depth > MAX_DEPTH:
            raise _Fatal(_line(event), _too_deep(), _format_trail(trail))
        self.count += 1
        if self.count > MAX_NODES:
            raise _Fatal(_line(event), _too_many_values(), _format_trail(trail))
        self.deepest = max(self.deepest, depth)
        if event.anchor is not None:
            return self.anchored(event, trail, depth)
        return self.content(event, trail, depth)

    def content(self, event: Any, trail: _Trail, depth: int) -> Any:
        if type(event) is ScalarEvent:
            return self.scalar(event, trail)
        if type(event) is SequenceStartEvent:
            return self.sequence(event, trail, depth)
        return self.mapping(event, trail, depth)

    def anchored(self, event: Any, trail: _Trail, depth: int) -> Any:
        name = event.anchor
        first = self.anchors[name].line if name in self.anchors else self.building.get(name)
        if first is not None:
            message = f"the anchor &{name} is defined twice (first at line {first}); anchor names must be unique"
            self.problem(trail, _line(event), message)
        count_before, deepest_outside = self.count - 1, self.deepest
        self.building[name] = _line(event)
        self.deepest = depth
        value = self.content(event, trail, depth)
        del self.building[name]
        self.anchors[name] = _Anchor(value, self.count - count_before, self.deepest - depth + 1, _line(event))
        self.deepest = max(self.deepest, deepest_outside)
        return value

    def alias(self, event: Any, trail: _Trail, depth: int) -> Any:
        self.alias_uses += 1
        if self.alias_uses > MAX_ALIASES:
            raise _Fatal(_line(event), f"more than {MAX_ALIASES} aliases (*name) in one document")
        if event.anchor in self.building:
            raise _Fatal(_line(event), "an alias refers to a mapping or list that contains it", _format_trail(trail))
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            self.problem(trail, _line(event), f"the alias *{event.anchor} has no anchor &{event.anchor} before it")
            return None
        self.count += anchor.size
        if self.count > MAX_NODES:
            raise _Fatal(_line(event), _too_many_values(), _format_trail(trail))
        if depth + anchor.height - 1 > MAX_DEPTH:
            raise _Fatal(_line(event), _too_deep(), _format_trail(trail))
        self.deepest = max(self.deepest, depth + anchor.height - 1)
        return anchor.value

    def bad_tag(self, event: Any, trail: _Trail) -> None:
        message = f"the tag {_show_tag(event.tag)} is not allowed; allowed tags: {_ALLOWED_TAGS}"
        self.problem(trail, _line(event), message)

    def scalar(self, event: Any, trail: _Trail) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(ScalarNode, event.value, event.implicit)
        make = _SCALARS.get(tag)
        if make is None:
            self.bad_tag(event, trail)
            return None
        try:
            return make(event.value)
        except ValueError:
            self.problem(trail, _line(event), f"{quote(event.value)} is not a valid {_show_tag(tag)} value")
            return None

    def sequence(self, event: Any, trail: _Trail, depth: int) -> LineList | None:
        result = LineList(_line(event))
        while not self.check_event(SequenceEndEvent):
            line = _line(self.peek_event())
            result.add(self.value((trail, len(result)), depth + 1), line)
        self.get_event()
        if event.tag not in (None, "!", SEQ):
            self.bad_tag(event, trail)
            return None
        return result

    def mapping(self, event: Any, trail: _Trail, depth: int) -> LineDict | None:
        entries: list[tuple[str, Any, int, bool]] = []  # key, value, line, is a << merge
        seen: dict[str, int] = {}
        while not self.check_event(MappingEndEvent):
            line = _line(self.peek_event())
            key, merge = self.key(trail, depth)
            value = self.value((trail, key if key is not None else "?"), depth + 1)
            if key is not None and not self.duplicate(key, line, seen, trail):
                entries.append((key, value, line, merge))
        self.get_event()
        if event.tag not in (None, "!", MAP):
            self.bad_tag(event, trail)
            return None
        return self.assemble(entries, _line(event), trail)

    def key(self, trail: _Trail, depth: int) -> tuple[str | None, bool]:
        """A key's text and whether it is a `<<` merge; keys are names, so they stay text."""
        event = self.peek_event()
        plain_scalar = type(event) is ScalarEvent and event.anchor is None
        if not plain_scalar:  # anchored, aliased or a collection: read it like any value
            value = self.value(trail, depth + 1)
            if isinstance(value, str):
                return value, False
            self.problem(trail, _line(event), "a mapping key must be a plain name, not a list or a mapping")
            return None, False
        self.get_event()
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(ScalarNode, event.value, event.implicit)
        if tag not in _SCALARS and tag != MERGE:
            self.bad_tag(event, trail)
            return None, False
        return event.value, tag == MERGE

    def duplicate(self, key: str, line: int, seen: dict[str, int], trail: _Trail) -> bool:
        if key not in seen:
            seen[key] = line
            return False
        message = f"duplicate key {quote(key)} (first at line {seen[key]}); a key may appear once per mapping"
        self.problem((trail, key), line, message)
        return True

    def assemble(self, entries: list, line: int, trail: _Trail) -> LineDict:
        """Own keys win over merged ones wherever `<<` stands; merged keys go where `<<` stands."""
        result = LineDict(line)
        own = {key for key, _, _, merge in entries if not merge}
        for key, value, key_line, merge in entries:
            if merge:
                self.merge(result, value, own, (trail, key), key_line)
            else:
                result.put(key, value, key_line)
        return result

    def merge(self, result: LineDict, value: Any, own: set[str], trail: tuple, line: int) -> None:
        """`<<: *a` or `<<: [*a, *b]`: copy the keys the mapping does not set, first source first."""
        sources = value if isinstance(value, LineList) else [value]
        if not all(isinstance(source, LineDict) for source in sources):
            message = "'<<' merges mappings: use '<<: *name' (an anchored mapping) or a list of them"
            self.problem(trail, line, message)
            return
        for source in sources:
            for key, item in source.items():
                if key not in own and key not in result:
                    result.put(key, item, source.lines[key])


class _PythonParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python event parser, used when libyaml is not installed."""

    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _reader_class(event_parser: type) -> type:
    class Reader(_ReaderMixin, event_parser, _CoreResolver):
        def __init__(self, stream: str):
            event_parser.__init__(self, stream)
            _CoreResolver.__init__(self)
            self.start_reading()

    return Reader


_PythonReader = _reader_class(_PythonParser)
_Reader = _reader_class(CParser) if CParser is not None else _PythonReader


def _read_document(text: str, reader_class: type) -> Parsed:
    reader = reader_class(text)
    try:
        data, line = reader.document()
    finally:
        reader.dispose()
    if reader.problems:
        return Parsed(None, tuple(reader.problems))
    if isinstance(data, LineDict):
        return Parsed(data, ())
    if data is None:
        return Parsed(None, (YamlProblem("", None, "the document is empty; expected a mapping of keys"),))
    kind = "a list" if isinstance(data, LineList) else "a single value"
    return Parsed(None, (YamlProblem("", line, f"the top level must be a mapping (key: value lines); found {kind}"),))


def quote(text: str) -> str:
    """'text' in quotes for messages, cut short when long."""
    return "'" + (text if len(text) <= 60 else text[:57] + "...") + "'"


def _too_deep() -> str:
    return f"the document is nested more than {MAX_DEPTH} levels deep"


def _too_many_values() -> str:
    return f"the document expands to more than {MAX_NODES} values (too many aliases?)"


def _error_line(exc: yaml.YAMLError, text: str) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return mark.line + 1
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1
    return None


def _at_mark(exc: yaml.YAMLError, text: str) -> str:
    """The character the parser stopped at ("" when unknown)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column] if mark.column < len(line) else ""


def _error_message(exc: yaml.YAMLError, text: str = "") -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        return f"this is not valid YAML: unacceptable character {shown} ({exc.reason})"
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    detail = ", ".join(str(part) for part in parts if part) or str(exc).splitlines()[0]
    if _at_mark(exc, text) == "\t":
        return "this is not valid YAML: a tab character is used for indentation; YAML indents with spaces only"
    return f"this is not valid YAML: {detail}"
