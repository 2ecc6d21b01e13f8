"""Metadata filters: a small `where` syntax, validated and compiled to SQL over the page catalogue.

A filter is a dict of conditions, all of which must hold (AND)::

    {"kind": "pdf"}                              equality
    {"source": {"in": ["a.pdf", "b.pdf"]}}       membership (a list is short for "in")
    {"page": {"gte": 2, "lte": 5}}               numeric (or ISO date) range
    {"source": {"glob": "reports/*.pdf"}}        shell-style pattern (case-sensitive)
    {"collection": "legal", "year": {"gt": 2020}}  any metadata key recorded at ingest or add

Fields: `source` (the path as indexed), `page` (1-based), `page_id`, `kind`, `digest`, `added`
(UTC ISO timestamp of the commit), and any key of the pages' metadata (`title`, `width`, `dpi`,
user metadata given to `Retriever.add(metadata=...)`; nested keys as `a.b`). Operators: `eq`,
`ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `glob`. A page without a metadata key never
matches a condition on it (not even `ne`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

# filter field -> SQL over the catalogue's `pages p JOIN sources s`
FIELDS = {
    "source": "s.path",
    "page": "p.page",
    "page_id": "p.page_id",
    "kind": "s.kind",
    "digest": "s.digest",
    "added": "s.added",
}
OPERATORS = {
    "eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "in": "IN", "not_in": "NOT IN", "glob": "GLOB",
}
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_CLI_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|=|>|<|~)(.*)$", re.S)
_CLI_OPS = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "~": "glob"}
_SCALAR = (str, int, float, bool)


class FilterError(ValueError):
    """A `where` filter that is malformed: the message names the bad field, operator or value."""


@dataclass(frozen=True)
class CompiledFilter:
    """A filter as an SQL condition over `p` (pages) and `s` (sources).

    Attributes:
        sql: The condition, with `?` placeholders.
        args: The placeholders' values.
        metadata_keys: Metadata keys the filter reads (checked against the index by the caller).
    """

    sql: str
    args: tuple[Any, ...]
    metadata_keys: tuple[str, ...]


def compile_where(where: Mapping[str, Any]) -> CompiledFilter:
    """Validate a `where` dict and compile it to SQL.

    Raises:
        FilterError: a bad field name, unknown operator, or a value of the wrong type.
    """
    if not isinstance(where, Mapping):
        raise FilterError(f"where must be a dict of field -> condition, got {type(where).__name__}")
    clauses: list[str] = []
    args: list[Any] = []
    keys: list[str] = []
    for field, condition in where.items():
        expr = _field_sql(field, args, keys)
        ops = condition if isinstance(condition, Mapping) else _shorthand(field, condition)
        if not ops:
            raise FilterError(f"where[{field!r}]: empty condition")
        for i, op in enumerate(ops):
            if i and field not in FIELDS:
                args.append(json_path(field))  # each condition on a metadata key binds its path once
            clauses.append(_clause(field, expr, op, ops[op], args))
    return CompiledFilter(" AND ".join(clauses) or "1", tuple(args), tuple(keys))


def _field_sql(field: Any, args: list[Any], keys: list[str]) -> str:
    if not isinstance(field, str) or not _KEY_RE.match(field):
        raise FilterError(
            f"where: bad field name {field!r}; use one of {', '.join(FIELDS)} or a metadata key "
            "(letters, digits, _ and -; nested keys as a.b)"
        )
    if field in FIELDS:
        return FIELDS[field]
    keys.append(field)
    args.append(json_path(field))
    return "json_extract(p.metadata, ?)"


def json_path(key: str) -> str:
    """The SQLite JSON path of a (dotted) metadata key: `a.b` -> `$."a"."b"`."""
    return "$" + "".join(f'."{part}"' for part in key.split("."))


def _shorthand(field: str, value: Any) -> dict[str, Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return {"in": list(value)}
    return {"eq": value}


def _clause(field: str, expr: str, op: Any, value: Any, args: list[Any]) -> str:
    if op not in OPERATORS:
        raise FilterError(f"where[{field!r}]: unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    where = f"where[{field!r}][{op!r}]"
    if op in ("in", "not_in"):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)) or not value:
            raise FilterError(f"{where}: expected a non-empty list of values, got {value!r}")
        values = [_scalar(where, v) for v in value]
        args.extend(values)
        return f"{expr} {OPERATORS[op]} ({','.join('?' * len(values))})"
    value = _scalar(where, value)
    if op == "glob" and not isinstance(value, str):
        raise FilterError(f"{where}: a glob pattern must be a string, got {value!r}")
    if op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise FilterError(f"{where}: a range bound must be a number or a string, got {value!r}")
    args.append(value)
    return f"{expr} {OPERATORS[op]} ?"


def _scalar(where: str, value: Any) -> Any:
    if not isinstance(value, _SCALAR):
        raise FilterError(f"{where}: expected a string, number or bool, got {type(value).__name__} {value!r}")
    return value


def parse_conditions(texts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse command-line conditions into a `where` dict (all must hold).

    Syntax: `key=value`, `key!=value`, `key>N`, `key>=N`, `key<N`, `key<=N`, `key~glob`;
    `key=a|b|c` (or `!=`) is membership. Values that look like numbers or true/false are
    converted; quote them (`title="2024"`) to keep a string.

    Raises:
        FilterError: a condition that does not parse, or the same operator twice on a key.
    """
    where: dict[str, dict[str, Any]] = {}
    for text in texts:
        m = _CLI_RE.match(text)
        if not m:
            raise FilterError(
                f"--where {text!r}: expected KEY OP VALUE with OP one of =, !=, >, >=, <, <=, ~ (e.g. page>=2)"
            )
        key, symbol, raw = m.group(1), m.group(2), m.group(3).strip()
        op = _CLI_OPS[symbol]
        if op == "glob":
            value: Any = _unquote(raw)
        elif op in ("eq", "ne") and "|" in raw:
            op, value = ("in" if op == "eq" else "not_in"), [parse_value(v.strip()) for v in raw.split("|")]
        else:
            value = parse_value(raw)
        ops = where.setdefault(key, {})
        if op in ops:
            raise FilterError(f"--where {text!r}: {key} already has a {symbol} condition")
        ops[op] = value
    compile_where(where)  # validate names and values now, with the user's words
    return where


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def parse_value(raw: str) -> Any:
    """A command-line value: "quoted" -> str, true/false -> bool, numbers -> int/float, else str."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate user metadata for `Retriever.add`: filterable keys, scalar values (str, number, bool).

    Raises:
        FilterError: a key that is not a plain name or is a reserved field, or a bad value.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise FilterError(f"metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY_RE.match(key) or "." in key:
            raise FilterError(f"metadata key {key!r}: use letters, digits, _ and - (starting with a letter or _)")
        if key in FIELDS:
            raise FilterError(f"metadata key {key!r} is reserved (filter fields: {', '.join(FIELDS)})")
        _scalar(f"metadata[{key!r}]", value)
    return dict(metadata)
