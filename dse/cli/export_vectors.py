"""`dse export-vectors`: a multi-vector index's page tokens (and encoded queries) as one .npz.

The file is what `python bench/late.py --corpus FILE` benchmarks, so anyone with real
embeddings checks the engines on their own data:

- ``page_tokens`` float16 (T, dim) and ``page_offsets`` int64 (pages + 1,): the live pages in
  commit order (deleted pages left out; any backend: `IndexBackend.live_pages` / `page_vectors`), ``page_ids`` and ``doc_starts`` (first exported page of
  each source: pages of a source are consecutive);
- with ``--queries FILE`` (one query a line; ``query<TAB>page_id`` names the page it was
  written for): ``query_tokens`` float32 (Tq, dim), ``query_offsets`` (queries + 1,) encoded
  with the index's own encoder, and ``targets`` (exported page of each query, -1: none).
"""

from __future__ import annotations

import argparse
import os
import sys

from dse.cli.common import CLIError

EXPORT_BATCH = 256  # pages whose vectors are read per request


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `export-vectors` subcommand."""
    p = sub.add_parser("export-vectors", help="write a multi-vector index's page (and query) tokens to an .npz")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--queries", metavar="FILE", help="queries to encode, one a line (query<TAB>page_id: its target)")
    p.add_argument("--limit", type=int, default=0, help="export at most this many pages (0: all)")
    p.set_defaults(func=run)


def _read_queries(path: str) -> tuple[list[str], list[str | None]]:
    texts, targets = [], []
    with open(os.path.expanduser(path), encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            text, _, target = line.partition("\t")
            texts.append(text)
            targets.append(target.strip() or None)
    if not texts:
        raise CLIError(f"{path}: no queries")
    return texts, targets


def run(args: argparse.Namespace) -> int:
    """`dse export-vectors`."""
    import numpy as np

    from dse.retrieve.retriever import Retriever

    with Retriever.open(os.path.expanduser(args.index)) as r:
        if r.index.manifest.encoder.get("kind") != "multi":
            raise CLIError(f"{args.index} is not a multi-vector index (export-vectors reads page token matrices)")
        records = r.index.live_pages()[: args.limit or None]  # any backend: the IndexBackend interface
        tokens, offsets, doc_starts, last, dim = [], [0], [], None, int(r.index.manifest.encoder.get("dim") or 0)
        for start in range(0, len(records), EXPORT_BATCH):
            batch = records[start : start + EXPORT_BATCH]
            for i, (rec, t) in enumerate(zip(batch, r.index.page_vectors([x.page_id for x in batch])), start=start):
                tokens.append(np.asarray(t).astype(np.float16))  # (tokens, dim)
                offsets.append(offsets[-1] + len(t))
                dim = int(t.shape[1])
                if rec.source != last:
                    doc_starts.append(i)
                    last = rec.source
        out = {"page_tokens": np.concatenate(tokens) if tokens else np.zeros((0, dim), np.float16),
               "page_offsets": np.asarray(offsets, np.int64), "page_ids": np.asarray([rec.page_id for rec in records]),
               "doc_starts": np.asarray(doc_starts + [len(records)], np.int64)}
        if args.queries:
            texts, targets = _read_queries(args.queries)
            encoded = r.encode_queries(texts)  # list of (tokens, dim)
            where = {rec.page_id: i for i, rec in enumerate(records)}
            out["query_tokens"] = np.concatenate([np.asarray(q, np.float32) for q in encoded])
            out["query_offsets"] = np.concatenate([[0], np.cumsum([len(q) for q in encoded])]).astype(np.int64)
            out["targets"] = np.asarray([where.get(t, -1) if t else -1 for t in targets], np.int64)
            out["query_texts"] = np.asarray(texts)
    np.savez(os.path.expanduser(args.out), **out)
    n_q = len(out.get("query_offsets", [0])) - 1
    print(f"wrote {len(records)} page(s) ({len(out['page_tokens'])} tokens, dim {dim}) and {n_q} query(ies) "
          f"to {args.out}", file=sys.stderr)
    return 0
