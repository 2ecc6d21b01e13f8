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


# ---------------------------------------------------------------- the fast path against the old one
# The implementation before per-page token offsets (PageTokens): each request found the words of a
# page that match the query (tokenizing candidate words) and searched the flat text for each.

def _old_snippet(text: str, query: str, tokenize, width: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    flat = " ".join(text.split())
    if not flat:
        return "", ()
    wanted = frozenset(tokenize([query])[0]) if query.strip() else frozenset()
    hits: list[tuple[int, int]] = []
    if wanted:
        words = set(re.findall(r"\w+", flat))
        initials = {t[:1] for t in wanted}
        candidates = [w for w in words if not w.isascii() or w[:1].lower() in initials or not w.isalpha()]
        matching = {w for w, toks in zip(candidates, tokenize(candidates)) if wanted.intersection(toks)}
        for word in matching:
            at = flat.find(word)
            while at != -1:
                end = at + len(word)
                if (at == 0 or not _old_word_char(flat[at - 1])) and (end == len(flat) or not _old_word_char(flat[end])):
                    hits.append((at, end))
                at = flat.find(word, end)
        hits.sort()
    start = _old_best_start(flat, hits, width)
    stop = min(len(flat), start + width)
    if stop < len(flat):
        space = flat.rfind(" ", start, stop)
        stop = space if space > start + width // 2 else stop
    prefix = "… " if start > 0 else ""
    suffix = " …" if stop < len(flat) else ""
    shift = len(prefix) - start
    return prefix + flat[start:stop] + suffix, tuple((a + shift, b + shift) for a, b in hits if a >= start and b <= stop)


def _old_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _old_best_start(flat: str, hits: list[tuple[int, int]], width: int) -> int:
    if not hits:
        return 0
    best, best_count, j = hits[0][0], 0, 0
    for i, (a, _) in enumerate(hits):
        while j < len(hits) and hits[j][1] <= a + width:
            j += 1
        if j - i > best_count:
            best, best_count = a, j - i
    start = max(0, best - width // 6)
    if start > 0:
        space = flat.find(" ", start, best)
        start = space + 1 if space != -1 else start
    if len(flat) - start < width:
        start = max(0, len(flat) - width)
        space = flat.find(" ", start) if start else -1
        start = space + 1 if 0 <= space < len(flat) and start else start
    return start


SEPARATORS = (" ", " ", " ", "  ", "\n", "\t \n", ", ", ". ", "-", "/", " (", ") ", "'", "’", " — ", "…", "\u00a0")


def _random_text(rng: random.Random, n: int) -> str:
    """Words of every kind (and random letters) joined by white space and punctuation."""
    parts = []
    for _ in range(n):
        word = rng.choice(WORDS) if rng.random() < 0.8 else "".join(rng.choice("abcxyzäöß019_") for _ in range(rng.randint(1, 6)))
        parts.append(word.upper() if rng.random() < 0.05 else word)
        parts.append(rng.choice(SEPARATORS))
    return ("" if rng.random() < 0.7 else rng.choice(SEPARATORS)) + "".join(parts)


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_fast_path_equals_the_old_implementation(language: str) -> None:
    from dse.serve.snippets import CachedTokenizer, PageText, SnippetCache

    tokenize = BM25Encoder(language=language).encode_pages
    cached = CachedTokenizer(tokenize, max_words=50)  # small: it starts again often, prepared pages are relearned
    rng = random.Random(f"fast-{language}")
    pages = [_random_text(rng, rng.choice((0, 1, 3, 20, 80, 300))) for _ in range(40)]
    cache = SnippetCache(cached, lambda pid: cached.prepare(pages[int(pid)]), size=64, width=120)
    prepared = [cached.prepare(text) for text in pages]
    for _ in range(150):
        i = rng.randrange(len(pages))
        query = rng.choice(("", " ", "x")) if rng.random() < 0.05 else _random_text(rng, rng.randint(1, 4))
        width = rng.choice((10, 60, 120, 240, 10_000))
        old = _old_snippet(pages[i], query, tokenize, width)
        plain = snippet(pages[i], query, tokenize, width)
        assert (plain.text, plain.highlights) == old, (query, width)
        for text in (PageText.of(pages[i]), prepared[i]):
            got = snippet(text, query, cached, width)
            assert (got.text, got.highlights) == old, (query, width)
        if width == 120:
            got = cache(str(i), query)
            assert (got.text, got.highlights) == old, query


def test_word_characters_are_what_backslash_w_matches() -> None:
    """`PageText` finds words without a regular expression: its test of a character must be `\\w`'s."""
    from dse.serve.snippets import PageText
    from dse.text.forms import is_word_char as _is_word_char, page_words

    word = re.compile(r"\w")
    assert [c for c in map(chr, range(0x110000)) if bool(word.fullmatch(c)) != _is_word_char(c)] == []
    rng = random.Random(3)
    for _ in range(300):
        text = "".join(chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0x3000)))) for _ in range(60))
        page = PageText.of(text)
        flat = " ".join(text.split())
        assert page.flat == flat and page.words == frozenset(re.findall(r"\w+", flat)) == page_words(text)
        assert PageText.light(text) == PageText(page.flat, frozenset(), "")
        assert PageText.light(text).occurrences(page.words) == page.spans(page.words)
        some = frozenset(rng.sample(sorted(page.words), min(3, len(page.words)))) | {"zz", "Q"}
        assert PageText.light(text).occurrences(some) == page.spans(some & page.words)
        assert page.spans(page.words) == [m.span() for m in re.finditer(r"\w+", flat)]


# ---------------------------------------------------------------- snippets from the index's word forms
def _forms_of(pairs: list[tuple[str, str]]):
    """Query tokens -> the words giving them, as `Catalogue.word_forms` answers from recorded pairs."""
    by_token: dict[str, set[str]] = {}
    for token, word in pairs:
        by_token.setdefault(token, set()).add(word)
    return lambda tokens: frozenset().union(*(by_token.get(t, ()) for t in tokens))


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_word_forms_path_equals_the_old_implementation(language: str) -> None:
    """Highlights from the forms recorded at index time (no word of a page tokenized) are the old ones."""
    from dse.serve.snippets import CachedTokenizer, PageText, SnippetCache
    from dse.text.forms import word_forms

    tokenize = BM25Encoder(language=language).encode_pages
    rng = random.Random(f"forms-{language}")
    pages = [_random_text(rng, rng.choice((0, 1, 3, 20, 80, 300))) for _ in range(40)]
    pairs = word_forms(pages, tokenize)
    assert pairs == sorted(set(pairs))
    forms = _forms_of(pairs)
    light_reads: list[bool] = []

    def page_texts(ids, light=False):
        light_reads.append(light)
        return {pid: (PageText.light if light else PageText.of)(pages[int(pid)]) for pid in ids}

    cache = SnippetCache(CachedTokenizer(tokenize), lambda pid: PageText.of(pages[int(pid)]), size=64, width=120,
                         page_texts=page_texts, forms=forms)
    for _ in range(150):
        i = rng.randrange(len(pages))
        query = rng.choice(("", " ", "x")) if rng.random() < 0.05 else _random_text(rng, rng.randint(1, 4))
        width = rng.choice((10, 60, 120, 240, 10_000))
        old = _old_snippet(pages[i], query, tokenize, width)
        wanted = frozenset(tokenize([query])[0]) if query.strip() else frozenset()
        for text in (pages[i], PageText.light(pages[i])):
            got = snippet(text, query, tokenize, width, matching=forms(wanted))
            assert (got.text, got.highlights) == old, (query, width)
        if width == 120:
            got = cache.many([str(i)], query)[0]
            assert (got.text, got.highlights) == old, query
    assert light_reads and all(light_reads)


def test_snippet_cache_tokenizes_pages_where_forms_are_not_recorded() -> None:
    from dse.serve.snippets import CachedTokenizer, PageText, SnippetCache

    tokenize = BM25Encoder().encode_pages
    rng = random.Random(11)
    pages = {f"p{i}": _random_text(rng, 40) for i in range(10)}
    reads: list[bool] = []

    def page_texts(ids, light=False):
        reads.append(light)
        return {pid: (PageText.light if light else PageText.of)(pages[pid]) for pid in ids}

    cache = SnippetCache(CachedTokenizer(tokenize), lambda pid: PageText.of(pages[pid]), width=80,
                         page_texts=page_texts, forms=lambda tokens: None)
    for pid in pages:
        got = cache.many([pid], "margins revenue 2018")[0]
        assert (got.text, got.highlights) == _old_snippet(pages[pid], "margins revenue 2018", tokenize, 80)
    assert reads and not any(reads)
