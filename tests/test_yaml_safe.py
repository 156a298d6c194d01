"""The safe, bounded, line-tracking YAML reader behind the machine validator (no Django needed)."""

from __future__ import annotations

import textwrap
import time

import pytest

from machines_app.spec import reader as yaml_safe
from machines_app.spec.reader import MAX_BYTES, LineDict, LineList, key_path, parse, to_plain


def read(text: str):
    parsed = parse(textwrap.dedent(text))
    assert parsed.problems == (), [p.message for p in parsed.problems]
    return parsed.data


def only_problem(text: str | bytes):
    parsed = parse(textwrap.dedent(text) if isinstance(text, str) else text)
    assert parsed.data is None
    assert len(parsed.problems) == 1, parsed.problems
    return parsed.problems[0]


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# --- scalars: YAML 1.1 surprises switched off ---------------------------------------------------


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "y", "n", "ON", "Off", "YES", "No", "Y", "N"])
def test_it_keeps_yes_no_on_off_as_text(word):
    data = read(f"{word}: {word}\nlist: [{word}]\n")
    assert data == {word: word, "list": [word]}


@pytest.mark.parametrize(
    "word,value", [("true", True), ("True", True), ("TRUE", True), ("tRuE", True), ("false", False), ("FALSE", False)]
)
def test_it_reads_only_true_and_false_as_booleans(word, value):
    assert read(f"flag: {word}\n")["flag"] is value


def test_it_reads_numbers_and_nulls_like_yaml_1_2():
    data = read(
        """\
        decimal: 010
        hex: 0x1f
        octal: 0o17
        negative: -3
        fraction: 1.5
        exponent: 1e3
        infinite: .inf
        nothing: ~
        empty:
        quoted: "12"
        """
    )
    assert data == {
        "decimal": 10,
        "hex": 31,
        "octal": 15,
        "negative": -3,
        "fraction": 1.5,
        "exponent": 1000.0,
        "infinite": float("inf"),
        "nothing": None,
        "empty": None,
        "quoted": "12",
    }


def test_it_keeps_ports_dates_and_equals_signs_as_text():
    data = read("port: 8080:80\nday: 2024-05-01\nsign: =\nunderscored: 1_000\n")
    assert data == {"port": "8080:80", "day": "2024-05-01", "sign": "=", "underscored": "1_000"}


def test_it_reads_mapping_keys_as_text():
    data = read("404: a\ntrue: b\n~: c\n1.5: d\n")
    assert list(data) == ["404", "true", "~", "1.5"]


def test_it_accepts_core_tags():
    assert read("a: !!str 1\nb: !!int '7'\nc: !!float 2\nd: !!bool TRUE\n") == {"a": "1", "b": 7, "c": 2.0, "d": True}


def test_it_reports_a_core_tag_with_a_bad_value():
    problem = only_problem("a: !!int seven\n")
    assert (problem.path, problem.line) == ("a", 1)
    assert "'seven' is not a valid !!int value" in problem.message


# --- tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['echo pwned']\n",
        "a: !!python/name:os.system\n",
        "a: !!python/object:collections.OrderedDict {}\n",
        "a: !custom value\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!set {x, y}\n",
        "a: !!timestamp 2024-01-01\n",
    ],
)
def test_it_reports_non_core_tags_instead_of_building_objects(text):
    problem = only_problem(text)
    assert problem.path == "a"
    assert problem.line == 1
    assert "is not allowed; allowed tags: !!str, !!int" in problem.message


def test_it_collects_every_bad_tag():
    parsed = parse("a: !!python/tuple [1]\nb:\n  c: !!python/bytes x\n")
    assert [(p.path, p.line) for p in parsed.problems] == [("a", 1), ("b.c", 3)]
    assert "!!python/tuple" in parsed.problems[0].message


def test_it_reports_a_tagged_key():
    problem = only_problem("? !!python/name:os.system\n: 1\n")
    assert "!!python/name:os.system is not allowed" in problem.message


def test_it_reports_a_list_used_as_a_key():
    problem = only_problem("? [a, b]\n: 1\n")
    assert problem.line == 1
    assert "a mapping key must be a plain name" in problem.message


# --- lines --------------------------------------------------------------------------------------


def test_it_keeps_the_line_of_every_key_and_item():
    data = read(
        """\
        top: 1

        nested:
          inner: x
          items:
            - first
            -
              second: 2
        flow: {a: 1, b: [x, y]}
        """
    )
    assert isinstance(data, LineDict)
    assert data.lines == {"top": 1, "nested": 3, "flow": 9}
    assert data["nested"].lines == {"inner": 4, "items": 5}
    items = data["nested"]["items"]
    assert isinstance(items, LineList)
    assert items.lines == [6, 8]
    assert items[1].lines == {"second": 8}
    assert data["flow"]["b"].lines == [9, 9]


def test_it_plain_copies_without_line_bookkeeping():
    plain = to_plain(read("a: {b: [1, {c: 2}]}\n"))
    assert plain == {"a": {"b": [1, {"c": 2}]}}
    assert type(plain["a"]) is dict
    assert type(plain["a"]["b"]) is list
    assert type(plain["a"]["b"][1]) is dict


@pytest.mark.parametrize(
    "parent,key,path",
    [("", "states", "states"), ("states", "INIT", "states.INIT"), ("tasks", "db.setup", 'tasks["db.setup"]')],
)
def test_it_quotes_keys_that_are_not_plain_names_in_paths(parent, key, path):
    assert key_path(parent, key) == path


# --- duplicate keys -----------------------------------------------------------------------------


def test_it_rejects_a_duplicate_key_with_its_line():
    problem = only_problem(
        """\
        states:
          INIT: {}
          RUN: {}
          INIT: {terminal: true}
        """
    )
    assert (problem.path, problem.line) == ("states.INIT", 4)
    assert "duplicate key 'INIT' (first at line 2)" in problem.message


def test_it_rejects_duplicate_keys_in_flow_mappings_and_reports_them_all():
    parsed = parse("a: {x: 1, x: 2}\nb: 1\nb: 2\n")
    assert [(p.path, p.line) for p in parsed.problems] == [("a.x", 1), ("b", 3)]


def test_it_treats_quoted_and_plain_keys_as_the_same_key():
    problem = only_problem("name: a\n'name': b\n")
    assert problem.line == 2


# --- merge keys ---------------------------------------------------------------------------------


def test_it_merges_an_anchored_mapping_and_keeps_own_keys_first_in_precedence():
    data = read(
        """\
        x-base: &base
          A: from-base
          B: from-base
        target:
          A: own
          <<: *base
          C: own
        """
    )
    assert data["target"] == {"A": "own", "B": "from-base", "C": "own"}
    assert list(data["target"]) == ["A", "B", "C"]  # merged keys take the place of <<
    assert data["target"].lines == {"A": 5, "B": 3, "C": 7}  # a merged key keeps its own line


def test_it_merges_a_list_of_mappings_with_earlier_ones_winning():
    data = read(
        """\
        one: &one {K: 1, L: 1}
        two: &two {K: 2, M: 2}
        both:
          <<: [*one, *two]
        """
    )
    assert data["both"] == {"K": 1, "L": 1, "M": 2}


def test_it_shares_the_anchored_value_with_each_alias():
    data = read("a: &a {k: [1]}\nb: *a\nc: [*a]\n")
    assert data["b"] is data["a"] and data["c"][0] is data["a"]
    assert data["c"].lines == [3]  # an aliased list item is on the line of the alias


def test_it_reports_a_merge_of_something_that_is_not_a_mapping():
    problem = only_problem("x: &x [1, 2]\ny:\n  <<: *x\n")
    assert problem.path == 'y["<<"]'
    assert problem.line == 3
    assert "'<<' merges mappings" in problem.message


def test_it_rejects_two_merge_keys_in_one_mapping():
    problem = only_problem("a: &a {k: 1}\nb:\n  <<: *a\n  <<: *a\n")
    assert problem.line == 4
    assert "duplicate key '<<'" in problem.message


# --- limits -------------------------------------------------------------------------------------


def test_it_rejects_an_alias_bomb_quickly():
    started = time.perf_counter()
    problem = only_problem(billion_laughs())
    assert time.perf_counter() - started < 0.5
    assert "expands to more than 100000 values" in problem.message


def test_it_rejects_too_many_aliases():
    text = "a: &a x\nlist: [" + ", ".join(["*a"] * 10_001) + "]\n"
    problem = only_problem(text)
    assert problem.line == 2
    assert "more than 10000 aliases" in problem.message


def test_it_rejects_an_alias_to_its_own_parent():
    problem = only_problem("a: &a\n  b: *a\n")
    assert "refers to a mapping or list that contains it" in problem.message


@pytest.mark.parametrize("opening,closing", [("[", "]"), ("{a: ", "}")])
def test_it_rejects_deep_nesting_without_recursing_through_it(opening, closing):
    started = time.perf_counter()
    problem = only_problem("x: " + opening * 50_000 + "1" + closing * 50_000 + "\n")
    assert time.perf_counter() - started < 0.5
    assert problem.line == 1
    assert "nest" in problem.message  # ours at level 65, or libyaml's own flow-level limit


def test_it_accepts_nesting_within_the_limit():
    assert parse("x: " + "[" * 60 + "1" + "]" * 60 + "\n").problems == ()


def test_it_rejects_nesting_built_from_aliases():
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 80)]
    problem = only_problem("\n".join(lines) + "\n")
    assert "nested more than 64 levels deep" in problem.message


@pytest.mark.parametrize("as_bytes", [False, True])
def test_it_rejects_input_over_256_kib(as_bytes):
    text = "a: " + "x" * MAX_BYTES + "\n"
    problem = only_problem(text.encode() if as_bytes else text)
    assert problem.line is None
    assert "machines are limited to 256 KiB" in problem.message


def test_it_counts_the_size_in_utf8_bytes():
    text = "a: " + "é" * (MAX_BYTES // 2 + 10) + "\n"  # fewer characters than the limit, more bytes
    assert "limited to 256 KiB" in only_problem(text).message


# --- text, syntax, shape ------------------------------------------------------------------------


def test_it_decodes_utf8_bytes():
    assert parse("name: café\n".encode()).data == {"name": "café"}


def test_it_skips_a_byte_order_mark():
    assert parse(b"\xef\xbb\xbfa: 1\n").data == {"a": 1}


def test_it_reports_bytes_that_are_not_utf8_with_the_line():
    problem = only_problem(b"a: 1\nb: \xff\xfe\n")
    assert problem.line == 2
    assert "not valid UTF-8" in problem.message


def test_it_reports_a_lone_surrogate_in_text():
    assert "cannot be written as UTF-8" in only_problem("a: \ud800\n").message


def test_it_reports_a_control_character():
    problem = only_problem("a: 1\nb: \x00\n")
    assert problem.line == 2
    assert "not valid YAML" in problem.message


def test_it_reports_a_syntax_error_with_its_line():
    problem = only_problem(
        """\
        version: 1
        states:
          INIT: on: [NEXT]
        tasks: {}
        """
    )
    assert problem.line == 3
    assert problem.message.startswith("this is not valid YAML: ")
    assert "mapping values are not allowed" in problem.message


def test_it_reports_a_bad_indentation_with_its_line():
    problem = only_problem("a:\n  b: 1\n c: 2\n")
    assert problem.line == 3


@pytest.mark.parametrize(
    "text,found",
    [("- a\n- b\n", "found a list"), ("just text\n", "found a single value"), ("42\n", "found a single value")],
)
def test_it_requires_a_mapping_at_the_top(text, found):
    problem = only_problem(text)
    assert "the top level must be a mapping" in problem.message
    assert found in problem.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_it_reports_an_empty_document(text):
    assert "the document is empty" in only_problem(text).message


def test_it_reads_one_document_only():
    problem = only_problem("a: 1\n---\nb: 2\n")
    assert problem.line == 2
    assert "expected a single document" in problem.message


def test_it_reports_an_alias_without_an_anchor():
    problem = only_problem("a: 1\nb: [*nowhere]\n")
    assert (problem.path, problem.line) == ("b[0]", 2)
    assert "the alias *nowhere has no anchor &nowhere before it" in problem.message


def test_it_rejects_an_anchor_defined_twice():
    problem = only_problem("a: &x 1\nb: &x 2\n")
    assert (problem.path, problem.line) == ("b", 2)
    assert "the anchor &x is defined twice (first at line 1)" in problem.message


def test_it_reads_anchored_and_aliased_keys_as_text():
    assert read("&k name: 1\nother: {*k : 2}\n") == {"name": 1, "other": {"name": 2}}


@pytest.mark.parametrize("value", [None, 42, ["a: 1"]])
def test_it_reports_input_that_is_not_text(value):
    assert "expected YAML text" in only_problem(value).message


def test_it_gives_the_same_result_with_the_pure_python_parser():
    text = open("tests/machines/anchors.yml", encoding="utf-8").read()
    libyaml = yaml_safe._read_document(text, yaml_safe._Reader)
    python = yaml_safe._read_document(text, yaml_safe._PythonReader)
    assert python == libyaml
    assert python.data["states"]["ON"]["on"].lines == libyaml.data["states"]["ON"]["on"].lines


def test_it_says_plainly_that_tabs_cannot_indent_yaml():
    from machines_app import spec

    problem = spec.validate("version: 1\nstates:\n\tINIT: {}\n").errors[0]
    assert problem.line == 3 and "YAML indents with spaces only" in problem.message
