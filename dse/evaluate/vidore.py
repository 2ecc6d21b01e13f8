"""ViDoRe loaders: v1 (QA format) and v2/v3 (BEIR format), from the hub or a local directory.

- **v1 (QA)**: one table with `query`, `image`, `image_filename` (and `text_description`). As
  in vidore-benchmark's `ViDoReEvaluatorQA`: every row's image is a corpus page named by its
  `image_filename` (rows sharing a file name are one page); queries are de-duplicated, `None`
  dropped, first occurrence first; each query's one relevant page is the `image_filename` of
  the *last* row holding that query.
- **v2/v3 (BEIR)**: three subsets `corpus` (`corpus-id`/`corpus_id`, `image`, `markdown`,
  `doc_id`), `queries` (`query-id`/`query_id`, `query`) and `qrels` (`query-id`, `corpus-id`,
  `score`: graded relevance).

Two quirks of vidore-benchmark are not copied: it fills a page's score with
`max(0, score)` for rows after the first (negative similarities then tie at 0), and its mteb
evaluator drops a page whose id equals the query's id (`ignore_identical_ids`), which v2's
integer ids can trigger. Scores here are the retriever's, ranked as trec_eval ranks them.

A local directory may hold what `save_to_disk` writes (a Dataset, or a DatasetDict of splits
or of the three subsets), what `to_parquet` writes (`x.parquet`, or `corpus.parquet`,
`queries.parquet`, `qrels.parquet`), or a hub snapshot (`data/test-*.parquet`, or
`corpus/test-*.parquet` ...). `datasets` is imported only here, when a dataset is loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from dse.evaluate.corpus import CorpusPage, DatasetLoadError, EvalDataset, PageCorpus
from dse.extras import require

BEIR_SUBSETS = ("corpus", "queries", "qrels")
TEXT_COLUMNS = ("markdown", "text_description", "text")  # page text, first present wins


def load_vidore(spec: str, *, split: str = "test", name: str | None = None) -> EvalDataset:
    """Load a ViDoRe dataset (v1 QA or v2/v3 BEIR, detected) from a hub id or a local path.

    Args:
        spec: A hub id such as `vidore/docvqa_test_subsampled`, or a local file or directory.
        split: The split to evaluate.
        name: Name shown in reports (default: the last part of `spec`).

    Raises:
        DatasetLoadError: It cannot be found or read, or lacks the columns of either format.
        MissingExtraError: The "vidore" extra (the `datasets` library) is not installed.
    """
    require(("datasets",), "loading a ViDoRe dataset")
    path = Path(spec).expanduser()
    name = name or path.name.removesuffix(".parquet") or spec
    tables = _local_tables(path, split) if path.exists() else _hub_tables(spec, split)
    if isinstance(tables, dict):
        return _from_beir(name, spec, tables)
    return _from_qa(name, spec, tables)


# ---------------------------------------------------------------- conversion
def _from_qa(name: str, spec: str, table: Any) -> EvalDataset:
    _require(table, ("query", "image", "image_filename"), f"{spec} (ViDoRe v1 QA format)")
    queries_col = list(table["query"])
    files = [str(f) for f in table["image_filename"]]
    last_file = {q: f for q, f in zip(queries_col, files) if q is not None}  # the last row wins
    texts = list(dict.fromkeys(q for q in queries_col if q is not None))  # de-duplicated, in order
    queries = {f"q{i}": text for i, text in enumerate(texts)}
    qrels = {qid: {last_file[text]: 1} for qid, text in queries.items()}
    first_row: dict[str, int] = {}  # file name -> its first row
    for row, f in enumerate(files):
        first_row.setdefault(f, row)
    corpus = _page_corpus(spec, table, list(first_row.values()), list(first_row), None)
    return EvalDataset(name, queries, qrels, corpus, source=spec)


def _from_beir(name: str, spec: str, tables: dict[str, Any]) -> EvalDataset:
    corpus_t, queries_t, qrels_t = (tables[s] for s in BEIR_SUBSETS)
    _require(corpus_t, ("corpus_id", "image"), f"{spec} corpus")
    _require(queries_t, ("query_id", "query"), f"{spec} queries")
    _require(qrels_t, ("query_id", "corpus_id", "score"), f"{spec} qrels")
    queries = {str(q): str(t) for q, t in zip(queries_t["query_id"], queries_t["query"])}
    qrels: dict[str, dict[str, int]] = {}
    for q, c, s in zip(qrels_t["query_id"], qrels_t["corpus_id"], qrels_t["score"]):
        qrels.setdefault(str(q), {})[str(c)] = int(s)
    doc_col = "doc_id" if "doc_id" in corpus_t.column_names else None
    ids = [str(c) for c in corpus_t["corpus_id"]]
    corpus = _page_corpus(spec, corpus_t, list(range(len(ids))), ids, doc_col)
    return EvalDataset(name, queries, qrels, corpus, source=spec)


def _page_corpus(spec: str, table: Any, rows: list[int], ids: list[str], doc_col: str | None) -> PageCorpus:
    text_col = next((c for c in TEXT_COLUMNS if c in table.column_names), None)
    columns = [c for c in ("image", text_col, doc_col) if c]

    def pages() -> Iterator[CorpusPage]:
        subset = table.select_columns(columns).select(rows)
        for doc_id, rec in zip(ids, subset):
            text = str(rec.get(text_col) or "") if text_col else ""
            document = str(rec.get(doc_col) or "") if doc_col else ""
            yield CorpusPage(doc_id, rec["image"], text, document)

    fingerprint = hashlib.sha256("\n".join([spec, *ids]).encode()).hexdigest()
    return PageCorpus(len(ids), pages, fingerprint)


def _require(table: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DatasetLoadError(f"{what}: missing columns {missing}; it has {table.column_names}")


def _normalise(table: Any) -> Any:
    """Column names with '-' read as '_' (v2's `corpus-id` is v3's `corpus_id`)."""
    renames = {c: c.replace("-", "_") for c in table.column_names if "-" in c}
    return table.rename_columns(renames) if renames else table


# ---------------------------------------------------------------- hub
def _hub_tables(spec: str, split: str) -> Any:
    import datasets

    try:
        configs = set(datasets.get_dataset_config_names(spec))
        if set(BEIR_SUBSETS) <= configs:
            return {s: _normalise(datasets.load_dataset(spec, s, split=split)) for s in BEIR_SUBSETS}
        return _normalise(datasets.load_dataset(spec, split=split))
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, missing split: one clear message
        raise DatasetLoadError(
            f"{spec}: not a local path, and loading it from the Hugging Face Hub failed "
            f"({type(exc).__name__}: {exc}). Offline? Download it where you have a connection "
            f"(huggingface-cli download --repo-type dataset {spec} --local-dir DIR) and pass DIR."
        ) from exc


# ---------------------------------------------------------------- local
def _local_tables(path: Path, split: str) -> Any:
    """A QA table, or {subset: table} for the BEIR format, from a local file or directory."""
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if set(BEIR_SUBSETS) <= set(loaded):
            return {s: _normalise(_pick_split(loaded[s], split, path / s)) for s in BEIR_SUBSETS}
        return _normalise(_pick_split(loaded, split, path))
    if path.is_dir() and not (path / "state.json").is_file():
        found = {s: _find_subset(path, s) for s in BEIR_SUBSETS}
        if all(found.values()):
            return {s: _normalise(_open(p, split)) for s, p in found.items()}
        if any(found.values()):
            missing = [s for s, p in found.items() if p is None]
            raise DatasetLoadError(f"{path}: BEIR format needs corpus, queries and qrels; missing {missing}")
    return _normalise(_open(path, split))


def _find_subset(path: Path, subset: str) -> Path | list[Path] | None:
    """Where a BEIR subset lives: a directory or file named after it, or `subset-*.parquet` shards."""
    for candidate in (path / subset, path / f"{subset}.parquet", path / f"{subset}.arrow"):
        if candidate.exists():
            return candidate
    return sorted(path.glob(f"{subset}-*.parquet")) or sorted(path.glob(f"data/{subset}-*.parquet")) or None


def _open(path: Path | list[Path], split: str) -> Any:
    """One table from parquet shards, a parquet/arrow file, a `save_to_disk` directory or a folder."""
    import datasets

    if isinstance(path, list):
        return _read(datasets.Dataset.from_parquet, path, path[0].parent)
    try:
        if path.is_file() and path.suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(path))
        if path.is_file() and path.suffix == ".arrow":
            return datasets.Dataset.from_file(str(path))
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _pick_split(datasets.load_from_disk(str(path)), split, path)
    except DatasetLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign files: name them
        raise DatasetLoadError(f"{path}: cannot read: {type(exc).__name__}: {exc}") from exc
    if not path.is_dir():
        raise DatasetLoadError(f"{path}: not a parquet or arrow file, nor a dataset directory")
    for ext, reader in (("parquet", datasets.Dataset.from_parquet), ("arrow", _from_arrow_files)):
        shards = _split_shards(sorted(path.rglob(f"*.{ext}")), split, path)
        if shards:
            return _read(reader, shards, path)
    raise DatasetLoadError(f"{path}: no dataset here (no parquet or arrow files, no save_to_disk output)")


def _read(reader: Any, files: list[Path], where: Path) -> Any:
    try:
        return reader([str(p) for p in files])
    except Exception as exc:  # noqa: BLE001
        raise DatasetLoadError(f"{where}: cannot read {files[0].name}...: {type(exc).__name__}: {exc}") from exc


def _split_shards(shards: list[Path], split: str, root: Path) -> list[Path]:
    """The shards of `split` when the names tell splits apart (`test-00000-of-00001.parquet`)."""
    mine = [p for p in shards if p.name.split("-")[0].split(".")[0] == split or split in p.relative_to(root).parts[:-1]]
    return mine or shards


def _from_arrow_files(files: list[str]) -> Any:
    import datasets

    return datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])


def _pick_split(loaded: Any, split: str, path: Path) -> Any:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split in loaded:
        return loaded[split]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise DatasetLoadError(f"{path}: no split {split!r}; it has {sorted(loaded)}")
