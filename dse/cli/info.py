"""`dse info` and `dse encoders`: describe an index, list the registry."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `info` and `encoders` subcommands."""
    p = sub.add_parser("info", help="describe an index")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the manifest and counts as JSON")
    p.add_argument("--sources", action="store_true", help="also list the indexed sources (path, pages, kind)")
    p.set_defaults(func=run)
    p = sub.add_parser("encoders", help="list the registered encoders")
    p.set_defaults(func=run_encoders)


def run(args: argparse.Namespace) -> int:
    """`dse info`: the manifest and counts."""
    from dse.backends import backend_name, open_backend

    with open_backend(args.index) as index:
        counts, reclaim = index.counts(), index.reclaimable()
        info = {**index.manifest.to_json(), "deleted_pages": counts.deleted_pages,
                "deleted_sources": counts.deleted_sources, "reclaimable_rows": reclaim.rows,
                "reclaimable_bytes": reclaim.bytes, "ocr": index.ocr_summary()}
        sources = index.sources() if args.sources else []
    info["backend"] = backend_name(args.index)
    if args.sources:
        info["source_list"] = sources
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    enc = info["encoder"]
    print(f"index      {args.index}")
    shape = {"single": f"one {enc['dim']}-d vector per page", "multi": f"{enc['dim']}-d vectors per patch",
             "text": "text tokens (BM25)"}.get(enc["kind"], enc["kind"])
    print(f"encoder    {enc['name']} ({shape})")
    qdrant = info["store"].get("qdrant")
    print(f"backend    {info['backend']}" + (f" (collection {qdrant['collection']!r} at {qdrant['location']})"
                                             if qdrant else " (vectors in the index directory)"))
    print(f"model      {enc['model']}" + (f" @ {enc['revision']}" if enc.get("revision") else ""))
    print(f"prompts    version {enc['prompt_version']}")
    print(f"pages      {info['pages']}")
    print(f"sources    {info['sources']}")
    print(f"deleted    {info['deleted_pages']} page(s), {info['deleted_sources']} source(s)")
    if reclaim.note:
        print(f"reclaim    {reclaim.note}")
    else:
        print(f"reclaim    {reclaim.rows} row(s), about {reclaim.bytes / 2**20:.1f} MiB of engine files"
              + (": run `dse compact`" if reclaim.rows or reclaim.bytes else ""))
    print(f"ocr        {ocr_line(info['ocr'])}")
    print(f"updated    {info['updated']}  (dse {info['dse_version']}, format {info['format_version']})")
    for src in sources:
        print(f"  {src['path']}  {src['pages']} page(s)  {src['kind']}  {src['digest'][:12]}  {src['added']}")
    return 0


def ocr_line(ocr: dict[str, Any]) -> str:
    """The OCR setting recorded and the live pages OCR read, in one line (`IndexBackend.ocr_summary`)."""
    pages = f"{ocr['pages']} live page(s) with text from OCR"
    if ocr["setting"] is None:
        return f"setting not recorded (indexed by an older dse, or without OCR); {pages}"
    line = f"{_setting(ocr['setting'])}; {pages}"
    if ocr["mixed"]:
        line += "; mixed: earlier adds used " + " / ".join(_setting(s) for s in ocr["earlier"])
    if ocr["unrecorded"]:
        line += "; pages added before the setting was recorded: setting unknown"
    return line


def _setting(s: dict[str, Any]) -> str:
    """One recorded OCR setting (`ingest.OcrOptions.record`), readable."""
    if s.get("mode") == "never":
        return "never"
    threshold = f", text layers under {s.get('min_text_chars')} letters and digits" if s.get("mode") == "auto" else ""
    missing = "" if s.get("tesseract", True) else ", tesseract not installed"
    return f"{s.get('mode')} ({s.get('language')}, {s.get('dpi')} dpi{threshold}{missing})"


def run_encoders(args: argparse.Namespace) -> int:
    """`dse encoders`: the registry."""
    from dse.encoders.registry import list_encoders

    for name, spec in list_encoders().items():
        print(f"{name:<16} {spec.description}")
    return 0
