"""BM25 with text fields and document-then-page scoring, against a plain-Python brute force.

The oracle computes the formula `dse.engines.bm25.documents` documents, from token lists alone:
page BM25 (Lucene, page lengths counting words only, not field tokens), and per document the
sum over query tokens of three Lucene BM25 scores with documents as the units (its title field,
its first live page, its whole live text), then ``page / max(page) + weight * doc / max(doc)``
for pages matching a query token (0 otherwise), top-k with ties broken by the lower row.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dse.engines.bm25.engine import BM25Engine
from dse.text.fields import DOC_KEY, TITLE, field_tokens

K1, B = 1.5, 0.75


def lucene(tf: float, df: int, n: int, length: float, avg: float) -> float:
    if tf == 0 or df == 0:
        return 0.0
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + K1 * ((1 - B) + B * length / (avg or 1.0)))


def words(tokens: list[str]) -> list[str]:
    return [t for t in tokens if ":" not in t]


def oracle(pages: list[list[str]], query: list[str], weight: float, allowed: list[bool]) -> list[float]:
    """Document-then-page scores of every row (see the module docstring), brute force."""
    n = len(pages)
    lengths = [len(words(p)) for p in pages]
    avg = sum(lengths) / n
    df = Counter(t for p in pages for t in set(p))
    page = [sum(lucene(Counter(p)[t], df[t], n, lengths[j], avg) for t in query) for j, p in enumerate(pages)]
    doc_of = [next((t[len(DOC_KEY):] for t in p if t.startswith(DOC_KEY)), None) for p in pages]
    live = [j for j in range(n) if allowed[j] and doc_of[j] is not None]
    docs = sorted({doc_of[j] for j in live})
    text = {d: [t for j in live if doc_of[j] == d for t in words(pages[j])] for d in docs}
    first = {d: words(pages[min(j for j in live if doc_of[j] == d)]) for d in docs}
    title = {d: [t[len(TITLE):] for j in live if doc_of[j] == d for t in pages[j] if t.startswith(TITLE)]
             for d in docs}
    score = dict.fromkeys(docs, 0.0)
    for unit in (text, first, title):
        avg_unit = sum(len(unit[d]) for d in docs) / len(docs) if docs else 0.0
        for t in query:
            n_t = sum(1 for d in docs if t in unit[d])
            for d in docs:
                score[d] += lucene(Counter(unit[d])[t], n_t, len(docs), len(unit[d]), avg_unit)
    best = max((page[j] for j in range(n) if allowed[j]), default=0.0)
    if best <= 0:
        return page
    top = max(score.values(), default=0.0)
    prior = [score[doc_of[j]] / top if top > 0 and doc_of[j] in score else 0.0 for j in range(n)]
    return [page[j] / best + weight * prior[j] if page[j] > 0 else 0.0 for j in range(n)]


def corpus(rng: np.random.Generator, n_docs: int) -> list[list[str]]:
    """Pages of random documents: words, then each page's field tokens (`dse.text.fields.field_tokens`)."""
    vocab = [f"w{i}" for i in range(25)]
    pages = []
    for d in range(n_docs):
        name = " ".join(rng.choice(vocab, size=int(rng.integers(1, 4))))
        for p in range(int(rng.integers(1, 5))):
            text = list(rng.choice(vocab, size=int(rng.integers(0, 12))))
            pages.append(text + field_tokens(lambda s: s.split(), f"doc{d}", name if p == 0 else None))
    order = rng.permutation(len(pages))  # a document's pages need not be adjacent rows
    return [pages[i] for i in order]


def topk_oracle(scores: list[float], allowed: list[bool], k: int) -> list[int]:
    rows = sorted((j for j in range(len(scores)) if allowed[j]), key=lambda j: (-scores[j], j))
    return rows[:k]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weight", [0.5, 1.0, 3.0])
def test_document_then_page_matches_the_brute_force(tmp_path, seed: int, weight: float) -> None:
    rng = np.random.default_rng(seed)
    pages = corpus(rng, int(rng.integers(1, 9)))
    queries = [list(rng.choice([f"w{i}" for i in range(25)] + ["unseen"], size=int(s)))
               for s in rng.integers(1, 5, size=6)]
    engine = BM25Engine(documents=weight)
    half = len(pages) // 2
    engine.add(pages[:half])
    engine.search(queries, 2)  # caches the document map; the next add must rebuild it
    engine.add(pages[half:])
    engine.save(tmp_path)
    loaded = BM25Engine.load(tmp_path, rows=len(pages), **engine.options())
    masks = [None, rng.random(len(pages)) < 0.6]
    for eng in (engine, loaded):
        for mask in masks:
            allowed = [True] * len(pages) if mask is None else [bool(x) for x in mask]
            want = [oracle(pages, q, weight, allowed) for q in queries]
            for k in (1, 3, len(pages) + 2):
                scores, rows = eng.search(queries, k, allowed=mask)
                for qi in range(len(queries)):
                    ids = topk_oracle(want[qi], allowed, k)
                    got_rows = [int(r) for r in rows[qi] if r >= 0]
                    got = [float(s) for s, r in zip(scores[qi], rows[qi]) if r >= 0]
                    np.testing.assert_allclose(got, [want[qi][j] for j in ids], rtol=1e-5, atol=1e-6)
                    close = [want[qi][j] for j in ids]
                    # ids equal, except among scores equal to float32 precision (ties broken by row)
                    for a, b, s in zip(got_rows, ids, close):
                        assert a == b or math.isclose(want[qi][a], s, rel_tol=1e-5, abs_tol=1e-6)


def test_without_documents_scores_are_page_bm25_and_field_tokens_count_in_lengths() -> None:
    """documents=0 (indexes from before it): plain BM25 over every token, as bm25s scores them."""
    rng = np.random.default_rng(7)
    pages = corpus(rng, 4)
    query = ["w1", "w2", "w3"]
    engine = BM25Engine()
    engine.add(pages)
    n = len(pages)
    avg = sum(len(p) for p in pages) / n
    df = Counter(t for p in pages for t in set(p))
    want = [sum(lucene(Counter(p)[t], df[t], n, len(p), avg) for t in query) for p in pages]
    np.testing.assert_allclose(engine.scores([query])[0], want, rtol=1e-5, atol=1e-6)


def test_the_right_documents_pages_rank_above_look_alikes() -> None:
    """Two documents with the same page text: the one whose title the query names ranks first."""
    same = ["capit", "expenditur", "2018"]
    pages = [same + field_tokens(str.split, "a", "3m 10k"), same + field_tokens(str.split, "b", "netflix 10k")]
    engine = BM25Engine(documents=1.0)
    engine.add(pages)
    _, rows = engine.search([["netflix", "capit", "expenditur"]], 2)
    assert rows[0].tolist() == [1, 0]
