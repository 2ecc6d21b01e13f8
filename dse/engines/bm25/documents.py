"""Document, then page: a document score for each page, from its document's fields and text.

Pages indexed with text-field version 2 (`dse.text.fields`) carry a `d:<key>` token naming
their document, and the document's first page carries its title field as `t:` tokens. For a
query, each document gets the sum, over the query's tokens, of three BM25 scores (Lucene's
formula, the engine's k1 and b), each with documents as the units (the documents with a page the
search may return: their number, document frequencies and average length):

* its title field (file name, title, subject, keywords), the `t:` tokens;
* its first page (where a document says what it is);
* its whole text (every page's tokens summed: the document-level evidence of passage
  retrieval, Callan 1994).

A page's score is then ``page / max(page) + weight * doc / max(doc)`` (each divided by its
best value over the pages for that query; pages matching no query token stay 0), so the right
document's pages rank above look-alike pages of other documents while a document's own pages
keep the order of their page scores. Only pages a search may return (`allowed`) count
towards their document, so deleted pages add nothing.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from dse.text.fields import DOC_KEY, TITLE


def _segment_fields(seg: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(document of each page as an index into the keys, title tokens per page, keys) of a segment, cached."""
    cached = getattr(seg, "_fields", None)
    if cached is not None:
        return cached
    doc = np.full(seg.pages, -1, np.int64)  # (pages,)
    title = np.zeros(seg.pages, np.float64)  # (pages,)
    keys: list[str] = []
    for term, col in seg.terms.items():
        a, z = int(seg.indptr[col]), int(seg.indptr[col + 1])
        if term.startswith(DOC_KEY):
            doc[seg.docs[a:z]] = len(keys)
            keys.append(term[len(DOC_KEY):])
        elif term.startswith(TITLE):
            np.add.at(title, seg.docs[a:z], seg.tfs[a:z])
    seg._fields = (doc, title, keys)
    return seg._fields


class DocumentMap:
    """Which document each row belongs to, over an engine's segments.

    Attributes:
        doc: int64 (n,) document of each row (-1: a row without a document key).
        title: float64 (n,) title-field tokens on each row.
        n_docs: Number of documents.
    """

    def __init__(self, segments: Sequence[Any], starts: Sequence[int], n: int) -> None:
        self.segments = list(segments)
        self.doc = np.full(n, -1, np.int64)
        self.title = np.zeros(n, np.float64)
        ids: dict[str, int] = {}
        for seg, first in zip(segments, starts):
            doc, title, keys = _segment_fields(seg)
            local = np.asarray([ids.setdefault(k, len(ids)) for k in keys] + [-1], np.int64)
            self.doc[first:first + seg.pages] = local[doc]  # -1 indexes the appended -1
            self.title[first:first + seg.pages] = title
        self.n_docs = len(ids)


def document_map(engine: Any) -> DocumentMap:
    """The engine's `DocumentMap`, rebuilt when its segments changed."""
    cached = getattr(engine, "_document_map", None)
    segments = engine._segments
    if cached is not None and len(cached.segments) == len(segments) and all(
            a is b for a, b in zip(cached.segments, segments)):
        return cached
    engine._document_map = DocumentMap(segments, engine._starts, len(engine))
    return engine._document_map


def _bm25(
    tf: np.ndarray, df: int, n: int, lengths: np.ndarray, k1: float, b: float, present: np.ndarray
) -> np.ndarray:
    """Lucene BM25 of one term over units with term frequencies `tf` (float64, one per unit).

    The average length is over the `present` units (documents with a live page), `n` of them.
    """
    if df == 0 or n == 0:
        return np.zeros_like(tf)
    avg = float(lengths[present].mean()) or 1.0
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * ((1 - b) + b * lengths / avg))


def document_scores(
    engine: Any, query: Sequence[str], allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(document score of each document float64 (n_docs,), document of each row int64 (n,)) for one query."""
    dmap = document_map(engine)
    n_docs = dmap.n_docs
    out = np.zeros(n_docs, np.float64)  # (n_docs,)
    live = dmap.doc >= 0  # (n,)
    if allowed is not None:
        live &= allowed
    if n_docs == 0 or not live.any():
        return out, dmap.doc
    rows = np.flatnonzero(live)  # (m,) ascending
    docs = dmap.doc[rows]  # (m,)
    lengths = np.concatenate([seg.lengths for seg in engine._segments]).astype(np.float64)  # (n,)
    doc_len = np.bincount(docs, lengths[rows], minlength=n_docs)  # (n_docs,)
    first = np.full(n_docs, -1, np.int64)
    first[docs[::-1]] = rows[::-1]  # (n_docs,) lowest live row of each document
    present = first >= 0  # (n_docs,) documents with a live page
    n = int(present.sum())
    first_len = np.where(present, lengths[np.maximum(first, 0)], 0.0)  # (n_docs,)
    title_len = np.bincount(docs, dmap.title[rows], minlength=n_docs)  # (n_docs,)
    is_first = np.zeros(len(dmap.doc), bool)
    is_first[first[present]] = True  # (n,)
    k1, b = engine.k1, engine.b
    for term in query:
        for field, name in (("text", term), ("title", TITLE + term)):
            hit_rows, hit_tfs = _postings(engine, name)
            keep = live[hit_rows]
            hit_rows, hit_tfs = hit_rows[keep], hit_tfs[keep]
            if not len(hit_rows):
                continue
            tf = np.bincount(dmap.doc[hit_rows], hit_tfs, minlength=n_docs)  # (n_docs,)
            if field == "title":
                out += _bm25(tf, int((tf > 0).sum()), n, title_len, k1, b, present) * present
                continue
            out += _bm25(tf, int((tf > 0).sum()), n, doc_len, k1, b, present) * present
            on_first = is_first[hit_rows]
            tf1 = np.bincount(dmap.doc[hit_rows[on_first]], hit_tfs[on_first], minlength=n_docs)  # (n_docs,)
            out += _bm25(tf1, int((tf1 > 0).sum()), n, first_len, k1, b, present) * present
    return out, dmap.doc


def _postings(engine: Any, term: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows int64, term frequencies float64) of a term over every segment."""
    rows, tfs = [], []
    for seg, first in zip(engine._segments, engine._starts):
        col = seg.terms.get(term)
        if col is None:
            continue
        a, z = int(seg.indptr[col]), int(seg.indptr[col + 1])
        rows.append(first + seg.docs[a:z].astype(np.int64))
        tfs.append(seg.tfs[a:z].astype(np.float64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(rows), np.concatenate(tfs)


def with_documents(
    engine: Any, queries: Sequence[Sequence[str]], scores: np.ndarray, weight: float, allowed: np.ndarray | None
) -> np.ndarray:
    """Page scores (nq, n) combined with their documents' scores (see the module docstring), float32."""
    out = np.zeros_like(scores)  # (nq, n)
    for qi, query in enumerate(queries):
        page = scores[qi].astype(np.float64)  # (n,)
        visible = page if allowed is None else np.where(allowed, page, 0.0)
        best = float(visible.max()) if len(visible) else 0.0
        if best <= 0:
            out[qi] = scores[qi]
            continue
        doc, doc_of = document_scores(engine, query, allowed)
        top = float(doc.max()) if len(doc) else 0.0
        prior = np.where(doc_of >= 0, doc[np.maximum(doc_of, 0)], 0.0) / top if top > 0 else 0.0
        out[qi] = np.where(page > 0, page / best + weight * prior, 0.0).astype(np.float32)
    return out
