"""`dse mcp`: the MCP server driven by the SDK's own stdio client, on a BM25 index of the examples."""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import pytest
from PIL import Image

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import dse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"
TIMEOUT_S = 120  # a bound on each session, not a speed check
PDFS = ("acme-q3-2025-report.pdf", "solar-installation-guide.pdf", "bird-field-guide.pdf")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BM25 index of three example PDFs (8 pages)."""
    docs = tmp_path_factory.mktemp("docs")
    for name in PDFS:
        shutil.copy(EXAMPLES / name, docs / name)
    directory = tmp_path_factory.mktemp("mcp") / "idx"
    with dse.Retriever.create(directory, dse.load_encoder("bm25")) as r:
        assert r.add([docs / name for name in PDFS]).pages == 8
    return directory


Session = Callable[[ClientSession], Awaitable[None]]


@asynccontextmanager
async def _session(index: Path, faults: list[BaseException], args: tuple[str, ...] = ()) -> AsyncIterator[ClientSession]:
    """An initialised client session with `python -m dse.cli.mcp --index INDEX ARGS`."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the SDK passes on only a few variables
    env.update({k: os.environ[k] for k in ("PYTHONPATH", "DSE_CACHE_DIR") if k in os.environ})
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "dse.cli.mcp", "--index", str(index), *args], cwd=str(ROOT), env=env,
    )

    async def on_message(message: Any) -> None:  # transport faults, e.g. a non-JSON line on stdout
        if isinstance(message, Exception):
            faults.append(message)

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            yield session


def _run(index: Path, body: Session, args: tuple[str, ...] = ()) -> None:
    """Run `body` against a fresh server (`dse mcp` flags `args`), bounded by TIMEOUT_S; no transport faults allowed."""
    faults: list[BaseException] = []

    async def main() -> None:
        with anyio.fail_after(TIMEOUT_S):
            async with _session(index, faults, args) as session:
                await body(session)

    anyio.run(main)
    assert not faults, f"the server wrote something other than MCP messages: {faults}"


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def _structured(result: Any) -> Any:
    return getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)


def _is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))


def test_lists_tools_and_search_matches_the_retriever(index_dir: Path) -> None:
    queries = [("revenue by segment", {}), ("how do I wire the inverter", {"k": 3}),
               ("falcon", {"k": 10, "mode": "text"}), ("page", {"k": 10, "where": {"page": {"gte": 2}}})]
    with dse.Retriever.open(index_dir) as r:
        expected = [r.search(q, opts.get("k", 5), mode=opts.get("mode"), where=opts.get("where"))
                    for q, opts in queries]
        texts = {h.page_id: r.page_text(h.page_id) for hits in expected for h in hits}
    assert all(expected) and len(expected[3]) > 1

    async def body(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"search_pages", "get_page_image"}
        schema = getattr(tools["search_pages"], "input_schema", None) or tools["search_pages"].inputSchema
        assert {"query", "k", "mode", "where"} <= set(schema["properties"]) and schema["required"] == ["query"]
        for (query, opts), hits in zip(queries, expected):
            result = await session.call_tool("search_pages", {"query": query, **opts})
            assert not _is_error(result), _text(result)
            data = _structured(result)
            assert data["query"] == query and data["mode"] == "text"
            got = data["hits"]
            assert [h["page_id"] for h in got] == [h.page_id for h in hits]
            assert [h["rank"] for h in got] == list(range(1, len(hits) + 1))
            for g, h in zip(got, hits):
                assert (g["source"], g["page"], g["source_name"]) == (h.source, h.page, Path(h.source).name)
                assert g["score"] == pytest.approx(h.score)
                page_text = " ".join(texts[h.page_id].split())
                assert 0 < len(g["snippet"]) <= 210 and g["snippet"].strip("… ")[:20] in page_text
                assert g["highlights"] and all(0 <= a < b <= len(g["snippet"]) for a, b in g["highlights"])
            assert hits[0].page_id in _text(result)  # the readable text names the pages too
        top = _structured(await session.call_tool("search_pages", {"query": "revenue by segment", "k": 1}))
        first = top["hits"][0]
        assert {first["snippet"][a:b].lower() for a, b in first["highlights"]} >= {"revenue", "segment"}
        none = await session.call_tool("search_pages", {"query": "zzzqqq xylophone"})
        assert not _is_error(none) and _structured(none)["hits"] == [] and "no matching pages" in _text(none)

    _run(index_dir, body)


def test_visual_index_loads_its_encoder_in_the_server(tmp_path: Path) -> None:
    """A tiny-dse index (random weights, built offline): visual and hybrid rankings as the retriever's."""
    directory = tmp_path / "visual"
    with dse.Retriever.create(directory, dse.load_encoder("tiny-dse", max_pixels=64 * 28 * 28)) as r:
        r.add([EXAMPLES / name for name in PDFS[:2]])
    with dse.Retriever.open(directory) as r:
        expected = {mode: [h.page_id for h in r.search("revenue by segment", 4, mode=mode)]
                    for mode in ("visual", "hybrid")}

    async def body(session: ClientSession) -> None:
        for mode, ids in expected.items():
            args = {"query": "revenue by segment", "k": 4} | ({"mode": mode} if mode != "visual" else {})
            result = await session.call_tool("search_pages", args)
            assert not _is_error(result), _text(result)
            assert _structured(result)["mode"] == mode
            assert [h["page_id"] for h in _structured(result)["hits"]] == ids

    _run(directory, body)


def test_rewrite_is_the_servers_rewrite(index_dir: Path) -> None:
    """`search_pages(rewrite="prf")` with `dse mcp --rewrite prf`: the retriever's ranking of the rewrite."""
    from dse.rewrite import load_rewriter, summarize

    queries = ("revenue by segment", "inverter wiring")
    with dse.Retriever.open(index_dir) as r:
        expected = {q: [h.page_id for h in r.search(q, 4, rewrite="prf")] for q in queries}
        texts = {q: load_rewriter("prf").rewrite(q, r.index).text for q in queries}
        readable = {q: summarize(load_rewriter("prf").rewrite(q, r.index)).to_json() for q in queries}
    assert any(texts[q] != q for q in queries)

    async def body(session: ClientSession) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        schema = getattr(tools["search_pages"], "input_schema", None) or tools["search_pages"].inputSchema
        assert "rewrite" in schema["properties"] and "prf" in schema["properties"]["rewrite"]["description"]
        for query in queries:
            result = await session.call_tool("search_pages", {"query": query, "k": 4, "rewrite": "prf"})
            assert not _is_error(result), _text(result)
            data = _structured(result)
            assert [h["page_id"] for h in data["hits"]] == expected[query]
            assert data["query"] == query and data["rewrite"]["rewriter"] == "prf"
            assert data["rewrite"]["text"] == texts[query] and "identity" not in data["rewrite"]
            assert "rewritten by prf" in _text(result)
            assert data["rewritten"] == readable[query]  # the distinct terms, the query's own first
            assert f"searched as (rewritten by prf): {readable[query]['text']}" in _text(result)
            assert texts[query] not in _text(result) or texts[query] == query  # not the raw repeated terms
        plain = _structured(await session.call_tool("search_pages", {"query": queries[0], "k": 4}))
        assert plain["rewrite"] is None and plain["rewritten"] is None
        bad = await session.call_tool("search_pages", {"query": "revenue", "rewrite": "nope"})
        assert _is_error(bad) and "'nope'" in _text(bad) and "offered: prf" in _text(bad)

    _run(index_dir, body, ("--rewrite", "prf"))

    async def unoffered(session: ClientSession) -> None:
        result = await session.call_tool("search_pages", {"query": "revenue", "rewrite": "prf"})
        assert _is_error(result) and "offered: none" in _text(result) and "--rewrite prf" in _text(result)

    _run(index_dir, unoffered)


def test_get_page_image_is_a_png(index_dir: Path) -> None:
    with dse.Retriever.open(index_dir) as r:
        hit = r.search("revenue by segment", k=1)[0]
        size = r.page_image(hit.page_id).size

    async def body(session: ClientSession) -> None:
        result = await session.call_tool("get_page_image", {"page_id": hit.page_id})
        assert not _is_error(result), _text(result)
        images = [c for c in result.content if c.type == "image"]
        assert len(images) == 1
        mime = getattr(images[0], "mime_type", None) or images[0].mimeType
        assert mime == "image/png"
        data = base64.b64decode(images[0].data)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == "PNG" and img.size == size

    _run(index_dir, body)


def test_errors_are_tool_errors_and_the_server_keeps_serving(index_dir: Path) -> None:
    with dse.Retriever.open(index_dir) as r:
        known = r.search("revenue by segment", k=1)[0].page_id

    async def body(session: ClientSession) -> None:
        async def error(tool: str, args: dict[str, Any], *needles: str) -> None:
            result = await session.call_tool(tool, args)
            text = _text(result)
            assert _is_error(result), f"{tool}({args}) should fail: {text}"
            for needle in needles:
                assert needle in text, f"{tool}({args}): {needle!r} not in {text!r}"

        await error("get_page_image", {"page_id": "0123456789abcdef-p00001"}, "no page", "0123456789abcdef-p00001")
        await error("get_page_image", {"page_id": "../../etc/passwd"}, "not a page id")
        await error("get_page_image", {"page_id": known.upper()}, "not a page id")
        await error("get_page_image", {"page_id": known + "\n"}, "not a page id")
        await error("search_pages", {"query": "revenue", "mode": "fuzzy"}, "mode")
        await error("search_pages", {"query": "revenue", "mode": "visual"}, "mode='text'")  # a text-only index
        await error("search_pages", {"query": "revenue", "where": {"page": {"around": 2}}}, "around")
        await error("search_pages", {"query": "revenue", "where": {"bad field!": 1}}, "bad field!")
        await error("search_pages", {"query": "revenue", "k": 0}, "k")
        await error("search_pages", {"query": "   "}, "query")
        ok = await session.call_tool("search_pages", {"query": "revenue by segment", "k": 1})
        assert not _is_error(ok) and _structured(ok)["hits"][0]["page_id"] == known
        image = await session.call_tool("get_page_image", {"page_id": known})
        assert not _is_error(image)

    _run(index_dir, body)


def test_missing_index_fails_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dse.cli.mcp", "--index", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("dse: error:") and "nope" in proc.stderr


def test_cli_registers_the_subcommand() -> None:
    from dse.cli import mcp as cli_mcp

    parser = argparse.ArgumentParser(prog="dse")
    cli_mcp.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["mcp", "--index", "idx", "--device", "cpu"])
    assert (args.index, args.device, args.func) == ("idx", "cpu", cli_mcp.run)
    with pytest.raises(SystemExit):
        parser.parse_args(["mcp"])  # --index is required

