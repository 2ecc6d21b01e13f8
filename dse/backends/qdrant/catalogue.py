"""What the collection's payloads say about pages and sources (the embedded index's catalogue questions)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from dse.backends.records import PageRecord
from dse.backends.qdrant.points import PAYLOAD_FIELDS, point_id, record_of


class PayloadCatalogue:
    """Lookups over one collection's payloads (scrolls: the collection is the truth)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def scroll(self, flt: Any = None, fields: Any = PAYLOAD_FIELDS) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(point id, payload) of every point matching `flt`."""
        offset = None
        while True:
            points, offset = self.client.scroll(self.name, scroll_filter=flt, limit=1024, offset=offset,
                                                with_payload=list(fields) if fields is not True else True,
                                                with_vectors=False)
            for p in points:
                yield str(p.id), p.payload or {}
            if offset is None:
                return

    def where(self, field: str, value: Any) -> Any:
        from qdrant_client import models

        match = models.MatchAny(any=list(value)) if isinstance(value, list) else models.MatchValue(value=value)
        return models.Filter(must=[models.FieldCondition(key=field, match=match)])

    def count(self, flt: Any = None) -> int:
        return int(self.client.count(self.name, count_filter=flt, exact=True).count)

    def page(self, page_id: str) -> PageRecord:
        got = self.client.retrieve(self.name, [point_id(page_id)], with_payload=True, with_vectors=False)
        if not got:
            raise KeyError(f"no live page has the id {page_id!r}")
        return record_of(got[0].payload)

    def pages_at(self, paths: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
        return list(self.scroll(self.where("source", paths))) if paths else []

    def sources(self) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for _, p in self.scroll(fields=["source", "digest", "kind", "added"]):
            src = out.setdefault(p["source"], {"path": p["source"], "digest": p["digest"], "kind": p["kind"],
                                               "pages": 0, "added": p["added"]})
            src["pages"] += 1
        return sorted(out.values(), key=lambda s: (s["added"], s["path"]))

    def metadata_keys(self) -> list[str]:
        keys: set[str] = set()
        for _, p in self.scroll(fields=["meta"]):
            keys.update((p.get("meta") or {}).keys())
        return sorted(keys)

    def first(self, field: str, value: Any, key: str) -> Any:
        """`key` of a complete source whose `field` is `value` (None: none, or only part of it was written).

        A source counts once all its pages are stored (`source_pages`): a `dse index` killed in
        the middle of a source's upsert leaves it incomplete, and the next run adds it again.
        """
        from qdrant_client import models

        points, _ = self.client.scroll(self.name, scroll_filter=self.where(field, value), limit=1,
                                       with_payload=[key, "source", "digest", "source_pages"], with_vectors=False)
        if not points:
            return None
        p = points[0].payload
        both = models.Filter(must=[self.where("source", p["source"]), self.where("digest", p["digest"])])
        return p.get(key) if self.count(both) >= int(p.get("source_pages", 0)) else None

    def matching(self, predicate: Callable[[Mapping[str, Any]], bool]) -> list[str]:
        """Point ids whose payload `predicate` accepts."""
        return [pid for pid, p in self.scroll(fields=True) if predicate(p)]

    def live_images(self) -> set[str]:
        return {p["image"] for _, p in self.scroll(fields=["image"]) if p.get("image")}
