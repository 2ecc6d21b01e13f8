"""`dse export`: copy an embedded index into Qdrant without re-encoding (a new, Qdrant-backed index directory).

The pages' vectors are read from the embedded engines (multi-vector page tokens, single
vectors); BM25 terms are tokenized again from the stored text layers (no model runs); stored
page images are copied. The embedded index is only read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from dse.cli.common import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand."""
    p = sub.add_parser("export", help="copy an embedded index into Qdrant (no re-encoding)")
    p.add_argument("--index", required=True, metavar="DIR", help="the embedded index to read")
    p.add_argument("--qdrant", required=True, metavar="URL_OR_PATH",
                   help="http(s)://host:6333 (API key from QDRANT_API_KEY), a local-mode folder or edge:FOLDER")
    p.add_argument("--out", required=True, metavar="DIR", help="the new, Qdrant-backed index directory")
    p.add_argument("--collection", metavar="NAME", help="collection name (default: the new directory's name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse export`."""
    from dse.backends import backend_name, backend_class, open_backend

    directory = os.path.expanduser(args.index)
    if backend_name(directory) != "directory":
        raise CLIError(f"{args.index}: already a {backend_name(directory)} index; export reads an embedded one")
    options: dict[str, Any] = {"qdrant": args.qdrant}
    if args.collection:
        options["collection"] = args.collection
    with open_backend(directory, read_only=True) as src:
        size = int(src.manifest.store.get("image_size", 768))
        with backend_class("qdrant").create(os.path.expanduser(args.out), src.manifest.encoder, options,
                                            image_size=size) as dst:
            pages = copy_pages(src, dst)
    print(f"exported {pages} page(s) of {args.index} to {args.out} (Qdrant at {args.qdrant})", file=sys.stderr)
    return 0


def copy_pages(src: Any, dst: Any) -> int:
    """Add every live source of `src` (a `PageIndex`) to `dst` with its stored vectors and images."""
    from dse.backends import NewPage, NewSource
    from dse.text.fields import bm25_text

    kind, total = src.manifest.kind, 0
    for source in src.sources():
        records = sorted(src.catalogue.live_pages(paths=[source["path"]]), key=lambda r: r.row)
        if kind in ("multi", "single"):  # resolved in one generation (a compaction may run meanwhile)
            vectors: Any = src.page_vectors([r.page_id for r in records])  # (tokens, dim) or (dim,) each
        else:
            vectors = src.tokenize([bm25_text(r.text, source["path"], src.source_name_weight) for r in records])
        for r in records:
            if r.image:
                shutil.copyfile(src.directory / r.image, dst.directory / r.image)
        pages = tuple(NewPage(r.page_id, r.page, r.text, r.image, dict(r.metadata)) for r in records)
        dst.add_sources([NewSource(source["path"], source["digest"], source["kind"], pages)], [vectors])
        total += len(records)
    return total
