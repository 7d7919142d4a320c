"""Table schemas: the JSON Schemas in ``schemas/`` are the source of truth; Arrow schemas are derived from them.

Each JSON Schema describes one row.  ``arrow_schema(name)`` maps it to Arrow (property order kept, required
properties non-nullable, ``x-arrow`` narrowing a type: int16/int32/float32/binary).  ``validate_rows`` checks rows
against the JSON Schema and raises :class:`SchemaError` naming the table, the row's id and the failing field.
"""
from __future__ import annotations

import json
import numbers
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa

from .errors import SchemaError


_ARROW_NARROW = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "binary": pa.binary(),
}


@lru_cache(maxsize=None)
def json_schema(name: str) -> dict:
    """The JSON Schema of table ``name`` (a row of it), as shipped in ``refava/schemas/<name>.schema.json``."""
    try:
        text = resources.files("refava").joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"no JSON Schema for table {name!r}: expected schemas/{name}.schema.json "
                          f"(known tables: {', '.join(known_tables())})") from None
    return json.loads(text)


def known_tables() -> list[str]:
    folder = resources.files("refava").joinpath("schemas")
    return sorted(p.name.removesuffix(".schema.json") for p in folder.iterdir() if p.name.endswith(".schema.json"))


def _arrow_type(prop: Mapping[str, Any], where: str) -> pa.DataType:
    if "x-arrow" in prop:
        try:
            return _ARROW_NARROW[prop["x-arrow"]]
        except KeyError:
            raise SchemaError(f"{where}: unknown x-arrow type {prop['x-arrow']!r}") from None
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise SchemaError(f"{where}: expected one non-null type, found {kind}")
        kind = kinds[0]
    if kind == "string":
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        return pa.list_(_arrow_type(prop["items"], where + "[]"))
    if kind == "object":
        fields = [pa.field(k, _arrow_type(v, f"{where}.{k}"), nullable=k not in prop.get("required", []))
                  for k, v in prop["properties"].items()]
        return pa.struct(fields)
    raise SchemaError(f"{where}: cannot map JSON type {kind!r} to Arrow")


def _nullable(prop: Mapping[str, Any]) -> bool:
    kind = prop.get("type")
    return isinstance(kind, list) and "null" in kind


@lru_cache(maxsize=None)
def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of table ``name``, derived from its JSON Schema.

    >>> arrow_schema("instances").field("person_id").type
    DataType(int32)
    """
    schema = json_schema(name)
    required = set(schema.get("required", []))
    fields = []
    for key, prop in schema["properties"].items():
        nullable = key not in required or _nullable(prop)
        fields.append(pa.field(key, _arrow_type(prop, f"{name}.{key}"), nullable=nullable))
    return pa.schema(fields)


def _binary_fields(name: str) -> set[str]:
    return {k for k, v in json_schema(name)["properties"].items() if v.get("x-arrow") == "binary"}


@lru_cache(maxsize=None)
def _validator(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(json_schema(name))


# -- a quick check for the keywords refava's schemas use; jsonschema decides (and explains) whenever it says no --

_QUICK_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "maximum",
                   "exclusiveMinimum", "pattern", "minItems", "maxItems", "minLength", "description", "title", "$schema",
                   "$id", "x-arrow", "contentEncoding"}   # contentEncoding: an annotation, never checked in 2020-12


def _is_integer(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_number(v) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


_QUICK_TYPES = {"string": lambda v: isinstance(v, str), "integer": _is_integer, "number": _is_number,
                "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
                "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}


def _quick(schema) -> Callable[[Any], bool] | None:
    """A check that accepts a value only where the JSON Schema accepts it (Draft 2020-12, as jsonschema reads it),
    for the keywords in ``_QUICK_KEYWORDS``; None for a schema with any other keyword.  About 20x faster than
    jsonschema on refava's rows; a value it refuses goes to jsonschema, which has the last word and the message."""
    if not isinstance(schema, dict) or set(schema) - _QUICK_KEYWORDS:
        return None
    checks: list[Callable[[Any], bool]] = []
    if "type" in schema:
        kinds = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
        if any(k not in _QUICK_TYPES for k in kinds):
            return None
        tests = [_QUICK_TYPES[k] for k in kinds]
        checks.append(tests[0] if len(tests) == 1 else (lambda v, tests=tests: any(t(v) for t in tests)))
    if "enum" in schema:
        allowed = schema["enum"]
        if not all(a is None or isinstance(a, str) for a in allowed):
            return None
        strings, null = frozenset(a for a in allowed if a is not None), None in allowed
        checks.append(lambda v: (v is None and null) or (isinstance(v, str) and v in strings))
    if "minimum" in schema:      # jsonschema: an error where the value is a number and `value < minimum`
        checks.append(lambda v, b=schema["minimum"]: not (_is_number(v) and v < b))
    if "maximum" in schema:
        checks.append(lambda v, b=schema["maximum"]: not (_is_number(v) and v > b))
    if "exclusiveMinimum" in schema:
        checks.append(lambda v, b=schema["exclusiveMinimum"]: not (_is_number(v) and v <= b))
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    if "minLength" in schema:
        checks.append(lambda v, n=schema["minLength"]: not isinstance(v, str) or len(v) >= n)
    if "minItems" in schema:
        checks.append(lambda v, n=schema["minItems"]: not isinstance(v, list) or len(v) >= n)
    if "maxItems" in schema:
        checks.append(lambda v, n=schema["maxItems"]: not isinstance(v, list) or len(v) <= n)
    if "items" in schema:
        item = _quick(schema["items"])
        if item is None:
            return None
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    if {"properties", "required", "additionalProperties"} & set(schema):
        properties = {}
        for key, sub in schema.get("properties", {}).items():
            properties[key] = _quick(sub)
            if properties[key] is None:
                return None
        required = tuple(schema.get("required", ()))
        extra = schema.get("additionalProperties", True)
        if extra not in (True, False):
            return None

        tests = list(properties.items())
        known = frozenset(properties)

        def check_object(v) -> bool:
            if not isinstance(v, dict):
                return True
            for k in required:
                if k not in v:
                    return False
            if extra is False and not known.issuperset(v):
                return False
            for k, test in tests:
                if k in v and not test(v[k]):
                    return False
            return True
        checks.append(check_object)
    if len(checks) == 1:
        return checks[0]
    if not checks:
        return lambda v: True

    def check_all(v) -> bool:
        for c in checks:
            if not c(v):
                return False
        return True
    return check_all


@lru_cache(maxsize=None)
def _quick_check(name: str):
    return _quick(json_schema(name))


def validate_rows(name: str, rows: Iterable[Mapping[str, Any]], *, source: str = "", id_field: str | None = None) -> int:
    """Check every row against table ``name``'s JSON Schema; return the number of rows checked.

    Raises :class:`SchemaError` on the first bad row, naming the source, the row (index and id), the field, what
    was expected and what was found.
    """
    validator = _validator(name)
    quick = _quick_check(name)
    binary = _binary_fields(name)
    id_field = id_field or next(iter(json_schema(name)["properties"]))
    count = 0
    for index, row in enumerate(rows):
        count += 1
        plain = dict(row)
        for key in binary:
            if key not in plain:
                continue
            value = plain[key]
            if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
                raise SchemaError(f"{source or name} row {index} ({id_field}={row.get(id_field)!r}): "
                                  f"field {key!r} expected bytes, found {type(value).__name__}")
            plain[key] = "" if value is not None else None  # bytes are checked here; the rest by the JSON Schema
        if quick is not None and quick(plain):
            continue
        error = next(iter(validator.iter_errors(plain)), None)
        if error is not None:
            field = ".".join(str(p) for p in error.absolute_path) or "(row)"
            raise SchemaError(f"{source or name} row {index} ({id_field}={row.get(id_field)!r}): field {field}: "
                              f"{error.message} (schema: schemas/{name}.schema.json)")
    return count


def cast_table(name: str, table: pa.Table, *, source: str = "") -> pa.Table:
    """Cast ``table`` to table ``name``'s Arrow schema, with a message naming missing or extra columns."""
    schema = arrow_schema(name)
    have, want = set(table.column_names), set(schema.names)
    required = set(json_schema(name).get("required", schema.names))
    for column in sorted(want - have - required):      # an optional column a table written before it lacks: nulls
        table = table.append_column(schema.field(column), pa.nulls(table.num_rows, schema.field(column).type))
        have.add(column)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise SchemaError(f"{source or name}: columns do not match schemas/{name}.schema.json: "
                          f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    table = table.select(schema.names)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        found = {f.name: str(f.type) for f in table.schema}
        raise SchemaError(f"{source or name}: cannot cast to schemas/{name}.schema.json ({exc}); found types {found}") from exc
