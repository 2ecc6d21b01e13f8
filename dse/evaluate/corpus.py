"""What an evaluation runs on: queries, graded relevance judgements and a corpus of pages.

The corpus is either files on disk (`FileCorpus`: PDFs and images, indexed like any folder) or
pages held by a dataset (`PageCorpus`: images with optional text, streamed from a Hugging Face
dataset). Every page has a doc id, the name the qrels use for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Union


class DatasetLoadError(ValueError):
    """A dataset could not be found or read (the message names it and says why)."""


@dataclass(frozen=True)
class CorpusPage:
    """One page of a dataset's corpus.

    Attributes:
        doc_id: The id the qrels use for this page.
        image: The page image (PIL).
        text: Its text (OCR or markdown) when the dataset has one; BM25 searches it.
        document: The document the page belongs to ("" when unknown).
    """

    doc_id: str
    image: Any = field(repr=False)
    text: str = field(default="", repr=False)
    document: str = ""


@dataclass(frozen=True)
class PageCorpus:
    """Pages held by a dataset, streamed on demand.

    Attributes:
        size: Number of pages.
        pages: Returns a fresh iterator over the pages, in order.
        fingerprint: Identifies the content (index sources are keyed by it, so re-running on an
            existing index directory skips what is already there).
    """

    size: int
    pages: Callable[[], Iterator[CorpusPage]] = field(repr=False)
    fingerprint: str = ""


@dataclass(frozen=True)
class FileCorpus:
    """Files under a root folder; a page's doc id is `relative/path#page` (1-based page).

    Attributes:
        root: The folder.
        files: Paths of the files, relative to `root`.
    """

    root: Path
    files: tuple[str, ...]

    def doc_id(self, source: str, page: int) -> str:
        """The doc id of page `page` of the file `source` (absolute or relative to `root`)."""
        return f"{self.document(source)}#{page}"

    def document(self, source: str) -> str:
        """The path of `source` relative to the root (its document name)."""
        return relative_name(Path(source), self.root)


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to `root` (symbolic links followed or not, whichever relates them), else its name."""
    for p, r in ((path.resolve(), root.resolve()), (Path(os.path.abspath(path)), Path(os.path.abspath(root)))):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return path.name


Corpus = Union[PageCorpus, FileCorpus]


@dataclass(frozen=True)
class EvalDataset:
    """A page-retrieval test set.

    Attributes:
        name: Short name shown in reports.
        queries: {query id: query text}, in order.
        qrels: {query id: {doc id: grade}}; grade >= 1 is relevant.
        corpus: The pages to index.
        query_documents: {query id: document} for sets whose questions are each about one
            document; enables the within-document scope.
        source: Where it was loaded from (hub id or path).
        corpus_name: Name of the corpus, which keys its kept index (`evaluate(index_dir=...)`);
            "" means `name`. The halves of a local set share the whole set's corpus and index.
    """

    name: str
    queries: Mapping[str, str] = field(repr=False)
    qrels: Mapping[str, Mapping[str, int]] = field(repr=False)
    corpus: Corpus = field(repr=False)
    query_documents: Mapping[str, str] = field(default_factory=dict, repr=False)
    source: str = ""
    corpus_name: str = ""

    def __post_init__(self) -> None:
        missing = [q for q in self.qrels if q not in self.queries]
        if missing:
            raise DatasetLoadError(f"{self.name}: qrels name queries that do not exist: {missing[:5]}")
        if not self.queries:
            raise DatasetLoadError(f"{self.name}: no queries")

    def describe(self) -> dict[str, Any]:
        """Name, source and sizes, for reports."""
        size = self.corpus.size if isinstance(self.corpus, PageCorpus) else len(self.corpus.files)
        unit = "pages" if isinstance(self.corpus, PageCorpus) else "files"
        return {"name": self.name, "source": self.source, "queries": len(self.queries), unit: size}
