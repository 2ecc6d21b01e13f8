"""TREC-format files: qrels (`qid iter docid grade`) and runs (`qid Q0 docid rank score tag`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from dse.evaluate.metrics import Qrels, Run, trec_ranking


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a TREC qrels file: one `query_id iteration doc_id grade` per line.

    Raises:
        ValueError: A line is malformed (the message names the file and line).
    """
    qrels: dict[str, dict[str, int]] = {}
    for _, qid, doc, grade in _rows(path, "qid iter docid grade", 3, int):
        qrels.setdefault(qid, {})[doc] = grade
    return qrels


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run file: one `query_id Q0 doc_id rank score tag` per line (rank is ignored).

    Raises:
        ValueError: A line is malformed or a document appears twice for a query.
    """
    run: dict[str, dict[str, float]] = {}
    for lineno, qid, doc, score in _rows(path, "qid Q0 docid rank score tag", 4, float):
        docs = run.setdefault(qid, {})
        if doc in docs:
            raise ValueError(f"{path}:{lineno}: document {doc!r} appears twice for query {qid!r}")
        docs[doc] = score
    return run


def _rows(path: str | Path, layout: str, column: int, cast: Callable[[str], Any]) -> Iterator[tuple[int, str, str, Any]]:
    """(line number, query id, doc id, value of `column`) of each non-blank line of a TREC file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read: {exc}") from exc
    names = layout.split()
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names):
            raise ValueError(f"{path}:{lineno}: lines have {len(names)} fields ({layout}), got {len(fields)}")
        try:
            value = cast(fields[column])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: {names[column]} {fields[column]!r} is not a {cast.__name__}") from None
        yield lineno, fields[0], fields[2], value


def write_run(path: str | Path, run: Run, tag: str = "dse") -> None:
    """Write a run in TREC format, each query's documents in trec_eval's order."""
    with open(path, "w", encoding="utf-8") as fh:
        for qid, scores in run.items():
            for rank, doc in enumerate(trec_ranking(scores), 1):
                fh.write(f"{qid} Q0 {doc} {rank} {float(scores[doc])!r} {tag}\n")


def write_qrels(path: str | Path, qrels: Qrels) -> None:
    """Write qrels in TREC format."""
    with open(path, "w", encoding="utf-8") as fh:
        for qid, grades in qrels.items():
            for doc, grade in grades.items():
                fh.write(f"{qid} 0 {doc} {int(grade)}\n")
