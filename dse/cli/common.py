"""Helpers shared by the `dse` subcommands."""

from __future__ import annotations

import argparse
from typing import Any

RUNTIME_OPTIONS = ("device", "batch_size", "dtype", "trust_remote_code", "truncate_queries")  # options that do not change the vectors


class CLIError(Exception):
    """A user error: printed as `dse: error: ...`, exit status 2."""


def runtime_flags(p: argparse.ArgumentParser) -> None:
    """Add --device, --batch-size, --dtype and --trust-remote-code."""
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="encoder batch size")
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16", "int8"],
                   help="encoder precision (default auto: bfloat16 on cuda, else float32); int8: dynamic int8 "
                        "linear layers on the CPU, faster queries (vectors close to float32's)")
    p.add_argument("--trust-remote-code", action="store_const", const=True, default=None,
                   help="allow a checkpoint that ships its own Python code to run it (jina-v4); never the default")
    p.add_argument("--truncate-queries", action="store_const", const=True, default=None,
                   help="cut a query longer than the encoder reads to its limit (logged as a warning) instead of "
                        "failing (dse-qwen2, gme-qwen2, qwen3-vl-embedding, the colpali families)")


def index_model_flags(p: argparse.ArgumentParser) -> None:
    """Add --model and --allow-index-model: which weights open an existing index."""
    p.add_argument("--model", metavar="ID_OR_DIR",
                   help="the weights the index was built with (hub id or local directory, at any path); "
                        "confirms a model the index names")
    p.add_argument("--allow-index-model", action="store_true",
                   help="load the hub model the index's manifest names without naming it (an index from "
                        "elsewhere: dse otherwise asks first)")


def open_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Retriever.open` options from the command line: runtime options, --model, --allow-index-model."""
    options = runtime(args)
    if getattr(args, "model", None):
        options["model"] = args.model
    if getattr(args, "allow_index_model", False):
        options["allow_index_model"] = True
    return options


def runtime(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime encoder options given on the command line."""
    return {k: getattr(args, k) for k in RUNTIME_OPTIONS if getattr(args, k, None) is not None}


def rewrite_flags(p: Any, repeatable: bool = False) -> None:
    """Add --rewrite NAME (repeatable for `dse serve`), --rewrite-model, --rewrite-url and --rewrite-option."""
    what = "offer this query rewriter (repeatable)" if repeatable else "rewrite each query first"
    p.add_argument("--rewrite", metavar="NAME", action="append" if repeatable else "store",
                   default=[] if repeatable else None,
                   help=f"{what}: prf (RM3 pseudo-relevance feedback over the index's BM25) or llm (BRIGHT's "
                        "reasoning rewrite by --rewrite-model, local or at --rewrite-url)")
    p.add_argument("--rewrite-model", metavar="DIR_OR_NAME",
                   help="llm: the local causal LM's directory, or with --rewrite-url the model name the endpoint "
                        "serves (no default: nothing is downloaded)")
    p.add_argument("--rewrite-url", metavar="URL",
                   help="llm: an OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1 (the key from "
                        "$OPENAI_API_KEY, or the variable --rewrite-option api_key_env=NAME names)")
    p.add_argument("--rewrite-option", metavar="KEY=VALUE", action="append", default=[],
                   help="a rewriter option, repeatable: max_new_tokens=256, include_query=true, cache=false, "
                        "timeout=60 (llm); fb_docs=5, fb_terms=20 (prf)")


def rewrite_options(args: argparse.Namespace) -> dict[str, Any]:
    """The rewriter options of the command line (--rewrite-model, --rewrite-url, --rewrite-option)."""
    options: dict[str, Any] = {}
    for item in args.rewrite_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CLIError(f"--rewrite-option {item!r}: write KEY=VALUE, e.g. max_new_tokens=256")
        options[key.strip()] = _option_value(value.strip())
    if args.rewrite_model:
        options["model"] = args.rewrite_model
    if args.rewrite_url:
        options["url"] = args.rewrite_url
    return options


def load_rewrites(args: argparse.Namespace) -> dict[str, Any]:
    """The rewriters the command line names, built with its options ({} when none is named)."""
    from dse.rewrite import RewriteError, load_rewriters

    names = args.rewrite if isinstance(args.rewrite, list) else [args.rewrite] if args.rewrite else []
    options = rewrite_options(args)
    if options and not names:
        raise CLIError("--rewrite-model, --rewrite-url and --rewrite-option need --rewrite NAME")
    try:
        return load_rewriters(names, options)
    except (ValueError, TypeError, RewriteError) as exc:
        raise CLIError(f"--rewrite {' '.join(names)}: {exc}") from exc


def _option_value(text: str) -> Any:
    """true/false/none, an int, a float, else the text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
