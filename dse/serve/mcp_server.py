"""`dse mcp`: an index's search as MCP tools over stdio (the official `mcp` SDK).

Two tools over one `Retriever`:

- `search_pages(query, k=5, mode=None, where=None, rewrite=None)`: the ranking of
  `Retriever.search`, as structured content (`SearchResults`) plus a readable text block;
  `rewrite` names one of the rewriters the server offers (`dse mcp --rewrite NAME`), as the
  `"rewrite"` field of `dse serve`'s `/v1/search`: the query is rewritten first, the snippets
  highlight the query's own terms.
- `get_page_image(page_id)`: the stored page image, as PNG image content.

A bad argument, filter or page id comes back as a tool error (`is_error`) with a message the
caller can act on; the server keeps running. stdout carries the protocol only: logs go to stderr.

Run: `dse mcp --index DIR` or `python -m dse.cli.mcp --index DIR` (`dse.cli.mcp`: the flags).
"""

# no `from __future__ import annotations`: the SDK reads the tools' signatures at registration

import contextlib
import io
import sys
import threading
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Annotated, Iterator, Literal

from pydantic import BaseModel, Field

try:  # mcp 2.x
    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x: the same API under its old name
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]
    from mcp.server.fastmcp import Image  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from dse.retrieve.retriever import Retriever
from dse.rewrite.summary import summarize
from dse.serve.schemas import RewrittenOut
from dse.serve.snippets import Snippet
from dse.serve.snippets.sources import SnippetTexts

from ingest.page import PAGE_ID_RE  # noqa: E402 - after the SDK's imports
MAX_K = 100
MAX_QUERY_CHARS = 2000
SNIPPET_CHARS = 200


class PageHit(BaseModel):
    """One page found: where it is, how it scored, and a piece of its text."""

    page_id: str = Field(description="stable page id; pass it to get_page_image")
    source: str = Field(description="path of the source file, as indexed")
    source_name: str = Field(description="file name of the source")
    page: int = Field(description="1-based page number within the source")
    score: float = Field(description="similarity or BM25 score (higher is better)")
    rank: int = Field(description="1-based rank")
    snippet: str = Field(description="about 200 characters of the page's text around the query's terms")
    highlights: list[tuple[int, int]] = Field(
        default_factory=list, description="[start, end) offsets in snippet of the words matching a query term")
    metadata: dict[str, Any] = Field(default_factory=dict, description="facts recorded at ingest (kind, ...)")


class SearchResults(BaseModel):
    """The pages found for one query, best first."""

    query: str
    mode: str = Field(description="visual, text or hybrid: the ranking used")
    hits: list[PageHit]
    rewrite: dict[str, Any] | None = Field(
        None, description="with rewrite: the rewriter and the text searched ({'rewriter', 'text', ...})")
    rewritten: RewrittenOut | None = Field(
        None, description="with rewrite: what was searched, readable ({'text', 'terms': [{'term', 'weight', "
                          "'original', 'token'}], 'rewriter'}: the query's own terms first)")


def build_server(retriever: Retriever, name: str = "dse", rewriters: Mapping[str, Any] | None = None) -> MCPServer:
    """The MCP server offering `search_pages` and `get_page_image` over `retriever`.

    Calls are serialised on one lock (the retriever is shared) and each first picks up pages that
    another process (e.g. `dse index`) committed since the last call.

    Args:
        retriever: The index to search.
        name: The server's name in the protocol.
        rewriters: Query rewriters offered to `search_pages(rewrite=NAME)`, by name
            (`dse.rewrite.load_rewriters`).
    """
    offered = dict(rewriters or {})
    lock = threading.Lock()
    snippets = SnippetTexts(retriever.index).cache(width=SNIPPET_CHARS)  # kept for the pages shown most
    built = retriever.index.manifest.encoder
    text_only = built.get("kind") == "text"
    modes = "text" if text_only else "visual, text or hybrid"
    instructions = (
        f"Searches the {len(retriever)} pages of the document index {retriever.index.directory} "
        f"(encoder {built.get('name')}; modes: {modes}). Call search_pages with a question, then "
        "get_page_image with a hit's page_id to look at the page itself."
        + (f" search_pages can rewrite the query first: rewrite={' or '.join(sorted(offered))}." if offered else "")
    )
    server = MCPServer(name, instructions=instructions)

    @contextlib.contextmanager
    def using() -> Iterator[Retriever]:
        """The retriever, refreshed, for one call; anticipated failures become tool errors."""
        with lock, contextlib.redirect_stdout(sys.stderr):
            try:
                retriever.refresh()
                yield retriever
            except ToolError:
                raise
            except Exception as exc:  # noqa: BLE001 - only user errors are re-raised as tool errors
                if is_user_error(exc):
                    raise ToolError(error_message(exc)) from exc
                raise

    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    @server.tool(title="Search pages", annotations=read_only)
    def search_pages(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the question or keywords")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="number of pages to return")] = 5,
        mode: Annotated[
            Literal["visual", "text", "hybrid"] | None,
            Field(description="visual (page images), text (BM25 over the text layer) or hybrid; "
                              "default: the index's own"),
        ] = None,
        where: Annotated[
            dict[str, Any] | None,
            Field(description='metadata filter, all conditions must hold, e.g. {"kind": "pdf"}, '
                              '{"page": {"gte": 2}}, {"source": {"glob": "*/reports/*"}}; operators: eq ne in '
                              'not_in gt gte lt lte glob'),
        ] = None,
        rewrite: Annotated[
            str | None,
            Field(description="rewrite the query before searching, with one of the rewriters this server offers "
                              f"({', '.join(sorted(offered)) or 'none: start it with dse mcp --rewrite NAME'}); "
                              "default: no rewrite"),
        ] = None,
    ) -> Annotated[CallToolResult, SearchResults]:
        """Find the pages of the indexed documents that best answer a query, best first."""
        if not query.strip():
            raise ToolError("query is empty: give a question or keywords")
        with using() as r:
            done = _rewritten(r, offered, rewrite, query, where)
            hits = r.search(done.text if done is not None else query, k, mode=mode, where=where)
            chosen = mode or ("text" if text_only else "visual")
            found = [sn or Snippet("", ()) for sn in snippets.many([h.page_id for h in hits], query)]  # gone: none
            about = {k: v for k, v in done.to_json().items() if k != "identity"} if done is not None else None
            readable = RewrittenOut(**summarize(done).to_json()) if done is not None else None
            results = SearchResults(query=query, mode=chosen, rewrite=about, rewritten=readable, hits=[
                PageHit(page_id=h.page_id, source=h.source, source_name=Path(h.source).name, page=h.page,
                        score=float(h.score), rank=h.rank, snippet=sn.text, highlights=list(sn.highlights),
                        metadata=dict(h.metadata))
                for h, sn in zip(hits, found)
            ])
        return CallToolResult(content=[TextContent(type="text", text=_as_text(results))],
                              structuredContent=results.model_dump(mode="json"))

    @server.tool(title="Get page image", annotations=read_only)
    def get_page_image(
        page_id: Annotated[str, Field(description="a page id from search_pages, e.g. 3f2a9c0d1e2b4a5c-p00007")],
    ) -> Image:
        """The image of one indexed page (PNG), to read the page itself."""
        if not PAGE_ID_RE.fullmatch(page_id):
            raise ToolError(f"{page_id!r} is not a page id: page ids look like 3f2a9c0d1e2b4a5c-p00007 "
                            "(16 hex digits, '-p', the page number); take one from search_pages")
        with using() as r:
            try:
                image = r.page_image(page_id)
            except KeyError as exc:
                raise ToolError(f"no page {page_id!r} in this index (deleted, or from another index); "
                                "search_pages returns the ids it holds") from exc
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return Image(data=buf.getvalue(), format="png")

    return server


def is_user_error(exc: Exception) -> bool:
    """Errors the caller can fix (bad mode, filter, page, index) rather than bugs."""
    from dse.encoders.hub import ModelLoadError
    from dse.extras import MissingExtraError
    from dse.storage.manifest import EncoderMismatchError, IndexFormatError
    from dse.storage.lock import IndexLockedError

    return isinstance(exc, (ValueError, KeyError, FileNotFoundError, FileExistsError, ModelLoadError,
                            MissingExtraError, EncoderMismatchError, IndexFormatError, IndexLockedError))


def error_message(exc: Exception) -> str:
    """The text of an exception (a KeyError's without the quotes repr adds)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _rewritten(retriever: Retriever, offered: Mapping[str, Any], name: str | None, query: str,
               where: dict[str, Any] | None) -> Any:
    """The query rewritten by the offered rewriter `name` (None: no rewrite asked); a tool error for one not offered."""
    from dse.retrieve.rewriting import rewrite_queries
    from dse.rewrite import RewriteError

    if name is None:
        return None
    if name not in offered:
        names = ", ".join(sorted(offered)) or "none"
        raise ToolError(f"rewrite {name!r} is not offered by this server (offered: {names}; start it with "
                        f"dse mcp --rewrite {name} ...)")
    try:
        return rewrite_queries([query], offered[name], retriever.index, where)[0]
    except RewriteError as exc:
        raise ToolError(f"rewrite {name!r} failed: {exc}") from exc


def _as_text(results: SearchResults) -> str:
    """The hits as a few readable lines (the text content of `search_pages`)."""
    if not results.hits:
        return f"no matching pages for {results.query!r} (mode {results.mode})"
    n = len(results.hits)
    lines = [f"{n} page{'s' if n > 1 else ''} for {results.query!r} (mode {results.mode}):"]
    if results.rewritten is not None:
        lines.insert(0, f"searched as (rewritten by {results.rewritten.rewriter}): {results.rewritten.text}")
    for h in results.hits:
        lines.append(f"{h.rank}. {h.source_name}, page {h.page} (score {h.score:.4g}) page_id={h.page_id}")
        if h.snippet:
            lines.append(f"   {h.snippet}")
    return "\n".join(lines)


def serve(index: str | Path, rewrite: tuple[str, ...] = (), rewrite_options: Mapping[str, Any] | None = None,
          **encoder_options: Any) -> None:
    """Open the index (its encoder loaded on first use) and serve MCP over stdio until stdin closes.

    Args:
        index: The index directory.
        rewrite: Names of the query rewriters to offer, built now (a model that does not load fails here).
        rewrite_options: Their options (`dse.rewrite.load_rewriters`).
        **encoder_options: `Retriever.open`'s options.
    """
    from dse.rewrite import load_rewriters

    with contextlib.redirect_stdout(sys.stderr):  # nothing but the protocol on stdout
        rewriters = load_rewriters(list(rewrite), dict(rewrite_options or {})) if rewrite else {}
        retriever = Retriever.open(index, **encoder_options)
    try:
        build_server(retriever, rewriters=rewriters).run("stdio")
    finally:
        retriever.close()
