"""What a JSON schema (or grammar) may cost before it reaches an engine.

llama.cpp compiles a request's schema into a grammar and checks every candidate token against
it, on the engine's one thread for all its slots. Some schemas cost minutes: an enum of 100,000
strings (a 12 MB body) held a model for 212 s and grew the engine by 680 MB; an `anyOf` nested
inside `anyOf` multiplies the ways one value can be read, and with it the work per token. So
every schema a request carries is measured here, in one pass, before anything is sent, and a
schema over a limit is a 400 that names the limit and how to get under it.

The limits sit above OpenAI's own structured-output limits (5,000 properties, 10 levels of
nesting, 1,000 enum values, 120,000 characters of names and values), so a schema written for
OpenAI passes. Schemas are found wherever a request may carry one to the engine: OpenAI's
`response_format` (`json_schema`, or `json_object` with a `schema`), llama.cpp's own
`json_schema` and `grammar` fields, and the `parameters` of every function tool (a forced call
compiles them, see `toolcalls.py`). The other faces translate into these fields first (Ollama's
`format`, the Responses API's `text.format` and tools, Anthropic's `input_schema`), so one check
covers them all.

A `$ref` is followed once per target, as llama.cpp compiles it (a rule per target); a chain of
`$ref`s that leads back to itself with no schema between is refused (the compiler would recurse
without end).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import SchemaTooCostly

#: Compact JSON bytes of one schema (descriptions included).
MAX_SCHEMA_BYTES = 512 * 1024
#: Schemas within the request's schemas, each `$ref` target counted once.
MAX_NODES = 10_000
#: Schemas nested within schemas (an object's property is one level down, so are `items`,
#: an `anyOf` branch, a `$ref`'s target).
MAX_DEPTH = 32
#: `enum` values (and `const`s) in all the request's schemas.
MAX_ENUM_VALUES = 2_000
#: Characters of those values, in all.
MAX_ENUM_CHARS = 150_000
#: Properties of one object that are not `required`: llama.cpp's compiler spends time that
#: grows with the cube of their number (3,000 of them: 90 s, then a grammar it cannot parse).
MAX_OPTIONAL = 500
#: Branches of one `anyOf`, `oneOf` or `allOf`.
MAX_BRANCHES = 128
#: Ways one value may be read: an `enum`'s values, an `anyOf`'s branches, multiplied through
#: nesting (an `anyOf` of 2 inside an `anyOf` of 2 is 4 ways).
MAX_ALTERNATIVES = 2_000
#: Characters of a GBNF `grammar`.
MAX_GRAMMAR_CHARS = 256 * 1024

DOCS = 'README "Limits on schemas"'
_BRANCHING = ("anyOf", "oneOf", "allOf")
_ONE = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems",
)  # fmt: skip
_MANY = ("prefixItems",)
_NAMED = ("properties", "patternProperties", "dependentSchemas")


@dataclass
class _Budget:
    """What the request's schemas have used so far (shared by all of them)."""

    nodes: int = 0
    enum_values: int = 0
    enum_chars: int = 0


@dataclass
class _Walk:
    """One schema's walk: its `$ref` targets and what each one's alternatives came to."""

    root: Mapping[str, Any]
    where: str
    param: str
    budget: _Budget
    ways: dict[str, int] = field(default_factory=dict)
    open_refs: set[str] = field(default_factory=set)

    def refuse(self, what: str, fix: str) -> SchemaTooCostly:
        return SchemaTooCostly(
            f"{self.where} is too costly to compile: {what}. {fix} (Hearth's limits on "
            f"schemas: {DOCS}.)",
            param=self.param,
        )

    def visit(self, node: Any, depth: int) -> int:
        """Count `node` and what it holds; return the ways one value may be read there."""
        if not isinstance(node, dict):
            return 1  # `true`/`false` schemas, or junk the engine will refuse itself
        self.budget.nodes += 1
        if self.budget.nodes > MAX_NODES:
            raise self.refuse(
                f"its schemas hold more than {MAX_NODES:,} schemas (properties, items, "
                "branches...)",
                "Split the task into smaller requests, or describe less of the structure.",
            )
        if depth > MAX_DEPTH:
            raise self.refuse(
                f"schemas nest more than {MAX_DEPTH} levels deep",
                "Flatten the structure (fewer objects within objects).",
            )
        ways = self._values(node)
        ref = node.get("$ref")
        if isinstance(ref, str):
            ways = max(ways, self._follow(ref, depth))
        self._check_optional(node)
        for key in _BRANCHING:
            branches = node.get(key)
            if isinstance(branches, list):
                ways = max(ways, self._branches(key, branches, depth))
        for _key, child in self._children(node):
            self._limit_ways(self.visit(child, depth + 1))
        self._limit_ways(ways)
        return ways

    def _check_optional(self, node: Mapping[str, Any]) -> None:
        props = node.get("properties")
        if not isinstance(props, dict) or len(props) <= MAX_OPTIONAL:
            return
        required = node.get("required")
        needed = (
            {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        )
        optional = sum(1 for name in props if name not in needed)
        if optional > MAX_OPTIONAL:
            raise self.refuse(
                f'one object has {optional:,} optional properties (not in its "required"), '
                f"over the limit of {MAX_OPTIONAL}",
                'List the properties the answer must have in "required", or group the '
                "optional ones into nested objects.",
            )

    def _children(self, node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        for key in _ONE:
            if isinstance(node.get(key), dict):
                yield key, node[key]
        for key in _MANY:
            if isinstance(node.get(key), list):
                yield from ((key, child) for child in node[key])
        if isinstance(node.get("items"), list):  # draft-07 tuples
            yield from (("items", child) for child in node["items"])
        for key in _NAMED:
            if isinstance(node.get(key), dict):
                yield from ((f"{key}.{name}", child) for name, child in node[key].items())

    def _branches(self, key: str, branches: list[Any], depth: int) -> int:
        if len(branches) > MAX_BRANCHES:
            raise self.refuse(
                f"one {key} has {len(branches):,} branches, over the limit of {MAX_BRANCHES}",
                "Merge branches (an enum of values instead of one branch per value), or "
                "split the choice into smaller ones.",
            )
        ways = [self.visit(branch, depth + 1) for branch in branches]
        return sum(ways) if key != "allOf" else max(ways, default=1)

    def _values(self, node: Mapping[str, Any]) -> int:
        """Count `enum` and `const` values against the request's totals."""
        values = node.get("enum")
        values = values if isinstance(values, list) else []
        if "const" in node:
            values = [*values, node["const"]]
        if not values:
            return 1
        self.budget.enum_values += len(values)
        if self.budget.enum_values > MAX_ENUM_VALUES:
            raise self.refuse(
                f"its enums hold {self.budget.enum_values:,} values or more, over the limit "
                f"of {MAX_ENUM_VALUES:,} in all",
                "Keep the list of allowed values short (let the model write a plain string "
                "and check it yourself), or split the task.",
            )
        self.budget.enum_chars += sum(len(v) if isinstance(v, str) else 8 for v in values)
        if self.budget.enum_chars > MAX_ENUM_CHARS:
            raise self.refuse(
                f"its enum values hold over {MAX_ENUM_CHARS:,} characters in all",
                "Use fewer or shorter values.",
            )
        return len(values)

    def _follow(self, ref: str, depth: int) -> int:
        """Visit a `$ref`'s target once; later references reuse what it came to."""
        if ref in self.ways:
            return self.ways[ref]
        if ref in self.open_refs:
            return 1  # recursion through a schema: one grammar rule that names itself
        target = self._resolve(ref)
        if target is None:
            return 1  # not local, or dangling: the engine says so
        self.open_refs.add(ref)
        try:
            self.ways[ref] = ways = self.visit(target, depth + 1)
        finally:
            self.open_refs.discard(ref)
        return ways

    def _resolve(self, ref: str) -> Any:
        """The local target of `#/...`, refusing a chain of `$ref`s that loops on itself."""
        seen = [ref]
        target = _pointer(self.root, ref)
        while isinstance(target, dict) and isinstance(target.get("$ref"), str):
            nxt = target["$ref"]
            if nxt in seen:
                raise self.refuse(
                    f"the $ref {ref!r} leads back to itself through $refs alone",
                    "Point each $ref at a schema that describes a value.",
                )
            seen.append(nxt)
            target = _pointer(self.root, nxt)
        return _pointer(self.root, ref)

    def _limit_ways(self, ways: int) -> None:
        if ways > MAX_ALTERNATIVES:
            raise self.refuse(
                f"one value may be read {ways:,} ways or more (enum values and anyOf/oneOf "
                f"branches, multiplied through nesting), over the limit of "
                f"{MAX_ALTERNATIVES:,}",
                "Avoid anyOf within anyOf (and branches that overlap), or shorten the enums.",
            )


def _pointer(root: Any, ref: str) -> Any:
    """The node a local JSON pointer (`#`, `#/$defs/x`) names, or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def json_size(value: Any, limit: int) -> int:
    """The size of `value` as compact JSON, counted until it passes `limit` (then it stops:
    a 30 MB schema costs no more to refuse than a 1 MB one). Strings count their characters."""
    size = 0
    stack = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 3  # quotes and a separator
        elif isinstance(item, dict):
            size += 2
            for key, child in item.items():
                size += len(str(key)) + 3
                stack.append(child)
        elif isinstance(item, list):
            size += 2
            stack.extend(item)
        else:
            size += 6
    return size


def check_schema(schema: Any, where: str, param: str, budget: _Budget | None = None) -> None:
    """Refuse `schema` (a 400 naming the limit) when it is over a limit. `where` says which
    schema in the caller's words ("The output schema", "The parameter schema of tool 'f'")."""
    walk = _Walk(schema if isinstance(schema, dict) else {}, where, param, budget or _Budget())
    walk.visit(schema, 0)  # first: its refusals say more than "too big"
    if json_size(schema, MAX_SCHEMA_BYTES) > MAX_SCHEMA_BYTES:
        raise walk.refuse(
            f"it is over {MAX_SCHEMA_BYTES // 1024} KiB as JSON",
            "Send a smaller schema (shorter descriptions, fewer values).",
        )


def check_grammar(grammar: Any) -> None:
    if isinstance(grammar, str) and len(grammar) > MAX_GRAMMAR_CHARS:
        raise SchemaTooCostly(
            f"The grammar is too costly to compile: it is over {MAX_GRAMMAR_CHARS:,} "
            f"characters. Send a smaller grammar. (Hearth's limits on schemas: {DOCS}.)",
            param="grammar",
        )


def schemas_of(body: Mapping[str, Any]) -> Iterator[tuple[Any, str, str]]:
    """Each schema an inference request carries to the engine: (schema, where, param)."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        wrapper = fmt.get("json_schema")
        if isinstance(wrapper, dict) and "schema" in wrapper:
            yield wrapper["schema"], "The output schema", "response_format.json_schema.schema"
        if "schema" in fmt:
            yield fmt["schema"], "The output schema", "response_format.schema"
    if "json_schema" in body:
        yield body["json_schema"], "The output schema", "json_schema"
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and "parameters" in function:
            name = str(function.get("name"))[:64]
            where = f"The parameter schema of tool '{name}'"
            yield function["parameters"], where, f"tools[{i}].function.parameters"


def check_request(body: Mapping[str, Any]) -> None:
    """Refuse an inference request whose schemas or grammar are over Hearth's limits (400);
    a request with none costs a few dictionary lookups."""
    if "grammar" in body:
        check_grammar(body["grammar"])
    budget = _Budget()
    for schema, where, param in schemas_of(body):
        check_schema(schema, where, param, budget)
