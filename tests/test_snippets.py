"""Snippets: highlights equal an oracle that tokenizes every word of the page, in every language."""

from __future__ import annotations

import random
import re

import pytest

from dse.encoders.bm25 import BM25Encoder
from dse.text.tokenizer import LANGUAGES
from dse.serve.snippets import snippet

WORDS = ("Ärger ärgerlich Häuser Haus Öl öffentlich Über über naïve ﬁnance finances İstanbul Istanbul Straße "
         "strasse margins margin running ran Revenue revenues élève élèves École écoles Ñandú señor "
         "возможности Возможность году годы çalışma Çalışmalar Ølen ølet Åsa åren the and of der die la le "
         "x y 42 3.5 Q4 FY2018 2018 AMAZON_2017_10K amazon 10K 10-K operating-margin well-being").split()


def _oracle(text: str, query: str, tokenize) -> set[str]:
    """Words of the text with a token of the query, tokenizing every word."""
    wanted = set(tokenize([query])[0])
    words = re.findall(r"\w+", text)
    return {w for w, toks in zip(words, tokenize(words)) if wanted.intersection(toks)}


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_highlights_equal_tokenizing_every_word(language: str) -> None:
    tokenize = BM25Encoder(language=language).encode_pages
    rng = random.Random(language)
    for _ in range(30):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        sn = snippet(text, query, tokenize, width=10_000)  # one window: the whole text
        marked = {sn.text[a:b] for a, b in sn.highlights}
        assert marked == _oracle(text, query, tokenize), (language, query)


def test_window_and_offsets() -> None:
    tokenize = BM25Encoder().encode_pages
    text = ("filler " * 100) + "the operating margins grew " + ("padding " * 100)
    sn = snippet(text, "margin", tokenize, width=80)
    assert sn.text.startswith("… ") and sn.text.endswith(" …") and len(sn.text) <= 90
    assert [sn.text[a:b] for a, b in sn.highlights] == ["margins"]
    assert snippet("", "margin", tokenize) == snippet("   ", "x", tokenize)
    assert snippet("no match here", "zebra", tokenize).highlights == ()


def test_cached_tokenizer_gives_the_same_tokens() -> None:
    from dse.serve.snippets import CachedTokenizer, PageText

    tokenize = BM25Encoder(language="de").encode_pages
    cached = CachedTokenizer(tokenize, max_words=8)
    rng = random.Random(1)
    for _ in range(50):
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, 12))]
        assert cached(words) == tokenize(words)
        text = " ".join(words)
        assert snippet(text, "Häuser ärgerlich", cached) == snippet(text, "Häuser ärgerlich", tokenize)
        assert snippet(PageText.of(text), "Häuser", cached) == snippet(text, "Häuser", tokenize)


@pytest.mark.parametrize("size", [0, 3, 1000])
def test_snippet_cache_gives_the_uncached_snippet(size: int) -> None:
    from dse.serve.snippets import CachedTokenizer, PageText, SnippetCache

    tokenize = BM25Encoder().encode_pages
    rng = random.Random(size)
    pages = {f"p{i}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 80))) for i in range(20)}
    cache = SnippetCache(CachedTokenizer(tokenize), lambda pid: PageText.of(pages[pid]), size=size, width=60)
    for _ in range(300):  # repeats, and queries that tokenize alike ("margins", "margin"), share entries
        pid = rng.choice(sorted(pages))
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
        assert cache(pid, query) == snippet(pages[pid], query, tokenize, width=60), (pid, query)
    with pytest.raises(KeyError):
        cache("gone", "margin")


def test_snippets_of_many_pages_equal_one_by_one() -> None:
    from dse.serve.snippets import CachedTokenizer, PageText, SnippetCache

    tokenize = BM25Encoder().encode_pages
    rng = random.Random(7)
    pages = {f"p{i}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 80))) for i in range(20)}
    fetched: list[list[str]] = []

    def page_texts(ids):  # one read for the pages not cached; a page that is gone is left out
        fetched.append(list(ids))
        return {pid: PageText.of(pages[pid]) for pid in ids if pid in pages}

    cache = SnippetCache(CachedTokenizer(tokenize), lambda pid: PageText.of(pages[pid]), width=60,
                         page_texts=page_texts)
    for _ in range(50):
        ids = rng.sample(sorted(pages), 5) + ["gone"]
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
        got = cache.many(ids, query)
        assert got[-1] is None
        assert got[:-1] == [snippet(pages[pid], query, tokenize, width=60) for pid in ids[:-1]], query
    assert all(len(ids) == len(set(ids)) for ids in fetched)
