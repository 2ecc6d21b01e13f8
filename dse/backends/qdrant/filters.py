"""`where` filters (`dse.storage.filters` syntax and semantics) as Qdrant filters.

Equality, membership and numeric ranges become payload conditions; a condition Qdrant cannot
express (a glob, a range over strings such as ISO dates) is evaluated here over the payloads and
passed on as the matching point ids. A page without a metadata key never matches a condition
on it (not even `ne`), as in the embedded index.
"""

from __future__ import annotations

import fnmatch
import operator
from typing import Any, Callable, Iterable, Mapping

from dse.storage.filters import FIELDS, FilterError, compile_where

_CMP = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def payload_key(field: str) -> str:
    """The payload key of a filter field (metadata keys live under `meta.`)."""
    return field if field in FIELDS else f"meta.{field}"


def metadata_fields(where: Mapping[str, Any]) -> list[str]:
    """The metadata keys a (valid) filter reads."""
    return list(compile_where(where).metadata_keys)


def to_filter(where: Mapping[str, Any] | None, scan: Callable[[Callable[[Mapping[str, Any]], bool]], list[str]]) -> Any:
    """A `qdrant_client.models.Filter` for `where` (None: no filter).

    Args:
        where: The filter (validated with `compile_where`: FilterError names a bad part).
        scan: Returns the point ids whose payload a predicate accepts (for conditions Qdrant
            cannot express).
    """
    from qdrant_client import models

    if where is None:
        return None
    compile_where(where)
    must: list[Any] = []
    must_not: list[Any] = []
    local: list[Callable[[Mapping[str, Any]], bool]] = []
    for field, condition in where.items():
        key = payload_key(field)
        ops = condition if isinstance(condition, Mapping) else (
            {"in": list(condition)} if isinstance(condition, (list, tuple, set, frozenset)) else {"eq": condition})
        if field not in FIELDS:
            must.append(_present(models, key))
        for op, value in ops.items():
            if op == "eq":
                must.append(_match(models, key, value))
            elif op == "ne":
                must_not.append(_match(models, key, value))
            elif op == "in":
                must.append(_any(models, key, list(value)))
            elif op == "not_in":
                must_not.append(_any(models, key, list(value)))
            elif op in _CMP and isinstance(value, (int, float)):
                must.append(models.FieldCondition(key=key, range=models.Range(**{op: value})))
            else:
                local.append(_predicate(key, op, value))
    if local:
        ids = scan(lambda payload: all(p(payload) for p in local))
        must.append(models.HasIdCondition(has_id=ids))
    return models.Filter(must=must or None, must_not=must_not or None)


def _present(models: Any, key: str) -> Any:
    """The key is set on the page (an empty-valued key never matches, as a missing one)."""
    return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])


def _match(models: Any, key: str, value: Any) -> Any:
    if isinstance(value, float) and not value.is_integer():
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if isinstance(value, float):
        value = int(value)
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _any(models: Any, key: str, values: list[Any]) -> Any:
    if all(isinstance(v, str) for v in values) or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))
    return models.Filter(should=[_match(models, key, v) for v in values])


def _predicate(key: str, op: str, value: Any) -> Callable[[Mapping[str, Any]], bool]:
    """A payload predicate for a condition evaluated here (glob, string ranges)."""
    def get(payload: Mapping[str, Any]) -> Any:
        node: Any = payload
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def accept(payload: Mapping[str, Any]) -> bool:
        got = get(payload)
        if got is None:
            return False
        if op == "glob":
            return isinstance(got, str) and fnmatch.fnmatchcase(got, value)
        try:
            return bool(_CMP[op](got, value))
        except TypeError:
            return False
    return accept


def check_known(keys: Iterable[str], known: list[str], pages: int) -> None:
    """FilterError for a metadata key no live page records (a typo, most often), as the embedded index."""
    for key in keys:
        top = key.split(".")[0]
        if pages and top not in known:
            names = ", ".join(list(FIELDS) + [k for k in known if k not in FIELDS])
            raise FilterError(f"where: no page in this index has the field {key!r}; known fields: {names}")
