"""Local page-labelled test sets: a folder of documents plus a questions file.

Layout (as in ../shared/data/mmlongbench-dev)::

    my-set/
      pdfs/                 the documents (PDFs, images; any folder `dse index` takes);
                            without a pdfs/ folder, the documents sit beside the questions file
      questions.jsonl       one JSON object per line

Each question has `question` (or `query`), `doc_id` (or `source`: the document's path
relative to the documents folder) and `evidence_pages` (or `pages`: the 1-based numbers of
the pages that answer it); `query_id` is optional (default: `q<line number>`). Other fields are
ignored. A page's doc id is `<document>#<page>`, e.g. `report.pdf#12`.

Halves (`half="a"` or `"b"`, CLI `dse eval --half`): the questions about one half of the
documents, chosen by the document's file name alone (`document_half`: the first byte of
sha1(name) even -> "a"), so the halves never share a document and are the same everywhere. Tune
on one half, report the other. The corpus stays whole: every document's pages are ranked, the
other half's as distractors (the harder setting, and the one the whole set's figures use), and
both halves search the same index.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dse.evaluate.corpus import DatasetLoadError, EvalDataset, FileCorpus, relative_name

QUESTION_FILES = ("questions.jsonl", "questions.json")


def load_local(
    folder: str | Path, *, questions: str | Path | None = None, documents: str | Path | None = None,
    half: str | None = None,
) -> EvalDataset:
    """Load a local test set.

    Args:
        folder: The set's folder.
        questions: The questions file (default: `questions.jsonl` or `questions.json` in `folder`).
        documents: The documents folder (default: `folder/pdfs` if it exists, else `folder`).
        half: "a" or "b": keep only the questions about that half's documents (`document_half`,
            a hash of the document's name), over the whole corpus; None keeps every question.

    Raises:
        DatasetLoadError: A file is missing, a question is malformed or names a document
            that is not there (the message names the question).
    """
    import ingest

    folder = Path(folder).expanduser()
    qfile = Path(questions) if questions else next((folder / n for n in QUESTION_FILES if (folder / n).is_file()), None)
    if qfile is None or not qfile.is_file():
        raise DatasetLoadError(f"{folder}: no questions file ({' or '.join(QUESTION_FILES)})")
    root = Path(documents) if documents else (folder / "pdfs" if (folder / "pdfs").is_dir() else folder)
    if not root.is_dir():
        raise DatasetLoadError(f"{root}: documents folder not found")
    if half not in (None, "a", "b"):
        raise DatasetLoadError(f"half must be 'a' or 'b', got {half!r}")
    files = sorted(relative_name(p, root) for p in ingest.discover([root]))
    corpus = FileCorpus(root, tuple(files))
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    query_documents: dict[str, str] = {}
    known = set(files)
    for where, record in _records(qfile):
        qid, text, doc, pages = _parse(where, record)
        if qid in queries:
            raise DatasetLoadError(f"{where}: query_id {qid!r} appears twice")
        if doc not in known:
            raise DatasetLoadError(f"{where}: document {doc!r} is not in {root}")
        if half is not None and document_half(doc) != half:
            continue
        queries[qid] = text
        qrels[qid] = {corpus.doc_id(str(root / doc), page): 1 for page in pages}
        query_documents[qid] = doc
    name = folder.name if half is None else f"{folder.name}[{half}]"
    if half is not None and not queries:
        raise DatasetLoadError(f"{qfile}: no question about a document of half {half!r}")
    return EvalDataset(name, queries, qrels, corpus, query_documents, source=str(folder), corpus_name=folder.name)


def document_half(doc: str) -> str:
    """The half ("a" or "b") a document belongs to: the first byte of sha1(name) even -> "a"."""
    return "a" if hashlib.sha1(doc.encode("utf-8")).digest()[0] % 2 == 0 else "b"


def _records(path: Path) -> list[tuple[str, Any]]:
    """(location, record) pairs of a JSON-lines file or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetLoadError(f"{path}: cannot read: {exc}") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise DatasetLoadError(f"{path}: expected a JSON list of questions")
            return [(f"{path}[{i}]", rec) for i, rec in enumerate(data)]
        return [(f"{path}:{n}", json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    except json.JSONDecodeError as exc:
        raise DatasetLoadError(f"{path}: invalid JSON: {exc}") from exc


def _parse(where: str, record: Any) -> tuple[str, str, str, list[int]]:
    """(query id, text, document, pages) of one question record."""
    if not isinstance(record, dict):
        raise DatasetLoadError(f"{where}: a question must be a JSON object")
    line = where.rsplit(":", 1)[-1].strip("[]")
    qid = str(record.get("query_id", f"q{line}"))
    text = record.get("question", record.get("query"))
    doc = record.get("doc_id", record.get("source"))
    pages = record.get("evidence_pages", record.get("pages"))
    if not isinstance(text, str) or not text.strip():
        raise DatasetLoadError(f"{where}: missing 'question'")
    if not isinstance(doc, str) or not doc:
        raise DatasetLoadError(f"{where}: missing 'doc_id' (the document's file name)")
    if not isinstance(pages, list) or not pages or not all(isinstance(p, int) and p >= 1 for p in pages):
        raise DatasetLoadError(f"{where}: 'evidence_pages' must be a non-empty list of 1-based page numbers")
    return qid, text, doc, sorted(set(pages))
