"""A seeded synthetic document collection for `bench/serve.py`: page texts, small page images, queries.

How it is built (every draw seeded, any page regenerated alone from (seed, document, page)):
- A vocabulary of `vocab` pronounceable made-up words, each one BM25 token (distinct after the
  index's stemming, none a stopword), ranked by a Zipf law (weight 1 / (rank + 2.7)).
- `topics` topics of 50 mid- and low-frequency words each (Zipf within the topic).
- Documents of 10-50 pages. Each has a primary and a secondary topic (topics are shared by many
  documents) and 15 words of its own (names); each page also has 8 "section" words from its
  document. A page's 120-360 content words are 55% background Zipf, 20% primary topic, 8%
  secondary topic, 7% the document's own words, 10% the page's section words, with English
  function words (stopwords) between them, cut into sentences, with a title and "Page n of N".
- A query for a target page: 3-8 distinct words drawn from the page's word occurrences (so
  frequent words come up often, as in a real question), sometimes with a function word.
- A page image: 96 x 128 px (portrait), a coloured band per document and the first words drawn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

FUNCTION_WORDS = ("the", "of", "and", "to", "in", "a", "is", "for", "on", "with", "as", "by", "that", "this",
                  "are", "be", "at", "or", "an", "it", "was", "not", "but")
_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "cr",
           "dr", "fr", "gr", "pr", "tr", "bl", "cl", "fl", "gl", "pl", "sl", "st", "sp", "sh", "ch", "th", "")
_NUCLEI = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "io", "ia")
_CODAS = ("", "", "", "n", "r", "l", "s", "t", "m", "nd", "nt", "st", "rk", "ct", "x", "ng")
MIXTURE = (0.55, 0.20, 0.08, 0.07, 0.10)  # background, primary topic, secondary topic, document, section
IMAGE_SIZE = (96, 128)


@dataclass(frozen=True)
class Doc:
    """One synthetic document: its pages and where its words come from."""

    number: int
    first_page: int  # global index of its page 1
    pages: int
    primary: int
    secondary: int
    own: np.ndarray  # (15,) word ids

    @property
    def path(self) -> str:
        return f"/bench/corpus/report-{self.number:05d}.pdf"


class Corpus:
    """Deterministic generator of `pages` pages in documents, and of queries (module docstring)."""

    def __init__(self, pages: int, seed: int = 0, vocab: int = 4000, topics: int = 60) -> None:
        from dse.encoders.bm25 import BM25Encoder

        self.seed, self.n_pages = seed, pages
        self.tokenizer = BM25Encoder()
        self.vocab = _make_vocab(vocab, self.tokenizer, np.random.default_rng([seed, 1 << 20]))
        v = len(self.vocab)
        self.bg_cdf = np.cumsum(1.0 / (np.arange(v) + 2.7))  # (v,) Zipf over ranks
        self.bg_cdf /= self.bg_cdf[-1]
        rng = np.random.default_rng([seed, 1 << 21])
        self.topic_words = np.stack([rng.choice(np.arange(50, v), 50, replace=False) for _ in range(topics)])
        self.topic_cdf = np.cumsum(1.0 / (np.arange(50) + 1.0) ** 0.8)  # (50,)
        self.topic_cdf /= self.topic_cdf[-1]
        self.docs: list[Doc] = []
        start = 0
        while start < pages:
            n = min(int(rng.integers(10, 51)), pages - start)
            own = rng.choice(np.arange(min(300, v // 2), v), 15, replace=False)
            self.docs.append(Doc(len(self.docs), start, n, int(rng.integers(topics)), int(rng.integers(topics)), own))
            start += n
        self._firsts = np.array([d.first_page for d in self.docs])  # (docs,)

    # ---------------------------------------------------------------- pages
    def locate(self, page: int) -> tuple[Doc, int]:
        """The document of global page index `page` and the 1-based page number in it."""
        doc = self.docs[int(np.searchsorted(self._firsts, page, side="right")) - 1]
        return doc, page - doc.first_page + 1

    def _rng(self, doc: Doc, n: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, doc.number, n])

    def words(self, doc: Doc, n: int) -> np.ndarray:
        """Content word ids of page `n` of `doc`, in order: int (length,)."""
        rng = self._rng(doc, n)
        length = int(rng.integers(120, 361))
        section = rng.choice(np.concatenate([self.topic_words[doc.primary], doc.own]), 8, replace=False)
        part = np.searchsorted(np.cumsum(MIXTURE), rng.random(length) * 0.999999)  # (length,) component
        out = np.searchsorted(self.bg_cdf, rng.random(length))  # (length,) background
        topic_rank = np.minimum(np.searchsorted(self.topic_cdf, rng.random(length)), 49)  # (length,)
        out = np.where(part == 1, self.topic_words[doc.primary][topic_rank], out)
        out = np.where(part == 2, self.topic_words[doc.secondary][topic_rank], out)
        out = np.where(part == 3, doc.own[rng.integers(0, len(doc.own), length)], out)
        out = np.where(part == 4, section[rng.integers(0, len(section), length)], out)
        return np.minimum(out, len(self.vocab) - 1)

    def title(self, doc: Doc) -> str:
        return " ".join(self.vocab[w].capitalize() for w in doc.own[:3])

    def text(self, doc: Doc, n: int) -> str:
        """The page's text layer: a title line, sentences in paragraphs, 'Page n of N'."""
        words = self.words(doc, n)
        rng = np.random.default_rng([self.seed, doc.number, n, 1])
        glue = rng.random(len(words)) < 0.35
        fillers = rng.integers(0, len(FUNCTION_WORDS), len(words))
        tokens: list[str] = []
        for w, g, f in zip(words, glue, fillers):
            tokens.append(self.vocab[w])
            if g:
                tokens.append(FUNCTION_WORDS[f])
        sentences, i = [], 0
        while i < len(tokens):
            j = i + int(rng.integers(8, 19))
            sentences.append(" ".join(tokens[i:j]).capitalize() + ".")
            i = j
        paragraphs = [" ".join(sentences[p:p + 5]) for p in range(0, len(sentences), 5)]
        return f"{self.title(doc)}\n\n" + "\n\n".join(paragraphs) + f"\n\nPage {n} of {doc.pages}"

    def image(self, doc: Doc, n: int, text: str) -> Any:
        """A small page image: a band in the document's colour and the page's first words."""
        import colorsys

        from PIL import Image, ImageDraw, ImageFont

        hue = (doc.number * 0.61803) % 1.0
        band = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.75))
        img = Image.new("RGB", IMAGE_SIZE, "white")
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, IMAGE_SIZE[0], 9 + n % 5), fill=band)
        font = ImageFont.load_default()
        words, line, y = text.split(), "", 16
        for word in words:
            if len(line) + len(word) + 1 > 17:
                draw.text((3, y), line, fill="black", font=font)
                line, y = "", y + 11
                if y > IMAGE_SIZE[1] - 12:
                    break
            line = f"{line} {word}".strip()
        return img

    def digest(self, doc: Doc) -> str:
        return hashlib.sha256(f"dse-bench-serve:{self.seed}:{self.n_pages}:{doc.number}".encode()).hexdigest()

    def sources(self) -> Iterator[tuple[str, str, Iterator[Any]]]:
        """(path, digest, pages) for each document, as `dse.retrieve.indexing.index_pages` takes them."""
        for doc in self.docs:
            yield doc.path, self.digest(doc), self._pages(doc)

    def _pages(self, doc: Doc) -> Iterator[Any]:
        from ingest.page import Page, make_page_id

        digest = self.digest(doc)
        for n in range(1, doc.pages + 1):
            text = self.text(doc, n)
            yield Page(
                page_id=make_page_id(digest, n), source=doc.path, page=n, image=self.image(doc, n, text), text=text,
                source_digest=digest,
                metadata={"kind": "pdf", "file_name": doc.path.rsplit("/", 1)[-1], "dpi": 72,
                          "width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1], "num_pages": doc.pages},
            )

    def page_id(self, page: int) -> str:
        from ingest.page import make_page_id

        doc, n = self.locate(page)
        return make_page_id(self.digest(doc), n)

    # ---------------------------------------------------------------- queries
    def queries(self, count: int, offset: int = 0) -> list[tuple[str, int]]:
        """`count` distinct queries (text, target global page index); `offset` picks another set."""
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        i = offset
        while len(out) < count:
            rng = np.random.default_rng([self.seed, 7, i])
            i += 1
            target = int(rng.integers(self.n_pages))
            doc, n = self.locate(target)
            words = self.words(doc, n)
            m = int(rng.integers(3, 9))
            picked: list[int] = []
            for pos in rng.permutation(len(words)):
                if words[pos] not in picked:
                    picked.append(int(words[pos]))
                    if len(picked) == m:
                        break
            parts: list[str] = []
            for w in picked:
                parts.append(self.vocab[w])
                if rng.random() < 0.2:
                    parts.append(FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))])
            text = " ".join(parts[:-1] if parts[-1] in FUNCTION_WORDS else parts)
            if text not in seen:
                seen.add(text)
                out.append((text, target))
        return out

    def matching_pages(self, queries: list[tuple[str, int]]) -> list[int]:
        """For each query, how many pages hold at least one of its terms (BM25's candidates)."""
        stem_of = {self.tokenizer.tokenize(w)[0]: i for i, w in enumerate(self.vocab)}
        postings: list[set[int]] = [set() for _ in self.vocab]
        for doc in self.docs:
            for n in range(1, doc.pages + 1):
                for w in np.unique(self.words(doc, n)):
                    postings[w].add(doc.first_page + n - 1)
        counts = []
        for text, _ in queries:
            ids = {stem_of[t] for t in self.tokenizer.tokenize(text) if t in stem_of}
            counts.append(len(set().union(*(postings[i] for i in ids))) if ids else 0)
        return counts


def _make_vocab(size: int, tokenizer: Any, rng: np.random.Generator) -> list[str]:
    """`size` made-up words, each one token after the tokenizer, all tokens distinct."""
    words: list[str] = []
    stems: set[str] = set()
    while len(words) < size:
        syllables = int(rng.choice([1, 2, 3], p=[0.25, 0.5, 0.25]))
        word = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _NUCLEI[rng.integers(len(_NUCLEI))]
                       for _ in range(syllables)) + _CODAS[rng.integers(len(_CODAS))]
        if len(word) < 3 or word in FUNCTION_WORDS:
            continue
        tokens = tokenizer.tokenize(word)
        if len(tokens) == 1 and tokens[0] not in stems:
            stems.add(tokens[0])
            words.append(word)
    return words
