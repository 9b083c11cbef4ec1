"""The limits on what a request's schemas may cost (issue 22, point 2): pure logic, no server.
The end-to-end refusals on every face are in test_schema_limits_api.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hearth.core.errors import SchemaTooCostly
from hearth.services import schema_limits as sl
from hearth.services.schema_limits import check_request, json_size


def _chat(schema: Any) -> dict[str, Any]:
    return {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    }


def _refused(body: dict[str, Any]) -> SchemaTooCostly:
    with pytest.raises(SchemaTooCostly) as caught:
        check_request(body)
    assert caught.value.status == 400 and caught.value.code == "schema_too_large"
    assert 'README "Limits on schemas"' in caught.value.message
    return caught.value


def _openai_sized() -> dict[str, Any]:
    """A schema at OpenAI's own limits: 10 levels of objects, 1,000 enum values, many
    properties, `$defs` with recursion, a few anyOf."""
    leaf: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    for level in range(9):
        leaf = {"type": "object", "properties": {f"l{level}": leaf, "s": {"type": "string"}}}
    props = {f"p{i}": {"type": "string", "description": "x" * 40} for i in range(1_500)}
    props["colour"] = {"enum": [f"colour-{i}" for i in range(1_000)]}
    props["deep"] = leaf
    props["either"] = {"anyOf": [{"type": "string"}, {"type": "number"}, {"$ref": "#/$defs/node"}]}
    node = {"type": "object", "properties": {"children": {"type": "array",
            "items": {"$ref": "#/$defs/node"}}, "name": {"type": "string"}}}  # fmt: skip
    # strict mode, as OpenAI requires: every property required
    return {"type": "object", "properties": props, "required": list(props), "$defs": {"node": node}}


def test_realistic_schemas_pass_on_every_field() -> None:
    schema = _openai_sized()
    check_request(_chat(schema))
    check_request({"json_schema": schema, "grammar": 'root ::= "yes" | "no"'})
    check_request({"response_format": {"type": "json_object", "schema": schema}})
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object",
              "properties": {"a": {"type": "string"}}}}} for i in range(128)]  # fmt: skip
    check_request({"tools": tools, "messages": []})
    check_request({"messages": [{"role": "user", "content": "no schema at all"}]})


def test_a_huge_enum_is_refused_naming_the_limit() -> None:
    big = {"type": "object", "properties": {"v": {"enum": [f"v{i}" for i in range(100_000)]}}}
    error = _refused(_chat(big))
    assert "2,000 in all" in error.message and error.param == "response_format.json_schema.schema"
    assert error.message.startswith("The output schema is too costly")


def test_enum_totals_count_across_every_schema_of_a_request() -> None:
    half = {"enum": [f"v{i}" for i in range(1_200)]}
    check_request(_chat(half))
    tool = {"type": "function", "function": {"name": "pick", "parameters": half}}
    error = _refused({**_chat(half), "tools": [tool]})
    assert "The parameter schema of tool 'pick'" in error.message
    assert error.param == "tools[0].function.parameters"
    long_values = {"enum": ["x" * 1_000 for _ in range(200)]}
    assert "characters" in _refused({"json_schema": long_values}).message


def test_size_depth_nodes_and_branches() -> None:
    assert "KiB" in _refused(_chat({"description": "x" * (600 * 1024)})).message
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    assert "32 levels" in _refused(_chat(deep)).message
    names = [f"p{i}" for i in range(12_000)]
    many = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "required": names,
    }
    assert "10,000 schemas" in _refused(_chat(many)).message
    loose = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(600)}}
    assert "600 optional properties" in _refused(_chat(loose)).message
    check_request(_chat({**loose, "required": [f"p{i}" for i in range(100, 600)]}))
    wide = {"anyOf": [{"const": i} for i in range(200)]}
    assert "200 branches" in _refused(_chat(wide)).message


def test_nested_anyof_multiplies_the_ways_even_through_refs() -> None:
    defs: dict[str, Any] = {"a0": {"type": "string"}}
    for i in range(1, 13):  # 2**12 ways in a ~1 KB schema: each level names the one below twice
        defs[f"a{i}"] = {"anyOf": [{"$ref": f"#/$defs/a{i - 1}"}, {"$ref": f"#/$defs/a{i - 1}"}]}
    schema = {"$ref": "#/$defs/a12", "$defs": defs}
    assert "2,048 ways" in _refused(_chat(schema)).message
    check_request(_chat({"$ref": "#/$defs/a10", "$defs": defs}))  # 1,024 ways: fine
    enum = {"enum": list(range(700))}  # counted once, but each branch is 700 ways
    enums = {"anyOf": [{"$ref": "#/$defs/e"}] * 3, "$defs": {"e": enum}}
    assert "ways" in _refused(_chat(enums)).message


def test_refs_are_followed_once_and_loops_of_refs_refused() -> None:
    # one big definition named 50 times costs once, as llama.cpp compiles it
    names = [f"p{i}" for i in range(900)]
    big = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "required": names,
    }
    props = {f"r{i}": {"$ref": "#/$defs/big"} for i in range(50)}
    check_request(_chat({"type": "object", "properties": props, "$defs": {"big": big}}))
    recursive = {"type": "object", "properties": {"next": {"$ref": "#"}}}
    check_request(_chat(recursive))
    loop = {"allOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#/$defs/b"},
            "b": {"$ref": "#/$defs/a"}}}  # fmt: skip
    assert "leads back to itself" in _refused(_chat(loop)).message
    check_request(_chat({"$ref": "https://example.com/schema.json"}))  # not followed


def test_grammar_size_and_junk_that_is_the_engines_to_refuse() -> None:
    error = _refused({"grammar": "root ::= " + '"a" | ' * 50_000 + '"b"'})
    assert error.param == "grammar" and "characters" in error.message
    for junk in ({"response_format": "json"}, {"tools": "x"}, {"tools": [1, {"function": 2}]},
                 _chat([1, 2]), _chat(True), {"json_schema": {"enum": "abc"}}):  # fmt: skip
        check_request(junk)


def test_json_size_is_the_compact_size_and_stops_past_the_limit() -> None:
    value = {"a": ["bc", {"d": "e" * 100}], "f": 1}
    assert abs(json_size(value, 10**9) - len(json.dumps(value, separators=(",", ":")))) < 30
    huge = ["x" * 10] * 1_000_000
    assert sl.MAX_SCHEMA_BYTES < json_size(huge, sl.MAX_SCHEMA_BYTES) < sl.MAX_SCHEMA_BYTES * 2
